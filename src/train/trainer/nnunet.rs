//! nnU-Net v2's default trainer (`nnUNetTrainer`, nnunetv2 2.8.1 and the copy in the official
//! Swin-UMamba repository).

use super::{TrainerConfig, GRAD_CLIP_NORM, MAX_CONSECUTIVE_NONFINITE, NNUNET_EPOCHS};
use super::{NNUNET_TRAIN_ITERATIONS, NNUNET_VAL_ITERATIONS, SAVE_EVERY};
use crate::train::optim::OptimizerConfig;
use crate::train::precision::Precision;
use crate::train::schedule::{LrSchedule, POLY_EXPONENT};

/// `nnUNetTrainer.initial_lr`.
pub const INITIAL_LR: f64 = 1e-2;
/// `nnUNetTrainer.weight_decay`.
pub const WEIGHT_DECAY: f64 = 3e-5;
/// `nnUNetTrainer.configure_optimizers`: SGD momentum, with Nesterov.
pub const MOMENTUM: f64 = 0.99;

/// SGD with Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5, poly decay (exponent 0.9)
/// over 1000 epochs of 250 training and 50 validation iterations, deep supervision on.
pub fn config() -> TrainerConfig {
    TrainerConfig {
        name: "nnunet".into(),
        official_class: "nnUNetTrainer".into(),
        optimizer: OptimizerConfig::Sgd {
            momentum: MOMENTUM,
            nesterov: true,
            weight_decay: WEIGHT_DECAY,
        },
        schedule: LrSchedule::Poly {
            initial: INITIAL_LR,
            max_epochs: NNUNET_EPOCHS,
            exponent: POLY_EXPONENT,
        },
        num_epochs: NNUNET_EPOCHS,
        stop_epoch: None,
        iterations_per_epoch: NNUNET_TRAIN_ITERATIONS,
        val_iterations_per_epoch: NNUNET_VAL_ITERATIONS,
        freeze_encoder_epochs: 0,
        deep_supervision: true,
        loss_weights: Vec::new(),
        grad_clip_norm: GRAD_CLIP_NORM,
        save_every: SAVE_EVERY,
        precision: Precision::Bf16,
        max_consecutive_nonfinite: MAX_CONSECUTIVE_NONFINITE,
    }
}
