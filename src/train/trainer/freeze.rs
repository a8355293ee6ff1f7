//! The Swin-UMamba encoder freeze hook.
//!
//! `nnUNetTrainerSwinUMamba.on_train_epoch_start` calls the network's `freeze_encoder` while
//! `current_epoch < freeze_encoder_epochs` and `unfreeze_encoder` afterwards. `freeze_encoder`
//! sets `requires_grad = False` on every encoder parameter whose name does not contain
//! `patch_embed`, so the patch embedding trains from the first epoch. `unfreeze_encoder`
//! sets `requires_grad = True` on the whole encoder.

use super::super::network::SegmentationNetwork;

/// Substring of the encoder parameters that stay trainable while the encoder is frozen.
pub const TRAINABLE_WHILE_FROZEN: &str = "patch_embed";

/// Names of the parameters that are frozen during the freeze epochs.
pub fn frozen_parameter_names(net: &dyn SegmentationNetwork) -> Vec<String> {
    net.encoder_parameter_names()
        .into_iter()
        .filter(|name| !name.contains(TRAINABLE_WHILE_FROZEN))
        .collect()
}

/// Applies the freeze state of `epoch` and returns whether the encoder is frozen.
pub fn apply_encoder_freeze(
    net: &dyn SegmentationNetwork,
    epoch: usize,
    freeze_epochs: usize,
) -> bool {
    let frozen = epoch < freeze_epochs;
    let variables = net.var_store().variables();
    for name in net.encoder_parameter_names() {
        if let Some(tensor) = variables.get(&name) {
            let trainable = !frozen || name.contains(TRAINABLE_WHILE_FROZEN);
            let _ = tensor.set_requires_grad(trainable);
        }
    }
    frozen
}
