//! `train-fold` on a preprocessed dataset: reads the plan and the fold, builds the network
//! and the loaders, and writes nnU-Net's results layout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::Device;

use super::checkpoint::{self, RunInfo};
use super::cli::{results_root, TrainFoldArgs};
use super::data::{epoch_seed, Stream};
use super::loader::{BatchSampler, CaseFolder, LoaderConfig};
use super::loader_source::LoaderSource;
use super::logging::text::TextLog;
use super::network::SegmentationNetwork;
use super::setup::{build_network, load_pretrained, DatasetSetup, PLANS_FILE};
use super::trainer::run::{train, RunSpec};
use super::trainer::TrainerConfig;
use crate::nets::ModelName;

/// The network a trainer trains when `--model` is not given.
pub fn default_model(trainer: &str) -> ModelName {
    match trainer {
        "swin-umamba" => ModelName::SwinUMamba,
        "swin-umamba-d" => ModelName::SwinUMambaD,
        "umamba" => ModelName::UmambaBot,
        _ => ModelName::Nnunet,
    }
}

/// Plans name in the trainer folder (`<trainer>__nnUNetPlans__2d`), as nnU-Net names it.
const PLANS_NAME: &str = "nnUNetPlans";

/// Files nnU-Net copies from the preprocessed dataset folder into the trainer folder, with
/// their names there; inference reads the plan and labels from these copies.
const COPIED_FILES: [(&str, &str); 3] = [
    (PLANS_FILE, "plans.json"),
    ("dataset.json", "dataset.json"),
    ("dataset_fingerprint.json", "dataset_fingerprint.json"),
];

/// Trains one fold of a preprocessed dataset.
pub fn run_on_dataset(args: &TrainFoldArgs, trainer: TrainerConfig, device: Device) -> Result<()> {
    let preprocessed_root = match &args.preprocessed {
        Some(p) => p.clone(),
        None => std::env::var_os("nnUNet_preprocessed")
            .map(PathBuf::from)
            .context(
                "no preprocessed folder: pass --preprocessed DIR or set the \
                 nnUNet_preprocessed environment variable",
            )?,
    };
    let folder =
        crate::dataset::find_dataset(&preprocessed_root, &args.dataset).with_context(|| {
            format!(
                "train-fold reads preprocessed data: run `swin-umamba plan -d {0}` and \
                 `swin-umamba preprocess -d {0}` first, or pass --preprocessed DIR",
                args.dataset
            )
        })?;
    let dataset_name = folder
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let setup = DatasetSetup::read(&folder, &args.configuration)?;
    let (train_cases, val_cases) = setup.fold_cases(&args.fold)?;

    let model = match &args.model {
        Some(name) => name.parse::<ModelName>()?,
        None => default_model(&trainer.name),
    };
    let model_config = setup.model_config(model, args.model_config.as_deref())?;
    let plan = setup.train_plan.clone();
    tch::manual_seed(epoch_seed(args.seed, 0, Stream::Init) as i64);
    let mut net = build_network(model, &model_config, &plan, device)?;
    net.set_deep_supervision(trainer.deep_supervision);
    let scales = net.target_scales();
    // Load before anything is written, so that a rejected file leaves no run folder behind.
    let load_report = match &args.pretrained {
        Some(path) => load_pretrained(&mut net, model, path)?,
        None => Vec::new(),
    };

    let trainer_dir = results_root(args)?.join(&dataset_name).join(format!(
        "{}__{PLANS_NAME}__{}",
        trainer.name, args.configuration
    ));
    let output_dir = trainer_dir.join(format!("fold_{}", args.fold));
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;
    copy_dataset_files(&folder, &trainer_dir)?;
    let config_path = output_dir.join("model_config.yaml");
    checkpoint::write_atomically(&config_path, model_config.to_yaml().as_bytes())?;

    let mut log = TextLog::open(&output_dir, true)?;
    log.line(&format!(
        "dataset {} fold {}: {} training and {} validation cases from {}",
        dataset_name,
        args.fold,
        train_cases.len(),
        val_cases.len(),
        setup.cases_folder().display()
    ))?;
    log.line(&format!(
        "model {model} ({} parameters), deep-supervision target scales {scales:?}",
        net.model().parameter_count()
    ))?;
    for line in &load_report {
        log.line(line)?;
    }
    drop(log);

    let mut train_source = loader_source(&setup, &train_cases, &scales, args, true)?;
    let mut val_source = loader_source(&setup, &val_cases, &scales, args, false)?;
    let spec = RunSpec {
        output_dir: output_dir.clone(),
        plan,
        trainer,
        run: RunInfo {
            dataset: dataset_name,
            configuration: args.configuration.clone(),
            fold: args.fold.clone(),
            model: model.to_string(),
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
    super::cli::validate_after_training(args, &output_dir, device)
}

fn loader_source(
    setup: &DatasetSetup,
    cases: &[String],
    scales: &[[f64; 2]],
    args: &TrainFoldArgs,
    training: bool,
) -> Result<LoaderSource> {
    let cases_folder = setup.cases_folder();
    let folder = CaseFolder::open(&cases_folder, Some(cases)).with_context(|| {
        format!(
            "opening the preprocessed cases in {}",
            cases_folder.display()
        )
    })?;
    // The deep-supervision flag only picks the plan's scales, which are replaced just below by
    // the scales of the network's heads (Swin-UMamba has four heads whatever the plan).
    let mut config = if training {
        LoaderConfig::nnunet_training(&setup.loader_plan, true, args.seed)
    } else {
        LoaderConfig::nnunet_validation(&setup.loader_plan, true, args.seed)
    };
    config.deep_supervision_scales = scales.to_vec();
    let sampler = BatchSampler::new(folder, config)?;
    Ok(LoaderSource::new(sampler, args.prefetch))
}

fn copy_dataset_files(dataset_folder: &Path, trainer_dir: &Path) -> Result<()> {
    for (source_name, target_name) in COPIED_FILES {
        let source = dataset_folder.join(source_name);
        if !source.exists() {
            continue;
        }
        let bytes =
            std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        checkpoint::write_atomically(&trainer_dir.join(target_name), &bytes)?;
    }
    Ok(())
}
