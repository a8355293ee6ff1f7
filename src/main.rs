use anyhow::Result;
use clap::{Parser, Subcommand};

/// Swin-UMamba and nnU-Net v2 style 2D segmentation on libtorch.
#[derive(Parser)]
#[command(name = "swin-umamba", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch version, thread count, SIMD level and CUDA devices.
    Info,
    /// Score predictions against references: nnU-Net's metrics, Swin-UMamba's DSC and NSD,
    /// cell F1.
    Evaluate(swin_umamba::eval::cli::EvaluateArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse_from(swin_umamba::eval::cli::nnunet_style_args(std::env::args()));
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::Evaluate(args) => swin_umamba::eval::cli::run(args)?,
    }
    Ok(())
}
