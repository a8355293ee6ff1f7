//! The `train-fold` subcommand.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tch::Device;

use super::checkpoint::{self, load_weights, RunInfo};
use super::data::{epoch_seed, Stream, TrainPlan};
use super::network::SegmentationNetwork;
use super::precision::Precision;
use super::synthetic::{SyntheticSource, TinyUNet};
use super::trainer::run::{train, RunSpec};
use super::trainer::{by_name, TrainerConfig};

/// Network trained by `--synthetic` runs.
pub const SYNTHETIC_MODEL: &str = "tiny-unet";

/// Span of epochs the learning-rate schedule is laid over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleSpan {
    /// Over the trainer's full epoch count, as the official code does (the published
    /// checkpoints stop far from the end of the schedule).
    Full,
    /// Over the stop epoch, so the schedule anneals completely by the end of the run.
    Stop,
}

/// Arguments of `train-fold`.
#[derive(Debug, clap::Args)]
pub struct TrainFoldArgs {
    /// Dataset id (e.g. 702) or name.
    #[arg(short = 'd', long = "dataset")]
    pub dataset: String,
    /// Configuration; only `2d` exists.
    #[arg(short = 'c', long = "configuration", default_value = "2d")]
    pub configuration: String,
    /// Fold 0-4, or `all` to train and validate on every case.
    #[arg(short = 'f', long = "fold")]
    pub fold: String,
    /// Trainer: nnunet, swin-umamba, swin-umamba-d or umamba.
    #[arg(long, default_value = "nnunet")]
    pub trainer: String,
    /// Network: swin-umamba, swin-umamba-v1, swin-umamba-d, nnunet, umamba-bot or umamba-enc
    /// (default: the trainer's network; tiny-unet with --synthetic).
    #[arg(long)]
    pub model: Option<String>,
    /// Starting weights: a VMamba v0 ImageNet checkpoint (.pth with a `model` dict, or
    /// safetensors) for the Swin-UMamba encoders, a network state dict, or a checkpoint
    /// sidecar (`.json`) of an earlier run. The kind is found from the file's content.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Model configuration YAML (see docs/networks.md); fields left out keep the defaults.
    /// Without it, nnunet and U-Mamba follow the plan's architecture and the Swin-UMamba
    /// networks their official defaults.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// Preprocessed root (default: $nnUNet_preprocessed), which contains `Dataset<ID>_<Name>`.
    #[arg(long)]
    pub preprocessed: Option<PathBuf>,
    /// Batches the loader builds ahead on worker threads, per training and validation
    /// loader (0: build each batch when the trainer asks for it).
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// Continue from the newest checkpoint in the fold folder.
    #[arg(long = "continue")]
    pub resume: bool,
    /// Total epochs (the schedule is laid over them), instead of the trainer's 1000.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many epochs and write checkpoint_final there.
    #[arg(long)]
    pub stop_epoch: Option<usize>,
    /// Lay the learning-rate schedule over the full run or over the stop epoch.
    #[arg(long, value_enum, default_value = "full")]
    pub schedule_over: ScheduleSpan,
    /// Epochs during which a loaded encoder stays frozen (all but its patch embedding),
    /// instead of the trainer's (10 for swin-umamba and swin-umamba-d with --pretrained,
    /// else 0). Short runs scale it down: with --epochs 4 the default keeps the encoder
    /// frozen throughout.
    #[arg(long)]
    pub freeze_encoder_epochs: Option<usize>,
    /// Training iterations per epoch, instead of the trainer's 250.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Validation iterations per epoch, instead of the trainer's 50.
    #[arg(long)]
    pub val_iterations: Option<usize>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Forward precision on CUDA (ignored on CPU, which always uses fp32).
    #[arg(long, value_enum, default_value = "bf16")]
    pub precision: Precision,
    /// Run seed; every epoch's random streams derive from (seed, epoch).
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Results root (default: $nnUNet_results). The fold folder is
    /// `<results>/Dataset<ID>_<Name>/<trainer>__nnUNetPlans__2d/fold_<F>`
    /// (`Dataset<ID>` with --synthetic).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Testing mode: train the tiny U-Net on generated disc images instead of a dataset.
    #[arg(long)]
    pub synthetic: bool,
    /// Synthetic mode: patch edge length in pixels.
    #[arg(long, default_value_t = 32)]
    pub synthetic_patch: i64,
    /// Synthetic mode: batch size.
    #[arg(long, default_value_t = 4)]
    pub synthetic_batch: i64,
    /// Synthetic mode: classes including background.
    #[arg(long, default_value_t = 3)]
    pub synthetic_classes: i64,
    /// Synthetic mode: sleep before each batch, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub synthetic_delay_ms: u64,
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Skip predicting and scoring the validation cases after the last epoch.
    #[arg(long)]
    pub no_validation: bool,
    /// Predict the validation cases without mirroring (nnU-Net always mirrors there); it
    /// cuts that prediction's cost by the number of mirrored copies, 4 in 2D.
    #[arg(long)]
    pub val_disable_tta: bool,
}

/// Runs `train-fold`.
pub fn run(args: TrainFoldArgs) -> Result<()> {
    if args.configuration != "2d" {
        bail!(
            "configuration {:?} is not supported; use -c 2d",
            args.configuration
        );
    }
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let device = parse_device(&args.device)?;
    let mut trainer = by_name(&args.trainer, args.pretrained.is_some())?;
    apply_overrides(&mut trainer, &args)?;
    trainer.precision = args.precision;

    if !args.synthetic {
        return super::dataset_run::run_on_dataset(&args, trainer, device);
    }
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| SYNTHETIC_MODEL.to_string());
    if model != SYNTHETIC_MODEL {
        bail!("--model {model:?} is not available with --synthetic; use --model {SYNTHETIC_MODEL}");
    }
    let plan = TrainPlan {
        patch_size: [args.synthetic_patch, args.synthetic_patch],
        batch_size: args.synthetic_batch,
        num_input_channels: 1,
        num_classes: args.synthetic_classes,
        ignore_label: None,
        batch_dice: true,
    };
    tch::manual_seed(epoch_seed(args.seed, 0, Stream::Init) as i64);
    let mut net = TinyUNet::new(plan.num_input_channels, plan.num_classes, device);
    if let Some(path) = &args.pretrained {
        load_pretrained(&net, path)?;
    }
    net.set_deep_supervision(trainer.deep_supervision);
    let strides: Vec<i64> = if trainer.deep_supervision {
        vec![1, 2]
    } else {
        vec![1]
    };
    let delay = Duration::from_millis(args.synthetic_delay_ms);
    let mut train_source = SyntheticSource::new(plan.clone(), strides.clone(), delay);
    let mut val_source = SyntheticSource::new(plan.clone(), strides, delay);

    let output_dir = results_root(&args)?
        .join(format!("Dataset{}", args.dataset))
        .join(format!("{}__nnUNetPlans__2d", trainer.name))
        .join(format!("fold_{}", args.fold));
    let spec = RunSpec {
        output_dir: output_dir.clone(),
        plan,
        trainer,
        run: RunInfo {
            dataset: args.dataset.clone(),
            configuration: args.configuration.clone(),
            fold: args.fold.clone(),
            model,
            pretrained: args.pretrained.as_ref().map(|p| p.display().to_string()),
            device: args.device.clone(),
            seed: args.seed,
        },
        device,
        resume: args.resume,
        show_progress: std::io::stderr().is_terminal(),
        echo_log: true,
    };
    let outcome = train(spec, &mut net, &mut train_source, &mut val_source)?;
    println!(
        "final checkpoint {} (best moving-average pseudo-Dice {:.4}, {} non-finite steps)",
        outcome.final_checkpoint.display(),
        outcome.best_ema.unwrap_or(f64::NAN),
        outcome.nonfinite_steps_total
    );
    validate_after_training(&args, &output_dir, device)
}

/// Predicts the fold's validation cases with the final weights into `fold_X/validation/`
/// and scores them into its `summary.json`, as nnU-Net does after training, unless
/// `--no-validation` is given or the raw and preprocessed dataset cannot be found.
pub(super) fn validate_after_training(
    args: &TrainFoldArgs,
    output_dir: &std::path::Path,
    device: tch::Device,
) -> Result<()> {
    if args.no_validation {
        println!("validation skipped (--no-validation)");
        return Ok(());
    }
    match crate::infer::validation::find_inputs(&args.dataset) {
        Some(inputs) => {
            println!(
                "validation: predicting the fold's validation cases into {} with sliding \
                 windows{} (pass --no-validation to skip)",
                output_dir.join("validation").display(),
                if args.val_disable_tta {
                    ", no mirroring"
                } else {
                    " and mirroring"
                }
            );
            let summary = crate::infer::validation::validate_fold(
                output_dir,
                &args.fold,
                &inputs,
                device,
                !args.val_disable_tta,
            )?;
            println!("validation summary {}", summary.display());
        }
        None => println!(
            "validation skipped: no raw dataset {:?} with nnUNetPlans.json in $nnUNet_raw and \
             $nnUNet_preprocessed (--synthetic trains on generated images)",
            args.dataset
        ),
    }
    Ok(())
}

/// Returns the results root: `--results`, else `$nnUNet_results`.
pub(super) fn results_root(args: &TrainFoldArgs) -> Result<PathBuf> {
    match &args.results {
        Some(r) => Ok(r.clone()),
        None => std::env::var_os("nnUNet_results")
            .map(PathBuf::from)
            .context(
            "no results folder: pass --results DIR or set the nnUNet_results environment variable",
        ),
    }
}

fn apply_overrides(trainer: &mut TrainerConfig, args: &TrainFoldArgs) -> Result<()> {
    if let Some(epochs) = args.epochs {
        if epochs == 0 {
            bail!("--epochs 0 is invalid; use at least 1");
        }
        trainer.num_epochs = epochs;
        trainer.schedule = trainer.schedule.laid_over(epochs);
    }
    if let Some(stop) = args.stop_epoch {
        if stop == 0 || stop > trainer.num_epochs {
            bail!(
                "--stop-epoch {stop} must be between 1 and the epoch count {}",
                trainer.num_epochs
            );
        }
        trainer.stop_epoch = Some(stop);
    }
    if args.schedule_over == ScheduleSpan::Stop {
        trainer.schedule = trainer.schedule.laid_over(trainer.end_epoch());
    }
    if let Some(n) = args.freeze_encoder_epochs {
        if n > 0 && args.pretrained.is_none() {
            bail!(
                "--freeze-encoder-epochs {n} needs --pretrained: without a loaded encoder \
                 there is nothing to keep; leave the flag out or pass --pretrained FILE"
            );
        }
        trainer.freeze_encoder_epochs = n;
    }
    if let Some(n) = args.iterations {
        trainer.iterations_per_epoch = n;
    }
    if let Some(n) = args.val_iterations {
        trainer.val_iterations_per_epoch = n;
    }
    Ok(())
}

pub(super) fn parse_device(text: &str) -> Result<Device> {
    let device = match text {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => bail!("--device {other:?} is invalid; use cpu, cuda or cuda:N"),
        },
    };
    if device.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device {text} requested but libtorch finds no CUDA device; use --device cpu");
    }
    Ok(device)
}

fn load_pretrained(net: &dyn SegmentationNetwork, path: &std::path::Path) -> Result<()> {
    let tensors = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => checkpoint::load(path)?.weights,
        Some("safetensors") => tch::Tensor::read_safetensors(path)
            .with_context(|| format!("reading pretrained weights {}", path.display()))?,
        _ => bail!(
            "--pretrained {} is neither a safetensors file nor a checkpoint sidecar (.json); \
             convert VMamba .pth checkpoints to safetensors first",
            path.display()
        ),
    };
    let report = load_weights(net.var_store(), &tensors, false, path)?;
    println!(
        "pretrained {}: {} tensors loaded, {} unexpected, {} with another shape, {} variables \
         left at their initial values",
        path.display(),
        report.loaded.len(),
        report.unexpected.len(),
        report.shape_mismatch.len(),
        report.missing.len()
    );
    Ok(())
}
