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
    /// Print a model's parameter count, FLOPs and per-module table.
    ModelInfo(swin_umamba::nets::cli::ModelInfoArgs),
    /// Run one eval-mode forward pass from safetensors weights and input; write every head.
    Forward(swin_umamba::nets::cli::ForwardArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(swin_umamba::bench::BenchCommand),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::ModelInfo(args) => swin_umamba::nets::cli::run_model_info(args)?,
        Command::Forward(args) => swin_umamba::nets::cli::run_forward(args)?,
        Command::Bench(command) => swin_umamba::bench::run(command)?,
    }
    Ok(())
}
