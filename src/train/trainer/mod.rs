//! Trainers: each is a small composition of optimiser, learning-rate schedule, loss weights
//! and hooks (encoder freezing), described by a serialisable [`TrainerConfig`]. The epoch loop
//! that runs any of them is in [`run`].

pub mod freeze;
pub mod nnunet;
pub mod run;
pub mod step;
pub mod swin_umamba;
pub mod swin_umamba_d;
pub mod umamba;

use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::loss::nnunet_deep_supervision_weights;
use super::optim::OptimizerConfig;
use super::precision::Precision;
use super::schedule::LrSchedule;

/// nnU-Net's gradient-norm clip (`nnUNetTrainer.train_step`, `clip_grad_norm_(..., 12)`).
pub const GRAD_CLIP_NORM: f64 = 12.0;

/// nnU-Net's epoch count (`nnUNetTrainer.__init__`, `num_epochs`).
pub const NNUNET_EPOCHS: usize = 1000;

/// nnU-Net's training iterations per epoch (`num_iterations_per_epoch`).
pub const NNUNET_TRAIN_ITERATIONS: usize = 250;

/// nnU-Net's validation iterations per epoch (`num_val_iterations_per_epoch`).
pub const NNUNET_VAL_ITERATIONS: usize = 50;

/// Interval in epochs of the numbered checkpoints `checkpoint_<epoch>` (`save_every`, which
/// the official Swin-UMamba trainers use to write `checkpoint_{epoch}.pth`).
pub const SAVE_EVERY: usize = 50;

/// Consecutive non-finite training losses after which a run stops with an error. This is a
/// project choice: nnU-Net has no such check.
pub const MAX_CONSECUTIVE_NONFINITE: usize = 20;

/// Everything that defines how a trainer trains; written into every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerConfig {
    /// Trainer name as given to `--trainer`.
    pub name: String,
    /// The official class this configuration reproduces.
    pub official_class: String,
    /// Optimiser and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Learning rate per epoch.
    pub schedule: LrSchedule,
    /// Length of the run the schedule and checkpoints refer to.
    pub num_epochs: usize,
    /// Epoch count after which training ends early, if set (the official scripts evaluate
    /// the checkpoints after 100, 250 or 350 epochs).
    pub stop_epoch: Option<usize>,
    /// Training iterations per epoch.
    pub iterations_per_epoch: usize,
    /// Validation iterations per epoch.
    pub val_iterations_per_epoch: usize,
    /// Epochs at the start during which the encoder is frozen (0: never).
    pub freeze_encoder_epochs: usize,
    /// Deep supervision on or off.
    pub deep_supervision: bool,
    /// Loss weight of each deep-supervision head, highest resolution first. Derived from the
    /// network's head count when empty.
    pub loss_weights: Vec<f64>,
    /// Maximum joint L2 norm of the gradients.
    pub grad_clip_norm: f64,
    /// Interval of the numbered checkpoints, in epochs.
    pub save_every: usize,
    /// Forward precision on CUDA.
    pub precision: Precision,
    /// Consecutive non-finite losses tolerated before the run stops.
    pub max_consecutive_nonfinite: usize,
}

impl TrainerConfig {
    /// Returns the epoch count this run trains for: the stop epoch if set, else `num_epochs`.
    pub fn end_epoch(&self) -> usize {
        self.stop_epoch
            .map_or(self.num_epochs, |s| s.min(self.num_epochs))
    }

    /// Resolves the loss weights for a network with `heads` deep-supervision heads.
    pub fn resolve_loss_weights(&mut self, heads: usize) {
        if !self.deep_supervision {
            self.loss_weights = vec![1.0];
        } else if self.loss_weights.is_empty() {
            self.loss_weights = nnunet_deep_supervision_weights(heads);
        }
    }
}

/// Trainer names accepted by `--trainer`.
pub const TRAINER_NAMES: &[&str] = &["nnunet", "swin-umamba", "swin-umamba-d", "umamba"];

/// Builds the configuration of trainer `name`. `pretrained` selects the official pretrained
/// or scratch variant where they differ.
pub fn by_name(name: &str, pretrained: bool) -> Result<TrainerConfig, TrainError> {
    match name {
        "nnunet" => Ok(nnunet::config()),
        "swin-umamba" => Ok(swin_umamba::config(pretrained)),
        "swin-umamba-d" => Ok(swin_umamba_d::config(pretrained)),
        "umamba" => Ok(umamba::config()),
        other => Err(TrainError::Config {
            name: "--trainer",
            value: other.to_string(),
            reason: format!("unknown trainer; use one of {}", TRAINER_NAMES.join(", ")),
        }),
    }
}
