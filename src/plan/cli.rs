//! `swin-umamba plan`: fingerprint and plans of a raw dataset.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{extract_fingerprint, plan_experiment, PlanOverride, PlannerSettings};
use crate::dataset::{find_dataset, verify_dataset_integrity, DatasetFolders, RawDataset};

/// Arguments of `swin-umamba plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Dataset id (e.g. 4) or name (Dataset004_Kvasir or Kvasir).
    #[arg(short = 'd', long)]
    pub dataset: String,
    /// Check the raw dataset first and stop with every problem found.
    #[arg(long)]
    pub verify_dataset_integrity: bool,
    /// Plan override YAML files (see plans/), applied in order.
    #[arg(long = "override")]
    pub overrides: Vec<PathBuf>,
    /// GPU memory target in GB for the patch and batch size (nnU-Net's default: 8).
    #[arg(long, default_value_t = 8.0)]
    pub gpu_memory_target: f64,
    /// Foreground intensities sampled for the fingerprint over the whole dataset. The
    /// default, nnU-Net's 1e8, reproduces its statistics exactly; fewer is faster.
    #[arg(long, default_value_t = super::FOREGROUND_SAMPLES_TOTAL)]
    pub fingerprint_samples: f64,
    /// Raw data folder; defaults to $nnUNet_raw.
    #[arg(long)]
    pub raw: Option<PathBuf>,
    /// Preprocessed data folder; defaults to $nnUNet_preprocessed.
    #[arg(long)]
    pub preprocessed: Option<PathBuf>,
}

/// Runs `plan` and returns the folder the plans were written to.
pub fn plan_dataset(args: &PlanArgs) -> anyhow::Result<PathBuf> {
    let folders = DatasetFolders {
        raw: args.raw.clone(),
        preprocessed: args.preprocessed.clone(),
        results: None,
    }
    .with_env();
    let dataset = RawDataset::open(&find_dataset(folders.raw()?, &args.dataset)?)?;
    if args.verify_dataset_integrity {
        verify_dataset_integrity(&dataset)?;
    }
    let overrides: Vec<PlanOverride> = args
        .overrides
        .iter()
        .map(|p| PlanOverride::load(p))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let fingerprint = extract_fingerprint(&dataset, args.fingerprint_samples)?;
    let settings = PlannerSettings {
        gpu_memory_target_gb: args.gpu_memory_target,
        ..Default::default()
    };
    let mut plans = plan_experiment(&dataset.name, &dataset.json, &fingerprint, &settings);
    for (o, path) in overrides.iter().zip(&args.overrides) {
        o.apply(&mut plans, &dataset.json, path)?;
    }
    let out = folders.preprocessed()?.join(&dataset.name);
    std::fs::create_dir_all(&out)?;
    fingerprint.save(&out.join("dataset_fingerprint.json"))?;
    plans.save(&out.join(format!("{}.json", settings.plans_name)))?;
    let json_copy = std::fs::read(dataset.folder.join("dataset.json"))?;
    crate::dataset::write_atomic(&out.join("dataset.json"), &json_copy)?;
    let splits = dataset.folder.join("splits_final.json");
    if splits.exists() {
        crate::dataset::write_atomic(&out.join("splits_final.json"), &std::fs::read(&splits)?)?;
    }
    let c = plans.configuration("2d")?;
    println!(
        "planned {} in {:.2} s: 2d patch {:?}, batch {}, spacing {:?}, {} stages, {:?}",
        dataset.name,
        start.elapsed().as_secs_f64(),
        c.patch_size,
        c.batch_size,
        c.spacing,
        c.n_stages(),
        c.normalization_schemes
    );
    Ok(out)
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    plan_dataset(&args).map(|_| ())
}
