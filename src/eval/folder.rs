//! dataset.json labels and the pairing of reference and prediction files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dice::LabelOrRegion;
use super::EvalError;

/// Labels and file ending of an nnU-Net v2 dataset.json.
#[derive(Debug, Clone)]
pub struct DatasetLabels {
    /// Scored classes: foreground labels, or the foreground regions when dataset.json
    /// defines regions, in the order of dataset.json.
    pub classes: Vec<LabelOrRegion>,
    /// Class names by class, from dataset.json's `labels` keys.
    pub names: Vec<String>,
    pub ignore_label: Option<i32>,
    pub file_ending: String,
}

impl DatasetLabels {
    /// Reads the `labels` and `file_ending` entries of an nnU-Net v2 dataset.json.
    ///
    /// As nnU-Net's `LabelManager`: the background (0) and the `ignore` label are not
    /// scored, and a label given as a list is a region (a scalar stays a label).
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let invalid = |message: String| EvalError::InvalidDatasetJson {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;

        let file_ending = json
            .get("file_ending")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("missing string entry `file_ending`, e.g. \".nii.gz\"".into()))?
            .to_string();
        let labels = json
            .get("labels")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                invalid("missing object entry `labels`, e.g. {\"background\": 0}".into())
            })?;
        let parse_ids = |name: &str, value: &Value| -> Result<Vec<i32>, EvalError> {
            let as_id = |v: &Value| v.as_i64().map(|x| x as i32);
            match value {
                Value::Array(items) => items.iter().map(as_id).collect::<Option<Vec<_>>>(),
                other => as_id(other).map(|x| vec![x]),
            }
            .ok_or_else(|| {
                invalid(format!(
                    "label {name:?} is {value}; use an integer or a list"
                ))
            })
        };

        let mut ignore_label = None;
        let mut classes = Vec::new();
        let mut names = Vec::new();
        // serde_json keeps object order only with `preserve_order`; sort by id so the
        // classes come out in label order, as nnU-Net's sorted `all_labels`.
        let mut entries: Vec<(String, Vec<i32>, bool)> = Vec::new();
        for (name, value) in labels {
            entries.push((name.clone(), parse_ids(name, value)?, value.is_array()));
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        for (name, ids, is_list) in entries {
            if name == "ignore" {
                ignore_label = Some(ids[0]);
                continue;
            }
            if ids.iter().all(|&id| id == 0) {
                continue;
            }
            if is_list {
                classes.push(LabelOrRegion::Region(ids));
            } else {
                classes.push(LabelOrRegion::Label(ids[0]));
            }
            names.push(name);
        }
        Ok(DatasetLabels {
            classes,
            names,
            ignore_label,
            file_ending,
        })
    }
}

/// A reference and prediction file pair.
#[derive(Debug, Clone)]
pub struct CasePair {
    pub name: String,
    pub reference: PathBuf,
    pub prediction: PathBuf,
}

/// Lists the names of the files in `folder` ending in `file_ending`, sorted.
pub fn list_files(folder: &Path, file_ending: &str) -> Result<Vec<String>, EvalError> {
    let entries = std::fs::read_dir(folder).map_err(|e| EvalError::Read {
        path: folder.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(file_ending))
        .collect();
    names.sort();
    Ok(names)
}

/// Pairs every prediction ending in `file_ending` with the reference of the same name.
///
/// As nnU-Net's `compute_metrics_on_folder2`: every reference must have a prediction
/// unless `chill` is set.
pub fn pair_cases(
    reference_dir: &Path,
    prediction_dir: &Path,
    file_ending: &str,
    chill: bool,
) -> Result<Vec<CasePair>, EvalError> {
    let predictions = list_files(prediction_dir, file_ending)?;
    if predictions.is_empty() {
        return Err(EvalError::NoCases {
            folder: prediction_dir.to_path_buf(),
            file_ending: file_ending.to_string(),
        });
    }
    if !chill {
        let missing: Vec<String> = list_files(reference_dir, file_ending)?
            .into_iter()
            .filter(|name| !predictions.contains(name))
            .collect();
        if let Some(first) = missing.first() {
            return Err(EvalError::MissingPredictions {
                folder: prediction_dir.to_path_buf(),
                count: missing.len(),
                first: first.clone(),
            });
        }
    }
    predictions
        .into_iter()
        .map(|name| {
            let reference = reference_dir.join(&name);
            if !reference.is_file() {
                return Err(EvalError::MissingReference {
                    path: reference,
                    prediction: name,
                });
            }
            let prediction = prediction_dir.join(&name);
            Ok(CasePair {
                name,
                reference,
                prediction,
            })
        })
        .collect()
}

/// Finds the instance-label file of case `stem` in `folder`: `<stem>_label.tiff` (the
/// NeurIPS challenge's naming), `<stem>.tiff`, `<stem>.tif`, then `<stem><file_ending>`.
pub fn find_instance_file(folder: &Path, stem: &str, file_ending: &str) -> Option<PathBuf> {
    [
        format!("{stem}_label.tiff"),
        format!("{stem}.tiff"),
        format!("{stem}.tif"),
        format!("{stem}{file_ending}"),
    ]
    .into_iter()
    .map(|name| folder.join(name))
    .find(|path| path.is_file())
}
