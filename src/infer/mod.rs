//! Sliding-window inference as nnU-Net v2's predictor performs it: tile placement, the
//! Gaussian importance map, mirroring test-time augmentation and fold averaging.
//!
//! The network is any [`LogitsNetwork`], so this stage does not depend on how networks
//! and weights are built.
//! NOTE: the `predict` command (reading results folders and images, preprocessing,
//! resampling back and writing files) is not implemented yet.

pub mod export;
pub mod gaussian;
pub mod sliding;
pub mod steps;
pub mod tta;

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
