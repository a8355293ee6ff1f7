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
    /// Train one fold (nnU-Net's nnUNetv2_train).
    TrainFold(Box<swin_umamba::train::cli::TrainFoldArgs>),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::TrainFold(args) => swin_umamba::train::cli::run(*args)?,
    }
    Ok(())
}
