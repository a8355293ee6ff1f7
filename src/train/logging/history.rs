//! Per-epoch values of a run, kept in checkpoints so that curves survive `--continue`.

use serde::{Deserialize, Serialize};

/// Weight of the previous value in the moving average of the pseudo-Dice
/// (`nnUNetLogger.log`, nnunetv2: `ema = 0.9 * ema + 0.1 * new`).
pub const EMA_DECAY: f64 = 0.9;

/// Values logged at the end of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// Epoch index, 0-based.
    pub epoch: usize,
    /// Mean training loss over the finite steps.
    pub train_loss: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Pseudo-Dice per foreground class, from the summed validation counts.
    pub dice_per_class: Vec<f64>,
    /// Mean of `dice_per_class`, ignoring NaN (classes absent from prediction and target).
    pub mean_fg_dice: f64,
    /// Moving average of `mean_fg_dice`.
    pub ema_fg_dice: f64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Wall time of the epoch in seconds.
    pub epoch_time_s: f64,
    /// Seconds spent waiting for batches in the epoch.
    pub data_wait_s: f64,
    /// Training steps skipped because of a non-finite loss.
    pub nonfinite_steps: usize,
    /// Unix time at the end of the epoch, in seconds.
    pub end_unix_s: f64,
}

/// The records of every finished epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// One record per epoch, in order.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// Returns the moving average after adding `mean_fg_dice`, which is the value itself for the
    /// first epoch, as in nnU-Net.
    pub fn next_ema(&self, mean_fg_dice: f64) -> f64 {
        match self.epochs.last() {
            Some(last) => EMA_DECAY * last.ema_fg_dice + (1.0 - EMA_DECAY) * mean_fg_dice,
            None => mean_fg_dice,
        }
    }
}

/// Pseudo-Dice `2 tp / (2 tp + fp + fn)` per class; NaN where the class appears in neither
/// prediction nor target.
pub fn dice_per_class(tp: &[f64], fp: &[f64], fn_: &[f64]) -> Vec<f64> {
    tp.iter()
        .zip(fp)
        .zip(fn_)
        .map(|((tp, fp), fn_)| 2.0 * tp / (2.0 * tp + fp + fn_))
        .collect()
}

/// Mean of the non-NaN values (`np.nanmean`); NaN when all are NaN.
pub fn nan_mean(values: &[f64]) -> f64 {
    let finite: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}
