//! The `predict` subcommand: nnU-Net v2's `nnUNetv2_predict` for the 2d configuration.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::Device;

use super::predict::{predict_image, PredictOptions};
use super::results::{find_results_dataset, ResultsFolder, TrainedFold};
use super::write::{write_probabilities, write_segmentation};
use super::{official, InferError};
use crate::dataset::{list_cases, read_case_files, CaseFiles};

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Input folder with `<case>_<XXXX><ending>` files, one per channel, in the dataset's
    /// file format.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
    /// Output folder; created if missing. Gets `<case><ending>` per case.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Dataset id (e.g. 4) or name, as in the results folder.
    #[arg(short = 'd', long = "dataset")]
    pub dataset: String,
    /// Configuration; only `2d` exists.
    #[arg(short = 'c', long = "configuration", default_value = "2d")]
    pub configuration: String,
    /// Folds whose logits are averaged, e.g. `-f 0 1 2 3 4` or `-f all`.
    #[arg(short = 'f', long = "folds", num_args = 1.., default_values = ["0", "1", "2", "3", "4"])]
    pub folds: Vec<String>,
    /// Trainer folder prefix: nnU-Net's class name (nnUNetTrainer, nnUNetTrainerSwinUMamba,
    /// ...) or this tool's trainer name (nnunet, swin-umamba, ...). `-tr` also works.
    #[arg(long = "trainer", default_value = "nnUNetTrainer")]
    pub trainer: String,
    /// Plans identifier of the trainer folder.
    #[arg(short = 'p', long = "plans", default_value = "nnUNetPlans")]
    pub plans: String,
    /// Checkpoint name in each fold folder, with or without `.pth`. `-chk` also works.
    #[arg(long = "checkpoint", default_value = "checkpoint_final")]
    pub checkpoint: String,
    /// Tile step as a fraction of the patch size, in (0, 1].
    #[arg(long = "step-size", alias = "step_size", default_value_t = official::TILE_STEP_SIZE)]
    pub step_size: f64,
    /// Skip mirroring test-time augmentation: one network pass per tile instead of four.
    #[arg(long = "disable-tta", alias = "disable_tta")]
    pub disable_tta: bool,
    /// Also write `<case>.npz` with the float32 class probabilities (K, Z, Y, X).
    #[arg(long = "save-probabilities", alias = "save_probabilities")]
    pub save_probabilities: bool,
    /// Device: cpu, cuda or cuda:N. `-device` also works.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Tiles per network call; above 1 the mirrored copies join the same call. 1 runs the
    /// network as nnU-Net does. Batches are faster on CPU and moved probabilities by up
    /// to 3e-4 on the test cases, because batched convolutions round differently.
    #[arg(long, default_value_t = 4)]
    pub tile_batch: usize,
    /// Results root; defaults to $nnUNet_results.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
}

/// Rewrites nnU-Net's single-dash long flags of `nnUNetv2_predict` (`-chk`, `-tr`,
/// `-device`, `-step_size`) to the forms clap parses, when the subcommand is `predict`.
pub fn nnunet_style_args(args: Vec<String>) -> Vec<String> {
    if args.get(1).map(String::as_str) != Some("predict") {
        return args;
    }
    args.into_iter()
        .map(|arg| match arg.as_str() {
            "-chk" => "--checkpoint".to_string(),
            "-tr" => "--trainer".to_string(),
            "-device" => "--device".to_string(),
            "-step_size" => "--step-size".to_string(),
            _ => arg,
        })
        .collect()
}

/// Runs `predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    if args.configuration != "2d" {
        bail!(
            "configuration {:?} is not supported; use -c 2d",
            args.configuration
        );
    }
    if !(args.step_size > 0.0 && args.step_size <= 1.0) {
        bail!(
            "--step-size {} is invalid; use a value in (0, 1], e.g. 0.5",
            args.step_size
        );
    }
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let device = parse_device(&args.device)?;

    let results_root = match &args.results {
        Some(root) => root.clone(),
        None => std::env::var_os("nnUNet_results")
            .map(PathBuf::from)
            .context("no results folder: pass --results DIR or set nnUNet_results")?,
    };
    let dataset_dir = find_results_dataset(&results_root, &args.dataset)?;
    let results = ResultsFolder::open(
        &dataset_dir,
        &args.trainer,
        &args.plans,
        &args.configuration,
    )?;
    let checkpoint = args
        .checkpoint
        .trim_end_matches(".pth")
        .trim_end_matches(".json");
    let folds = args
        .folds
        .iter()
        .map(|fold| results.load_fold(fold, checkpoint, device))
        .collect::<Result<Vec<TrainedFold>, InferError>>()?;

    let options = PredictOptions {
        step_size: args.step_size,
        mirroring: !args.disable_tta,
        tile_batch: args.tile_batch,
        keep_probabilities: args.save_probabilities,
        device,
    };
    let started = Instant::now();
    let count = predict_folder(&args.input, &args.output, &results, &folds, &options)?;
    println!(
        "predicted {count} case(s) with {} fold(s) in {:.1} s into {}",
        folds.len(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}

/// Predicts every case of `input` into `output` and copies the plans and dataset.json
/// there, as nnU-Net does. Returns the number of cases.
pub fn predict_folder(
    input: &Path,
    output: &Path,
    results: &ResultsFolder,
    folds: &[TrainedFold],
    options: &PredictOptions,
) -> Result<usize> {
    let ending = results.dataset_json.file_ending.clone();
    let cases = list_cases(input, &ending)?;
    if cases.is_empty() {
        bail!(
            "{}: no input files named <case>_0000{ending}; the dataset's file ending is \
             {ending} and each channel file needs its _XXXX suffix",
            input.display()
        );
    }
    predict_cases(&cases, output, results, folds, options)?;
    for file in ["plans.json", "dataset.json"] {
        let bytes = std::fs::read(results.trainer_dir.join(file))
            .with_context(|| format!("reading {}", results.trainer_dir.join(file).display()))?;
        crate::dataset::write_atomic(&output.join(file), &bytes)?;
    }
    Ok(cases.len())
}

/// Predicts `cases` into `output` (created if missing), one file per case named
/// `<case><ending>`, with a progress bar on a terminal.
pub fn predict_cases(
    cases: &[CaseFiles],
    output: &Path,
    results: &ResultsFolder,
    folds: &[TrainedFold],
    options: &PredictOptions,
) -> Result<()> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let ending = &results.dataset_json.file_ending;
    let terminal = std::io::stderr().is_terminal();
    let progress = if terminal {
        indicatif::ProgressBar::new(cases.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut failures: Vec<String> = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let started = Instant::now();
        let first_file = case.images.first().cloned().unwrap_or_default();
        let predict_one = || -> Result<()> {
            let raw = read_case_files(case)?;
            let prediction = predict_image(&raw.image, &first_file, results, folds, options)?;
            let target = output.join(format!("{}{ending}", case.id));
            write_segmentation(
                &target,
                &prediction.segmentation,
                prediction.shape,
                &first_file,
            )?;
            if let Some(probabilities) = &prediction.probabilities {
                let [z, y, x] = prediction.shape;
                write_probabilities(
                    &output.join(format!("{}.npz", case.id)),
                    probabilities,
                    [prediction.classes, z, y, x],
                )?;
            }
            Ok(())
        };
        // A bad case does not stop the others: each one is written or reported, and the
        // command fails at the end when any case failed.
        let outcome = predict_one()
            .with_context(|| format!("case {} ({}) failed", case.id, first_file.display()));
        let position = format!("{}/{}", index + 1, cases.len());
        match outcome {
            Ok(()) if !terminal => eprintln!(
                "predict: {position} {} in {:.1} s",
                case.id,
                started.elapsed().as_secs_f64()
            ),
            Ok(()) => {}
            Err(error) => {
                progress.suspend(|| eprintln!("predict: {position} {error:#}"));
                failures.push(format!("{error:#}"));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if !failures.is_empty() {
        bail!(
            "{} of {} cases failed and have no output in {} (the others were written):\n  {}",
            failures.len(),
            cases.len(),
            output.display(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

fn parse_device(text: &str) -> Result<Device> {
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
