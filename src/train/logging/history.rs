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
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    /// Mean validation loss.
    #[serde(deserialize_with = "nan_from_null")]
    pub val_loss: f64,
    /// Pseudo-Dice per foreground class, from the summed validation counts.
    #[serde(deserialize_with = "nans_from_nulls")]
    pub dice_per_class: Vec<f64>,
    /// Mean of `dice_per_class`, ignoring NaN (classes absent from prediction and target).
    #[serde(deserialize_with = "nan_from_null")]
    pub mean_fg_dice: f64,
    /// Moving average of `mean_fg_dice`.
    #[serde(deserialize_with = "nan_from_null")]
    pub ema_fg_dice: f64,
    /// Learning rate of the epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub lr: f64,
    /// Wall time of the epoch in seconds.
    #[serde(deserialize_with = "nan_from_null")]
    pub epoch_time_s: f64,
    /// Seconds spent waiting for batches in the epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub data_wait_s: f64,
    /// Training steps skipped because of a non-finite loss.
    pub nonfinite_steps: usize,
    /// Unix time at the end of the epoch, in seconds.
    #[serde(deserialize_with = "nan_from_null")]
    pub end_unix_s: f64,
}

/// Reads a float that serde_json wrote as `null`, which is how it writes NaN (a class absent
/// from a validation batch has NaN pseudo-Dice), back as NaN.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Reads a list of floats with `null` for NaN, as [`nan_from_null`] does for one.
fn nans_from_nulls<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<f64>, D::Error> {
    let values = Vec::<Option<f64>>::deserialize(deserializer)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_values_survive_json() {
        let record = EpochRecord {
            epoch: 2,
            train_loss: f64::NAN,
            val_loss: 0.75,
            dice_per_class: vec![0.0, f64::NAN, 0.12],
            mean_fg_dice: 0.04,
            ema_fg_dice: 0.1,
            lr: 0.0077,
            epoch_time_s: 4.9,
            data_wait_s: 0.003,
            nonfinite_steps: 0,
            end_unix_s: 1.8e9,
        };
        let text = serde_json::to_string(&History {
            epochs: vec![record],
        })
        .unwrap();
        assert!(
            text.contains("null"),
            "serde_json writes NaN as null: {text}"
        );
        let back: History = serde_json::from_str(&text).unwrap();
        let read = &back.epochs[0];
        assert!(read.train_loss.is_nan());
        assert_eq!(read.dice_per_class[0], 0.0);
        assert!(read.dice_per_class[1].is_nan());
        assert_eq!(read.dice_per_class[2], 0.12);
        assert_eq!(read.val_loss, 0.75);
    }
}
