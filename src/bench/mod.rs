//! `swin-umamba bench`: timing and memory benchmarks, one subcommand per component. Each
//! prints its figures with the machine facts it ran on.

pub mod loader;
pub mod model;
pub mod scan;

use clap::Subcommand;

/// What `swin-umamba bench` measures.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Selective scan: the C++ kernel against the tch-op reference at Swin-UMamba's SS2D
    /// shapes (forward, forward+backward, GFLOP/s and peak memory).
    Scan(scan::ScanBenchArgs),
    /// Augmented training batches per second and the time spent in each stage.
    Loader(loader::LoaderBenchArgs),
    /// Time training steps (forward, loss, backward) of a network on the CPU.
    Model(model::ModelBenchArgs),
}

/// Runs one benchmark subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Scan(args) => scan::run(args),
        BenchCommand::Loader(args) => loader::run(args),
        BenchCommand::Model(args) => model::run(args),
    }
}
