//! Learning-rate schedules, stepped once per epoch at the start of the training epoch as
//! `nnUNetTrainer.on_train_epoch_start` does with `lr_scheduler.step(current_epoch)`.

use serde::{Deserialize, Serialize};

/// nnU-Net's poly exponent (`PolyLRScheduler`, nnunetv2).
pub const POLY_EXPONENT: f64 = 0.9;

/// A learning rate as a function of the epoch index (0-based).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// nnU-Net's `PolyLRScheduler`: `initial * (1 - epoch / max_epochs)^exponent`.
    Poly {
        /// Learning rate at epoch 0.
        initial: f64,
        /// Epoch count the decay is laid over.
        max_epochs: usize,
        /// Decay exponent.
        exponent: f64,
    },
    /// PyTorch's `CosineAnnealingLR` stepped with an explicit epoch, which uses its closed
    /// form: `eta_min + (initial - eta_min) * (1 + cos(pi * epoch / t_max)) / 2`.
    Cosine {
        /// Learning rate at epoch 0.
        initial: f64,
        /// Half period in epochs.
        t_max: usize,
        /// Minimum learning rate.
        eta_min: f64,
    },
}

impl LrSchedule {
    /// Returns the learning rate of training epoch `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match *self {
            LrSchedule::Poly {
                initial,
                max_epochs,
                exponent,
            } => initial * (1.0 - epoch as f64 / max_epochs as f64).powf(exponent),
            LrSchedule::Cosine {
                initial,
                t_max,
                eta_min,
            } => {
                let phase = std::f64::consts::PI * epoch as f64 / t_max as f64;
                eta_min + (initial - eta_min) * (1.0 + phase.cos()) / 2.0
            }
        }
    }

    /// Returns the same schedule laid over `epochs` epochs instead of its own length.
    pub fn laid_over(&self, epochs: usize) -> LrSchedule {
        match self.clone() {
            LrSchedule::Poly {
                initial, exponent, ..
            } => LrSchedule::Poly {
                initial,
                max_epochs: epochs,
                exponent,
            },
            LrSchedule::Cosine {
                initial, eta_min, ..
            } => LrSchedule::Cosine {
                initial,
                t_max: epochs,
                eta_min,
            },
        }
    }
}
