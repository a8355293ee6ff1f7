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
    /// Convert a dataset release layout or an images + masks folder to nnU-Net raw format.
    Convert(swin_umamba::dataset::cli::ConvertArgs),
    /// Extract the dataset fingerprint and write nnU-Net v2 plans (2d configuration).
    Plan(swin_umamba::plan::cli::PlanArgs),
    /// Preprocess a planned dataset into memory-mappable cases.
    Preprocess(swin_umamba::preprocess::cli::PreprocessArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::Convert(args) => swin_umamba::dataset::cli::run(args)?,
        Command::Plan(args) => swin_umamba::plan::cli::run(args)?,
        Command::Preprocess(args) => swin_umamba::preprocess::cli::run(args)?,
    }
    Ok(())
}
