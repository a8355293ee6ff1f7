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
    /// Run a benchmark.
    #[command(subcommand)]
    Bench(swin_umamba::bench::BenchCommand),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::Bench(command) => swin_umamba::bench::run(command)?,
    }
    Ok(())
}
