//! `swin-umamba bench`: timing and memory benchmarks, one subcommand per component.

pub mod scan;

use clap::Subcommand;

/// Benchmarks; each prints a table with the machine facts it ran on.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Selective scan: the C++ kernel against the tch-op reference at Swin-UMamba's SS2D
    /// shapes (forward, forward+backward, GFLOP/s and peak memory).
    Scan(scan::ScanBenchArgs),
}

/// Runs one benchmark subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Scan(args) => scan::run(args),
    }
}
