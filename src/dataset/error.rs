use std::path::PathBuf;

/// Errors about raw datasets: locating them, reading `dataset.json` and image files,
/// integrity checks and conversion.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid dataset.json: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: cannot read image: {message}. Check that the file is complete and in the format its ending names")]
    Read { path: PathBuf, message: String },
    #[error("{path}: unknown file ending; supported endings are .png, .bmp, .tif, .tiff, .jpg, .jpeg, .nii and .nii.gz")]
    UnknownEnding { path: PathBuf },
    #[error("dataset {query:?} not found in {root}: expected a folder named DatasetXXX_Name there; check the id or name, and the folder variable or flag that names {root}")]
    NotFound { query: String, root: PathBuf },
    #[error("{which} folder not set: set the environment variable {env} or pass {flag}")]
    FolderNotSet {
        which: &'static str,
        env: &'static str,
        flag: &'static str,
    },
    #[error("dataset integrity check failed:\n{}", .problems.join("\n"))]
    Integrity { problems: Vec<String> },
    #[error("conversion failed: {0}")]
    Convert(String),
}

impl DatasetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        DatasetError::Read {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
