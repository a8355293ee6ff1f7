//! The official Swin-UMamba† trainers (`nnUNetTrainerSwinUMambaD` and
//! `nnUNetTrainerSwinUMambaDScratch`, JiarunLiu/Swin-UMamba commit 2c1f72e).

use super::TrainerConfig;

/// Returns the Swin-UMamba values. Training from scratch also turns deep supervision off, as
/// `nnUNetTrainerSwinUMambaDScratch` sets `enable_deep_supervision = False`. The heads at
/// scales [1, 1/4, 1/8, 1/16] get nnU-Net's weights like those of Swin-UMamba.
pub fn config(pretrained: bool) -> TrainerConfig {
    let base = super::swin_umamba::config(pretrained);
    TrainerConfig {
        name: "swin-umamba-d".into(),
        official_class: if pretrained {
            "nnUNetTrainerSwinUMambaD".into()
        } else {
            "nnUNetTrainerSwinUMambaDScratch".into()
        },
        deep_supervision: pretrained,
        loss_weights: if pretrained { Vec::new() } else { vec![1.0] },
        ..base
    }
}
