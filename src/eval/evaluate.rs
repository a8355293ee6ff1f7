//! The folder evaluation behind `swin-umamba evaluate`.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cell_f1::{self, CellF1Options};
use super::folder::{find_instance_file, list_files, pair_cases, CasePair, DatasetLabels};
use super::labels::{read_label_map, LabelMap};
use super::paper::{self, PaperOptions, SliceRange, ToleranceConfig};
use super::summary::{build_summary, CaseResult, PaperSettings};
use super::tables::class_table;
use super::{dice, EvalError};

/// Metric families to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricSet {
    /// nnU-Net's Dice, IoU, TP, FP, FN, TN.
    pub dice: bool,
    /// Swin-UMamba's DSC and NSD.
    pub nsd: bool,
    /// The cell instance F1.
    pub f1: bool,
}

impl MetricSet {
    /// Parses a comma-separated list of `dice`, `nsd`, `f1`.
    pub fn parse(list: &str) -> Result<Self, EvalError> {
        let mut set = MetricSet::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "dice" => set.dice = true,
                "nsd" => set.nsd = true,
                "f1" => set.f1 = true,
                other => {
                    return Err(EvalError::UnknownMetric {
                        name: other.to_string(),
                    })
                }
            }
        }
        Ok(set)
    }
}

/// Everything `evaluate` needs besides the two folders.
#[derive(Debug, Clone)]
pub struct EvaluateConfig {
    pub labels: DatasetLabels,
    pub metrics: MetricSet,
    /// Tolerance file (or built-in name) and its parsed content, for `nsd`.
    pub tolerances: Option<(String, ToleranceConfig)>,
    pub paper: PaperOptions,
    pub cells: CellF1Options,
    /// Folder of instance-id references for `f1`; the reference folder when `None`.
    pub instance_dir: Option<PathBuf>,
    pub chill: bool,
}

impl EvaluateConfig {
    /// Returns the built-in tolerance name for a dataset's file ending: `amos_mri` for
    /// NIfTI volumes, `endoscopy` for images.
    pub fn default_tolerances(file_ending: &str) -> &'static str {
        if file_ending.ends_with(".nii.gz") || file_ending.ends_with(".nii") {
            "amos_mri"
        } else {
            "endoscopy"
        }
    }
}

/// Output files of an evaluation.
#[derive(Debug, Clone)]
pub struct EvaluationOutput {
    pub summary_json: String,
    pub table_markdown: String,
    pub table_csv: String,
    pub cases: Vec<CaseResult>,
}

fn check_shapes(
    case: &CasePair,
    reference: &LabelMap,
    prediction: &LabelMap,
) -> Result<(), EvalError> {
    if reference.shape != prediction.shape {
        return Err(EvalError::ShapeMismatch {
            reference: case.reference.clone(),
            reference_shape: reference.shape,
            prediction: case.prediction.clone(),
            prediction_shape: prediction.shape,
        });
    }
    Ok(())
}

fn evaluate_case(
    case: &CasePair,
    reference_dir: &Path,
    config: &EvaluateConfig,
) -> Result<CaseResult, EvalError> {
    let reference = read_label_map(&case.reference)?;
    let prediction = read_label_map(&case.prediction)?;
    check_shapes(case, &reference, &prediction)?;
    let confusion = config.metrics.dice.then(|| {
        dice::confusion_metrics(
            &reference.data,
            &prediction.data,
            &config.labels.classes,
            config.labels.ignore_label,
        )
    });
    let paper = match (&config.tolerances, config.metrics.nsd) {
        (Some((_, tolerances)), true) => Some(paper::score_case(
            &reference,
            &prediction,
            tolerances,
            &config.paper,
        )),
        _ => None,
    };
    let cells = if config.metrics.f1 {
        let folder = config.instance_dir.as_deref().unwrap_or(reference_dir);
        let stem = case
            .name
            .strip_suffix(&config.labels.file_ending)
            .unwrap_or(&case.name);
        let path =
            find_instance_file(folder, stem, &config.labels.file_ending).ok_or_else(|| {
                EvalError::MissingReference {
                    path: folder.join(format!("{stem}_label.tiff")),
                    prediction: case.name.clone(),
                }
            })?;
        let instances = read_label_map(&path)?;
        let instance_pair = CasePair {
            name: case.name.clone(),
            reference: path,
            prediction: case.prediction.clone(),
        };
        check_shapes(&instance_pair, &instances, &prediction)?;
        let shape = [instances.shape[0], instances.shape[1]];
        Some(cell_f1::score_image(
            &instances.data,
            &prediction.data,
            shape,
            &config.cells,
        ))
    } else {
        None
    };
    Ok(CaseResult {
        reference_file: case.reference.to_string_lossy().into_owned(),
        prediction_file: case.prediction.to_string_lossy().into_owned(),
        confusion,
        paper,
        cells,
    })
}

fn pair_predictions_with_instances(
    prediction_dir: &Path,
    instance_dir: &Path,
    file_ending: &str,
) -> Result<Vec<CasePair>, EvalError> {
    let names = list_files(prediction_dir, file_ending)?;
    if names.is_empty() {
        return Err(EvalError::NoCases {
            folder: prediction_dir.to_path_buf(),
            file_ending: file_ending.to_string(),
        });
    }
    names
        .into_iter()
        .map(|name| {
            let stem = name.strip_suffix(file_ending).unwrap_or(&name);
            let reference =
                find_instance_file(instance_dir, stem, file_ending).ok_or_else(|| {
                    EvalError::MissingReference {
                        path: instance_dir.join(format!("{stem}_label.tiff")),
                        prediction: name.clone(),
                    }
                })?;
            Ok(CasePair {
                prediction: prediction_dir.join(&name),
                reference,
                name,
            })
        })
        .collect()
}

/// Scores every prediction in `prediction_dir` against `reference_dir`, cases in parallel.
pub fn evaluate_folders(
    reference_dir: &Path,
    prediction_dir: &Path,
    config: &EvaluateConfig,
) -> Result<EvaluationOutput, EvalError> {
    let semantic = config.metrics.dice || config.metrics.nsd;
    if semantic && config.metrics.f1 && config.instance_dir.is_none() {
        return Err(EvalError::InstanceDirRequired);
    }
    let pairs = if semantic {
        pair_cases(
            reference_dir,
            prediction_dir,
            &config.labels.file_ending,
            config.chill,
        )?
    } else {
        // F1 alone needs only the instance references, which are named differently.
        let instance_dir = config.instance_dir.as_deref().unwrap_or(reference_dir);
        pair_predictions_with_instances(prediction_dir, instance_dir, &config.labels.file_ending)?
    };
    let cases: Vec<CaseResult> = pairs
        .par_iter()
        .map(|case| evaluate_case(case, reference_dir, config))
        .collect::<Result<_, _>>()?;
    let paper_settings = match (&config.tolerances, config.metrics.nsd) {
        (Some((name, tolerances)), true) => Some(PaperSettings {
            protocol: tolerances.protocol,
            tolerances: name.clone(),
            slice_range: match config.paper.slice_range {
                SliceRange::Official => "official",
                SliceRange::Inclusive => "inclusive",
                SliceRange::All => "all",
            }
            .into(),
            rounded: config.paper.round,
        }),
        _ => None,
    };
    let cell_threshold = config.metrics.f1.then_some(config.cells.iou_threshold);
    let summary = build_summary(
        &cases,
        &config.labels.classes,
        paper_settings.as_ref(),
        cell_threshold,
    );
    let table = class_table(
        &cases,
        &config.labels.classes,
        &config.labels.names,
        paper_settings.as_ref().map(|s| s.protocol),
    );
    Ok(EvaluationOutput {
        summary_json: summary.to_pretty(),
        table_markdown: table.to_markdown(),
        table_csv: table.to_csv(),
        cases,
    })
}

/// Writes `contents` to each path through a temporary file in the same folder, renaming
/// only after every temporary file is complete, so a failure leaves no partial output.
pub fn write_all_atomically(files: &[(PathBuf, &str)]) -> Result<(), EvalError> {
    let mut temporaries = Vec::new();
    for (path, contents) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.tmp"));
        if let Err(e) = std::fs::write(&temporary, contents) {
            for (t, _) in &temporaries {
                let _ = std::fs::remove_file(t);
            }
            return Err(EvalError::Write {
                path: path.clone(),
                message: e.to_string(),
            });
        }
        temporaries.push((temporary, path.clone()));
    }
    for (temporary, path) in &temporaries {
        std::fs::rename(temporary, path).map_err(|e| EvalError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}
