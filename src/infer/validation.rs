//! The end of `train-fold`: predict the fold's validation cases with the final weights
//! into `fold_X/validation/` and score them into `fold_X/validation/summary.json`, as
//! nnU-Net's `perform_actual_validation` does.

use std::path::{Path, PathBuf};

use tch::Device;

use super::cli::predict_cases;
use super::predict::PredictOptions;
use super::results::ResultsFolder;
use super::InferError;
use crate::dataset::{find_dataset, DatasetFolders, RawDataset};
use crate::eval::cell_f1::CellF1Options;
use crate::eval::evaluate::{evaluate_folders, write_all_atomically, EvaluateConfig, MetricSet};
use crate::eval::folder::DatasetLabels;
use crate::eval::paper::PaperOptions;
use crate::preprocess::load_or_create_splits;

/// Input folders of the validation.
#[derive(Debug, Clone)]
pub struct ValidationInputs {
    /// The raw dataset folder (`imagesTr`, `labelsTr`, `dataset.json`).
    pub raw_dataset: PathBuf,
    /// The preprocessed dataset folder (`nnUNetPlans.json`, `splits_final.json`).
    pub preprocessed_dataset: PathBuf,
}

/// Finds the raw and preprocessed folders of `dataset` (an id or name) under
/// `$nnUNet_raw` and `$nnUNet_preprocessed`. Returns `None` when either is missing or
/// the dataset has not been planned.
pub fn find_inputs(dataset: &str) -> Option<ValidationInputs> {
    let folders = DatasetFolders::default().with_env();
    let raw_dataset = find_dataset(folders.raw().ok()?, dataset).ok()?;
    let preprocessed_dataset = folders.preprocessed().ok()?.join(raw_dataset.file_name()?);
    preprocessed_dataset
        .join("nnUNetPlans.json")
        .is_file()
        .then_some(ValidationInputs {
            raw_dataset,
            preprocessed_dataset,
        })
}

/// Predicts the validation cases of `fold` (all cases for `all`) with the fold folder's
/// `checkpoint_final` and writes `validation/summary.json` with nnU-Net's metrics.
///
/// Copies the plans and dataset.json into the trainer folder first when they are missing,
/// as nnU-Net's trainer does at the start of training, so that `predict` can read the
/// folder later. Returns the summary path.
pub fn validate_fold(
    fold_dir: &Path,
    fold: &str,
    inputs: &ValidationInputs,
    device: Device,
    mirroring: bool,
) -> Result<PathBuf, InferError> {
    let trainer_dir = fold_dir
        .parent()
        .ok_or_else(|| InferError::input(fold_dir, "the fold folder has no parent folder"))?;
    let plans_source = inputs.preprocessed_dataset.join("nnUNetPlans.json");
    let copies = [
        (plans_source, trainer_dir.join("plans.json")),
        (
            inputs.raw_dataset.join("dataset.json"),
            trainer_dir.join("dataset.json"),
        ),
    ];
    for (source, target) in &copies {
        if !target.exists() {
            let bytes = std::fs::read(source).map_err(|e| InferError::io(source, e))?;
            crate::dataset::write_atomic(target, &bytes)?;
        }
    }
    let results = ResultsFolder::from_trainer_dir(trainer_dir, "2d")?;
    let trained = results.load_fold(fold, "checkpoint_final", device)?;

    let dataset = RawDataset::open(&inputs.raw_dataset)?;
    let mut cases = dataset.training_cases()?;
    if fold != "all" {
        let ids: Vec<String> = cases.iter().map(|c| c.id.clone()).collect();
        let splits_path = inputs.preprocessed_dataset.join("splits_final.json");
        let splits = load_or_create_splits(&splits_path, &ids)
            .map_err(|e| InferError::input(&splits_path, e.to_string()))?;
        let index: usize = fold.parse().map_err(|_| {
            InferError::input(
                &splits_path,
                format!("fold {fold:?} is not a number or `all`"),
            )
        })?;
        let split = splits.get(index).ok_or_else(|| {
            InferError::input(
                &splits_path,
                format!(
                    "fold {index} does not exist; the file lists {}",
                    splits.len()
                ),
            )
        })?;
        cases.retain(|c| split.val.contains(&c.id));
    }

    let output = fold_dir.join("validation");
    let options = PredictOptions {
        device,
        tile_batch: 4,
        mirroring,
        ..PredictOptions::default()
    };
    predict_cases(&cases, &output, &results, &[trained], &options)
        .map_err(|e| InferError::input(&output, format!("{e:#}")))?;

    let dataset_json = trainer_dir.join("dataset.json");
    let config = EvaluateConfig {
        labels: DatasetLabels::read(&dataset_json)
            .map_err(|e| InferError::input(&dataset_json, e.to_string()))?,
        metrics: MetricSet::parse("dice").expect("`dice` is a metric name"),
        tolerances: None,
        paper: PaperOptions::default(),
        cells: CellF1Options::default(),
        instance_dir: None,
        chill: true,
    };
    let labels_dir = inputs.raw_dataset.join("labelsTr");
    let evaluation = evaluate_folders(&labels_dir, &output, &config)
        .map_err(|e| InferError::input(&output, e.to_string()))?;
    let summary = output.join("summary.json");
    write_all_atomically(&[(summary.clone(), evaluation.summary_json.as_str())])
        .map_err(|e| InferError::input(&summary, e.to_string()))?;
    Ok(summary)
}
