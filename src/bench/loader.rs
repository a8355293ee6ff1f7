//! `swin-umamba bench loader`: throughput of the training data pipeline on a preprocessed
//! dataset, with the time spent in each stage.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::train::augment::{Stage, StageTimes};
use crate::train::loader::workers::default_workers;
use crate::train::loader::{
    BatchSampler, CaseFolder, LoaderConfig, LoaderPlanConfig, PrefetchLoader,
};

#[derive(Debug, clap::Args)]
pub struct LoaderBenchArgs {
    /// Dataset id (e.g. 501) or full folder name (e.g. Dataset501_KvasirSmall).
    #[arg(short = 'd', long = "dataset")]
    pub dataset: String,
    /// Plan configuration to read patch and batch size from.
    #[arg(short = 'c', long, default_value = "2d")]
    pub configuration: String,
    /// Plans identifier: the file <plans>.json in the dataset folder.
    #[arg(short = 'p', long, default_value = "nnUNetPlans")]
    pub plans: String,
    /// Folder holding the preprocessed datasets [default: $nnUNet_preprocessed].
    #[arg(long)]
    pub preprocessed: Option<PathBuf>,
    /// Worker threads [default: one per available core].
    #[arg(short = 'w', long)]
    pub workers: Option<usize>,
    /// Batches to time, after the warm-up batches.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub batches: u64,
    /// Batches run before timing starts.
    #[arg(long, default_value_t = 4)]
    pub warmup: u64,
    /// Finished batches each worker may hold waiting.
    #[arg(long, default_value_t = 2)]
    pub queue_depth: usize,
    /// Seed of the sampling and augmentation streams.
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Build one full-resolution target instead of one per deep-supervision output.
    #[arg(long)]
    pub no_deep_supervision: bool,
    /// Time the validation loader (no augmentation) instead of the training loader.
    #[arg(long)]
    pub validation: bool,
}

/// Finds `Dataset<ID>_*` (id zero-padded to three digits) or the exact folder name.
fn dataset_folder(root: &Path, dataset: &str) -> anyhow::Result<PathBuf> {
    if let Ok(id) = dataset.parse::<u32>() {
        let prefix = format!("Dataset{id:03}_");
        let entries = std::fs::read_dir(root).with_context(|| {
            format!("failed to list the preprocessed folder {}", root.display())
        })?;
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with(&prefix) && path.is_dir() {
                return Ok(path);
            }
        }
        bail!(
            "no folder {prefix}* in {}; check the dataset id or run `swin-umamba preprocess`",
            root.display()
        );
    }
    let path = root.join(dataset);
    if !path.is_dir() {
        bail!(
            "dataset folder {} not found; check the name or --preprocessed",
            path.display()
        );
    }
    Ok(path)
}

pub fn run(args: LoaderBenchArgs) -> anyhow::Result<()> {
    let root = match &args.preprocessed {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var_os("nnUNet_preprocessed").context(
            "the preprocessed folder is not set; pass --preprocessed or set nnUNet_preprocessed",
        )?),
    };
    let folder = dataset_folder(&root, &args.dataset)?;
    let plan = LoaderPlanConfig::from_plans_file(
        &folder.join(format!("{}.json", args.plans)),
        &args.configuration,
    )?;
    let cases = CaseFolder::open(&folder.join(&plan.data_identifier), None)?;
    let workers = args.workers.unwrap_or_else(default_workers);
    let deep_supervision = !args.no_deep_supervision;
    let config = if args.validation {
        LoaderConfig::nnunet_validation(&plan, deep_supervision, args.seed)
    } else {
        LoaderConfig::nnunet_training(&plan, deep_supervision, args.seed)
    };
    let num_cases = cases.cases.len();
    println!(
        "bench loader: {} ({} cases), {} loader, patch {:?}, read window {:?}, batch {}, {} deep-supervision targets, {} workers",
        folder.display(),
        num_cases,
        if args.validation { "validation" } else { "training" },
        config.patch_size,
        config.window,
        config.batch_size,
        config.deep_supervision_scales.len(),
        workers
    );
    let batch_size = config.batch_size;
    let sampler = BatchSampler::new(cases, config)?;

    let total = args.warmup + args.batches;
    let mut loader = PrefetchLoader::new(sampler, 0, total, workers, args.queue_depth, false)?;
    for _ in 0..args.warmup {
        loader.next().context("the loader ended during warm-up")??;
    }
    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    let mut times = StageTimes::default();
    for batch in loader.by_ref() {
        times.merge(&batch?.times);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_start;
    report(&times, args.batches, batch_size, elapsed, workers);
    println!(
        "process CPU time (all threads): {:.1} ms/batch, so about {:.1} batches/s per fully used core",
        1e3 * cpu / args.batches as f64,
        args.batches as f64 / cpu.max(1e-9)
    );
    Ok(())
}

/// User plus system CPU time of this process, all threads, in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn report(times: &StageTimes, batches: u64, batch_size: usize, elapsed: f64, workers: usize) {
    let per_second = batches as f64 / elapsed;
    println!(
        "{batches} batches in {elapsed:.2} s: {per_second:.2} batches/s, {:.1} samples/s",
        per_second * batch_size as f64
    );
    let worker_total = times.total().as_secs_f64();
    println!(
        "wall time per stage, summed over {workers} workers (inflated when cores are shared):"
    );
    for stage in Stage::ALL {
        let t = times.get(stage).as_secs_f64();
        println!(
            "  {:<28} {:>9.2} ms/batch {:>6.1}%",
            stage.name(),
            1e3 * t / batches as f64,
            100.0 * t / worker_total.max(1e-12)
        );
    }
    println!(
        "  {:<28} {:>9.2} ms/batch",
        "total",
        1e3 * worker_total / batches as f64
    );
}
