//! Evaluation: nnU-Net v2's per-class metrics, Swin-UMamba's DSC and NSD as the official
//! Swin-UMamba scripts compute them, the NeurIPS 2022 cell-segmentation F1, and the
//! `evaluate` command that writes summary.json with Markdown and CSV tables.
//!
//! docs/evaluation.md describes each metric, the official conventions and quirks, and the
//! flags that correct them.

pub mod cell_f1;
pub mod cli;
pub mod dice;
pub mod evaluate;
pub mod folder;
pub mod labels;
pub mod paper;
pub mod summary;
pub mod surface;
mod surfel_table;
pub mod tables;

use std::path::PathBuf;

/// Errors of the evaluation area.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("failed to read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "unsupported label file {path}: use .nii.gz, .nii, .png, .bmp, .tif or .tiff \
         (JPEG is lossy and cannot hold labels)"
    )]
    UnsupportedFormat { path: PathBuf },
    #[error("invalid dataset.json {path}: {message}")]
    InvalidDatasetJson { path: PathBuf, message: String },
    #[error("invalid NSD tolerance file {path}: {message}")]
    InvalidTolerances { path: PathBuf, message: String },
    #[error(
        "shape mismatch: reference {reference} is {reference_shape:?} but prediction \
         {prediction} is {prediction_shape:?}; predict at the reference's geometry"
    )]
    ShapeMismatch {
        reference: PathBuf,
        reference_shape: [usize; 3],
        prediction: PathBuf,
        prediction_shape: [usize; 3],
    },
    #[error("no prediction ending in {file_ending:?} found in {folder}; check PRED_DIR and file_ending in dataset.json")]
    NoCases {
        folder: PathBuf,
        file_ending: String,
    },
    #[error(
        "{count} reference case(s) have no prediction in {folder}, first {first}; predict \
         them or pass --chill to score only the predictions present"
    )]
    MissingPredictions {
        folder: PathBuf,
        count: usize,
        first: String,
    },
    #[error("reference {path} for prediction {prediction} not found; name both files alike")]
    MissingReference { path: PathBuf, prediction: String },
    #[error("unknown metric {name:?} in --metrics; use a comma-separated list of dice, nsd, f1")]
    UnknownMetric { name: String },
    #[error(
        "--metrics combines f1 with dice or nsd, so REF_DIR contains semantic label maps; \
         pass --instance-dir with the instance-id references for f1"
    )]
    InstanceDirRequired,
    #[error("failed to write {path}: {message}")]
    Write { path: PathBuf, message: String },
}
