use std::path::PathBuf;

/// Errors of the training data pipeline: reading preprocessed cases and plans, and the
/// worker threads that build batches.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "invalid .npy file {path}: {reason}; write it again with numpy.save (format 1.0 or 2.0, \
         little-endian, C order) or rerun `swin-umamba preprocess`"
    )]
    NpyHeader { path: PathBuf, reason: String },

    #[error(
        "{path} stores dtype {found}, but the loader expects {expected}; rerun `swin-umamba \
         preprocess` so that images are float32 and labels int8"
    )]
    NpyDtype {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },

    #[error(
        "{path} has shape {found:?}, but {expected}; rerun `swin-umamba preprocess` for this case"
    )]
    Shape {
        path: PathBuf,
        found: Vec<usize>,
        expected: String,
    },

    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid plans file {path}: {reason}")]
    Plan { path: PathBuf, reason: String },

    #[error(
        "no preprocessed cases (<case>.npy with <case>_seg.npy and <case>.json) in {folder}; \
         run `swin-umamba preprocess` first or check the dataset id and configuration"
    )]
    NoCases { folder: PathBuf },

    #[error("case {case} is not in {folder}; check the case list or the splits file")]
    MissingCase { case: String, folder: PathBuf },

    #[error(
        "class_locations in {path} holds location {location:?}, which is outside the image shape \
         {shape:?}; rerun `swin-umamba preprocess` for this case"
    )]
    ClassLocation {
        path: PathBuf,
        location: Vec<i64>,
        shape: Vec<usize>,
    },

    #[error("invalid loader setting: {0}")]
    Config(String),

    #[error("batch worker {worker} stopped: {reason}")]
    Worker { worker: usize, reason: String },

    #[error("failed to build tensors for a batch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, LoaderError>;

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoaderError {
    let path = path.into();
    move |source| LoaderError::Io { path, source }
}
