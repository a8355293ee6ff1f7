//! Sliding-window inference as nnU-Net v2's predictor performs it: tile placement, the
//! Gaussian importance map, mirroring test-time augmentation and fold averaging.
//!
//! The sliding window takes any [`LogitsNetwork`]. The `predict` command ([`cli`]) loads
//! the networks of a results folder ([`results`]), preprocesses each image as training did,
//! and writes the segmentation in the input's format ([`predict`], [`write`]).

pub mod cli;
pub mod export;
pub mod gaussian;
pub mod predict;
pub mod results;
pub mod sliding;
pub mod steps;
pub mod tta;
pub mod validation;
pub mod write;

use std::path::PathBuf;

use tch::{TchError, Tensor};

/// Constants of nnU-Net v2's predictor (`nnunetv2/inference`, version 2.8.1).
pub mod official {
    /// Gaussian sigma as a fraction of the tile size (`compute_gaussian(sigma_scale=1/8)`).
    pub const GAUSSIAN_SIGMA_SCALE: f64 = 1.0 / 8.0;
    /// Value of the Gaussian map's maximum (`compute_gaussian(value_scaling_factor=10)`).
    pub const GAUSSIAN_VALUE_SCALING: f64 = 10.0;
    /// Default tile step as a fraction of the tile size (`--step_size 0.5`).
    pub const TILE_STEP_SIZE: f64 = 0.5;
    /// Kernel radius of `scipy.ndimage.gaussian_filter` in sigmas (`truncate=4.0`).
    pub const GAUSSIAN_TRUNCATE: f64 = 4.0;
}

/// Errors of the inference area.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("invalid tile step size {step}: use a value in (0, 1], e.g. 0.5")]
    InvalidStepSize { step: f64 },
    #[error(
        "input shape {shape:?} does not match the tile size {tile:?}: the input needs \
         (channels, slices, height, width) for a 2D tile"
    )]
    InvalidShape { shape: Vec<i64>, tile: Vec<i64> },
    #[error(
        "out of memory on {device} while predicting a batch of {tiles} tile(s): {message}. \
         Lower the tile batch size, or predict with --device cpu"
    )]
    OutOfMemory {
        device: String,
        tiles: usize,
        message: String,
    },
    #[error("the network failed on a batch of {tiles} tile(s): {source}")]
    Network { tiles: usize, source: TchError },
    #[error(
        "the averaged logits contain inf: the half-precision accumulator overflowed; \
         accumulate in float32 (SlidingWindowOptions::accumulate_in_float)"
    )]
    InfiniteLogits,
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    #[error("{}: {source}", path.display())]
    Nets {
        path: PathBuf,
        #[source]
        source: crate::nets::NetsError,
    },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Train(#[from] crate::train::error::TrainError),
    #[error("libtorch operation failed: {0}")]
    Torch(#[from] TchError),
}

impl InferError {
    pub(crate) fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        InferError::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        InferError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A segmentation network: maps a batch (B, C, H, W) to logits (B, K, H, W).
pub trait LogitsNetwork {
    /// Runs the network on one batch.
    fn logits(&self, input: &Tensor) -> Result<Tensor, TchError>;
}

impl<F> LogitsNetwork for F
where
    F: Fn(&Tensor) -> Result<Tensor, TchError>,
{
    fn logits(&self, input: &Tensor) -> Result<Tensor, TchError> {
        self(input)
    }
}
