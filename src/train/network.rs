//! The segmentation-network interface the trainer uses.

use tch::{nn, Tensor};

/// A 2D segmentation network trained by the trainers of this module.
///
/// The networks area implements this for its models; [`crate::train::synthetic::TinyUNet`]
/// implements it for tests and the synthetic mode of `train-fold`.
pub trait SegmentationNetwork {
    /// Runs the network on `input` (B, C, H, W) and returns the logits of every
    /// deep-supervision head, highest resolution first: (B, K, H, W), (B, K, H/2, W/2), ...
    /// With deep supervision off it returns only the full-resolution head.
    fn forward_heads(&self, input: &Tensor, train: bool) -> Vec<Tensor>;

    /// Returns the variable store that contains every trainable parameter.
    fn var_store(&self) -> &nn::VarStore;

    /// Mutable access to the variable store, for loading weights.
    fn var_store_mut(&mut self) -> &mut nn::VarStore;

    /// Names (as in the variable store) of the parameters of the pretrained encoder. The
    /// Swin-UMamba trainers freeze these during the first epochs, except those whose name
    /// contains `patch_embed`.
    fn encoder_parameter_names(&self) -> Vec<String>;

    /// Switches the deep-supervision heads on or off.
    fn set_deep_supervision(&mut self, enabled: bool);

    /// Number of deep-supervision heads when deep supervision is on.
    fn deep_supervision_heads(&self) -> usize;
}

/// Returns the parameters of `net` as (name, tensor) pairs sorted by name, so that every pass over
/// them runs in the same order.
pub fn sorted_parameters(net: &dyn SegmentationNetwork) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = net.var_store().variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}
