//! Command-line glue of `swin-umamba pretrain`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::classifier::ClassifierConfig;
use super::run::{pretrain, Recipe};

/// Arguments of `swin-umamba pretrain`. Defaults follow the VMamba/Swin ImageNet recipe
/// (300 epochs, AdamW, weight decay 0.05, 20 warm-up epochs, label smoothing 0.1); the
/// learning rate defaults to 5e-4 × batch / 512, the Swin recipe's linear scaling.
#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    /// ImageNet-layout folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) or a flat folder
    /// whose class is the file-name prefix before the first `_`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder for checkpoints and logs.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Training crop and validation size in pixels (a multiple of 32).
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// Peak learning rate; default 5e-4 × batch-size / 512.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 5e-7)]
    pub warmup_lr: f64,
    #[arg(long, default_value_t = 5e-6)]
    pub min_lr: f64,
    /// Warm-up length in epochs (capped at --epochs).
    #[arg(long, default_value_t = 20)]
    pub warmup_epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Maximum drop-path rate, reached by the last block.
    #[arg(long, default_value_t = 0.2)]
    pub drop_path: f64,
    /// Gradient-norm clipping bound; 0 turns clipping off.
    #[arg(long, default_value_t = 5.0)]
    pub clip_grad: f64,
    /// Encoder widths and depths from a YAML file (`dims`, `depths`, `d_state`); default
    /// VMamba-Tiny.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `cpu` or `cuda` (or `cuda:N`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue from the output folder's latest checkpoint.
    #[arg(long = "continue")]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decoding and augmentation threads; default: the number of CPU cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// In a flat folder, hold out every N-th image of each class for validation.
    #[arg(long, default_value_t = 10)]
    pub val_every: usize,
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<tch::Device> {
    match text {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        other => {
            let index = other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse::<usize>().ok())
                .with_context(|| format!("invalid --device {other}; use cpu, cuda or cuda:N"))?;
            Ok(tch::Device::Cuda(index))
        }
    }
}

/// Runs `swin-umamba pretrain`.
pub fn run(args: PretrainArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    if device.is_cuda() && !tch::Cuda::is_available() {
        anyhow::bail!(
            "--device {} requested but CUDA is not available here; use --device cpu",
            args.device
        );
    }
    let mut classifier = ClassifierConfig::tiny();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        classifier = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{}: invalid encoder YAML; fields: dims, depths, d_state, patch, in_channels, drop_path_rate", path.display()))?;
    }
    classifier.drop_path_rate = args.drop_path;
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let recipe = Recipe {
        epochs: args.epochs,
        batch_size: args.batch_size,
        image_size: args.image_size,
        lr: args.lr.unwrap_or(5e-4 * args.batch_size as f64 / 512.0),
        warmup_lr: args.warmup_lr,
        min_lr: args.min_lr,
        warmup_epochs: args.warmup_epochs,
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        drop_path: args.drop_path,
        clip_grad: args.clip_grad,
        seed: args.seed,
        workers,
        val_every: args.val_every,
    };
    let history = pretrain(
        &args.data,
        &args.out,
        recipe,
        classifier,
        device,
        args.resume,
    )?;
    if let Some(last) = history.last() {
        println!(
            "final epoch {}: top1 {:.4}, top5 {:.4}",
            last.epoch, last.top1, last.top5
        );
    }
    println!(
        "checkpoint  {}",
        args.out.join("checkpoint_final.pth").display()
    );
    println!(
        "safetensors {}",
        args.out.join("checkpoint_final.safetensors").display()
    );
    println!(
        "log         {}",
        args.out.join("pretrain_log.txt").display()
    );
    println!("tensorboard {}", args.out.join("tensorboard").display());
    Ok(())
}
