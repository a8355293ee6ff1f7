//! U-Mamba's trainers (`nnUNetTrainerUMambaBot`, `nnUNetTrainerUMambaEnc` in
//! bowang-lab/U-Mamba): they only swap the network and keep every training value of
//! `nnUNetTrainer`.

use super::TrainerConfig;

/// Returns the nnU-Net defaults under the U-Mamba name.
pub fn config() -> TrainerConfig {
    TrainerConfig {
        name: "umamba".into(),
        official_class: "nnUNetTrainerUMambaBot / nnUNetTrainerUMambaEnc".into(),
        ..super::nnunet::config()
    }
}
