//! The batch-source interface the trainer reads from, and the per-epoch random streams.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::error::TrainError;

/// One training or validation batch.
#[derive(Debug)]
pub struct Batch {
    /// Images (B, C, H, W), f32.
    pub data: Tensor,
    /// Label maps (B, 1, h, w) per deep-supervision head, highest resolution first.
    pub targets: Vec<Tensor>,
}

/// A source of batches, such as nnU-Net's data loader with augmentation.
///
/// All randomness must come from `rng`, so that a run resumed from a checkpoint draws the same
/// batches as an uninterrupted run with the same seed.
pub trait BatchSource {
    /// Produces the next batch.
    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Batch, TrainError>;
}

/// The values of the plan the trainer uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainPlan {
    /// Patch size (H, W).
    pub patch_size: [i64; 2],
    /// Batch size.
    pub batch_size: i64,
    /// Number of input channels.
    pub num_input_channels: i64,
    /// Number of classes including background.
    pub num_classes: i64,
    /// Label value excluded from loss and pseudo-Dice, if any.
    pub ignore_label: Option<i64>,
    /// Compute the soft Dice over the whole batch (nnU-Net's 2d plans set this).
    pub batch_dice: bool,
}

/// Random stream of one epoch, for one purpose.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// libtorch's global generator (dropout, drop path).
    Torch = 0,
    /// Training batches.
    Train = 1,
    /// Validation batches.
    Validation = 2,
    /// Network initialisation, drawn before the first epoch (use epoch 0).
    Init = 3,
}

/// Derives the seed of `stream` in `epoch` from the run seed (SplitMix64 finaliser over the
/// three values), so that each epoch's randomness depends only on (seed, epoch).
pub fn epoch_seed(seed: u64, epoch: usize, stream: Stream) -> u64 {
    let mut z = seed
        ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random generator of `stream` in `epoch`.
pub fn epoch_rng(seed: u64, epoch: usize, stream: Stream) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(epoch_seed(seed, epoch, stream))
}
