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
    /// Pretrain the VMamba-Tiny v0 encoder as an image classifier (ImageNet recipe).
    Pretrain(swin_umamba::pretrain::cli::PretrainArgs),
    /// Run an experiment grid (datasets × models × initialisations × folds) and tabulate it.
    Ablate(swin_umamba::ablate::cli::AblateArgs),
    /// Run the embedded default: a small ablation on synthetic data the binary writes.
    Demo(swin_umamba::ablate::demo::DemoArgs),
    /// Print a model's parameter count, FLOPs and per-module table.
    ModelInfo(swin_umamba::nets::cli::ModelInfoArgs),
    /// Run one eval-mode forward pass from safetensors weights and input; write every head.
    Forward(swin_umamba::nets::cli::ForwardArgs),
    /// Train one fold (nnU-Net's nnUNetv2_train).
    TrainFold(Box<swin_umamba::train::cli::TrainFoldArgs>),
    /// Inspect and convert checkpoint files (.pth, safetensors).
    Weights(swin_umamba::weights::cli::WeightsArgs),
    /// Convert a dataset release layout or an images + masks folder to nnU-Net raw format.
    Convert(swin_umamba::dataset::cli::ConvertArgs),
    /// Extract the dataset fingerprint and write nnU-Net v2 plans (2d configuration).
    Plan(swin_umamba::plan::cli::PlanArgs),
    /// Preprocess a planned dataset into memory-mappable cases.
    Preprocess(swin_umamba::preprocess::cli::PreprocessArgs),
    /// Predict segmentations with the folds of a results folder (nnU-Net's nnUNetv2_predict).
    Predict(swin_umamba::infer::cli::PredictArgs),
    /// Score predictions against references: nnU-Net's metrics, Swin-UMamba's DSC and NSD,
    /// cell F1.
    Evaluate(swin_umamba::eval::cli::EvaluateArgs),
    /// Measure the throughput of a pipeline stage.
    #[command(subcommand)]
    Bench(swin_umamba::bench::BenchCommand),
}

fn main() -> Result<()> {
    // Exit quietly when stdout is closed early (`swin-umamba ... | head`), as other
    // command-line tools do, instead of panicking on the failed write.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = swin_umamba::eval::cli::nnunet_style_args(std::env::args());
    let cli = Cli::parse_from(swin_umamba::infer::cli::nnunet_style_args(args));
    match cli.command {
        Command::Info => println!("{}", swin_umamba::info::collect()),
        Command::Pretrain(args) => swin_umamba::pretrain::cli::run(args)?,
        Command::Ablate(args) => swin_umamba::ablate::cli::run(args)?,
        Command::Demo(args) => swin_umamba::ablate::demo::run(args)?,
        Command::ModelInfo(args) => swin_umamba::nets::cli::run_model_info(args)?,
        Command::Forward(args) => swin_umamba::nets::cli::run_forward(args)?,
        Command::TrainFold(args) => swin_umamba::train::cli::run(*args)?,
        Command::Weights(args) => swin_umamba::weights::cli::run(args)?,
        Command::Predict(args) => swin_umamba::infer::cli::run(args)?,
        Command::Evaluate(args) => swin_umamba::eval::cli::run(args)?,
        Command::Convert(args) => swin_umamba::dataset::cli::run(args)?,
        Command::Plan(args) => swin_umamba::plan::cli::run(args)?,
        Command::Preprocess(args) => swin_umamba::preprocess::cli::run(args)?,
        Command::Bench(command) => swin_umamba::bench::run(command)?,
    }
    Ok(())
}
