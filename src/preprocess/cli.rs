//! `swin-umamba preprocess`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::dataset::{find_dataset, DatasetFolders, RawDataset};
use crate::plan::Plans;

/// Arguments of `swin-umamba preprocess`.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Dataset id (e.g. 4) or name (Dataset004_Kvasir or Kvasir).
    #[arg(short = 'd', long)]
    pub dataset: String,
    /// Configuration of the plans to preprocess for.
    #[arg(short = 'c', long, default_value = "2d")]
    pub configuration: String,
    /// Plans identifier (file name without .json).
    #[arg(long, default_value = "nnUNetPlans")]
    pub plans: String,
    /// Worker threads; 0 uses every core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Raw data folder; defaults to $nnUNet_raw.
    #[arg(long)]
    pub raw: Option<PathBuf>,
    /// Preprocessed data folder; defaults to $nnUNet_preprocessed.
    #[arg(long)]
    pub preprocessed: Option<PathBuf>,
}

pub fn run(args: PreprocessArgs) -> anyhow::Result<()> {
    let folders = DatasetFolders {
        raw: args.raw.clone(),
        preprocessed: args.preprocessed.clone(),
        results: None,
    }
    .with_env();
    let dataset = RawDataset::open(&find_dataset(folders.raw()?, &args.dataset)?)?;
    let out = folders.preprocessed()?.join(&dataset.name);
    let plans_path = out.join(format!("{}.json", args.plans));
    if !plans_path.exists() {
        anyhow::bail!(
            "{} not found; run `swin-umamba plan -d {}` first",
            plans_path.display(),
            args.dataset
        );
    }
    let plans = Plans::load(&plans_path)?;
    let start = Instant::now();
    let summary = super::preprocess_dataset(
        &dataset,
        &plans,
        &args.configuration,
        &out,
        args.threads,
        true,
    )?;
    println!(
        "preprocessed {} cases ({} already done) into {} in {:.2} s",
        summary.processed,
        summary.skipped,
        summary.output.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
