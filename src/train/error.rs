//! Errors of the training area.

use std::path::PathBuf;

/// Everything that can fail while configuring, running or resuming a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A libtorch operation failed.
    #[error("libtorch operation failed: {0}")]
    Torch(#[from] tch::TchError),

    /// Reading or writing a file failed.
    #[error("{action} {path} failed: {source}")]
    Io {
        /// Attempted action ("writing", "reading", "renaming").
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint or its sidecar is missing, unreadable or inconsistent.
    #[error("invalid checkpoint {path}: {reason}")]
    Checkpoint {
        /// The sidecar or weights file.
        path: PathBuf,
        /// Problem and the fix.
        reason: String,
    },

    /// A configuration value is invalid.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Config {
        /// The option or field name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// Reason and the accepted values.
        reason: String,
    },

    /// Network outputs and targets do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// Too many consecutive training steps produced a non-finite loss.
    #[error(
        "{count} consecutive training steps produced a non-finite loss (epoch {epoch}); \
         try a lower learning rate, --precision fp32, or check the input normalisation"
    )]
    NonFiniteLoss {
        /// Consecutive non-finite steps when the run stopped.
        count: usize,
        /// Epoch in which the run stopped.
        epoch: usize,
    },

    /// An input file (plan, dataset.json, splits, weights) is missing or invalid.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Problem and the fix.
        reason: String,
    },

    /// A batch source failed to produce a batch.
    #[error("batch source failed: {0}")]
    Data(String),
}

impl TrainError {
    /// Wraps an I/O error with the action and the file it concerned.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
