//! The `bench` subcommands: throughput measurements of the pipeline's parts.

pub mod loader;

/// The benchmarks of `swin-umamba bench`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Augmented training batches per second and the time spent in each stage.
    Loader(loader::LoaderBenchArgs),
}

/// Runs the chosen benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Loader(args) => loader::run(args),
    }
}
