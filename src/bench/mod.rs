//! The `bench` subcommands.

pub mod model;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Time training steps (forward, loss, backward) of a network on the CPU.
    Model(model::ModelBenchArgs),
}

/// Runs the chosen benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Model(args) => model::run(args),
    }
}
