//! The official Swin-UMamba trainers (`nnUNetTrainerSwinUMamba` and
//! `nnUNetTrainerSwinUMambaScratch`, JiarunLiu/Swin-UMamba commit 2c1f72e).

use super::{TrainerConfig, NNUNET_EPOCHS};
use crate::train::optim::OptimizerConfig;
use crate::train::schedule::LrSchedule;

/// `nnUNetTrainerSwinUMamba.initial_lr`.
pub const INITIAL_LR: f64 = 1e-4;
/// `nnUNetTrainerSwinUMamba.weight_decay`.
pub const WEIGHT_DECAY: f64 = 5e-2;
/// `configure_optimizers`: AdamW `eps`.
pub const ADAMW_EPS: f64 = 1e-5;
/// `configure_optimizers`: AdamW `betas`.
pub const ADAMW_BETAS: (f64, f64) = (0.9, 0.999);
/// `configure_optimizers`: `CosineAnnealingLR(eta_min=1e-6)`.
pub const COSINE_ETA_MIN: f64 = 1e-6;
/// `freeze_encoder_epochs` of the pretrained trainers (the scratch trainers set -1).
pub const FREEZE_ENCODER_EPOCHS: usize = 10;

/// AdamW (lr 1e-4, weight decay 0.05, eps 1e-5) with cosine annealing to 1e-6 over nnU-Net's
/// 1000 epochs, deep supervision on four heads, and the encoder frozen for the first 10
/// epochs when a pretrained encoder is loaded.
pub fn config(pretrained: bool) -> TrainerConfig {
    TrainerConfig {
        name: "swin-umamba".into(),
        official_class: if pretrained {
            "nnUNetTrainerSwinUMamba".into()
        } else {
            "nnUNetTrainerSwinUMambaScratch".into()
        },
        optimizer: OptimizerConfig::AdamW {
            betas: ADAMW_BETAS,
            eps: ADAMW_EPS,
            weight_decay: WEIGHT_DECAY,
        },
        schedule: LrSchedule::Cosine {
            initial: INITIAL_LR,
            t_max: NNUNET_EPOCHS,
            eta_min: COSINE_ETA_MIN,
        },
        freeze_encoder_epochs: if pretrained { FREEZE_ENCODER_EPOCHS } else { 0 },
        // `_get_deep_supervision_scales` lists four heads, [1, 1/2, 1/4, 1/8], which get
        // nnU-Net's weights [4/7, 2/7, 1/7, 0]; the weights follow the network's head count.
        deep_supervision: true,
        loss_weights: Vec::new(),
        ..super::nnunet::config()
    }
}
