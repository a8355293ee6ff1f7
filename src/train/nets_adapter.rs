//! [`SegmentationNetwork`] for the networks of [`crate::nets`].

use tch::{nn, Kind, Tensor};

use super::error::TrainError;
use super::network::SegmentationNetwork;
use crate::nets::{Model, SegmentationNet};

/// A [`Model`] with the deep-supervision switch that the networks area leaves to the caller.
/// With deep supervision off, only the full-resolution head is returned, as the official
/// networks return only `seg_outputs[0]` then.
pub struct TrainableModel {
    model: Model,
    deep_supervision: bool,
    head_scales: Vec<[f64; 2]>,
}

impl TrainableModel {
    /// Wraps `model` and records its heads by running one eval-mode forward pass on a zero
    /// input of `patch` (H, W) at batch 1.
    pub fn new(model: Model, patch: [i64; 2]) -> Result<Self, TrainError> {
        model
            .check_input_size(patch[0], patch[1])
            .map_err(|e| TrainError::Config {
                name: "patch_size",
                value: format!("{patch:?}"),
                reason: e.to_string(),
            })?;
        let device = model.var_store().device();
        let input = Tensor::zeros(
            [1, model.in_channels, patch[0], patch[1]],
            (Kind::Float, device),
        );
        let heads = tch::no_grad(|| model.forward_heads(&input, false));
        let head_scales = heads
            .iter()
            .map(|h| {
                let size = h.size();
                [
                    size[2] as f64 / patch[0] as f64,
                    size[3] as f64 / patch[1] as f64,
                ]
            })
            .collect();
        Ok(TrainableModel {
            model,
            deep_supervision: true,
            head_scales,
        })
    }

    /// The wrapped network.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Returns [scale_y, scale_x] of every head relative to the input, highest resolution
    /// first, for the loader's deep-supervision scales. Only the first entry is returned
    /// while deep supervision is off.
    pub fn target_scales(&self) -> Vec<[f64; 2]> {
        if self.deep_supervision {
            self.head_scales.clone()
        } else {
            self.head_scales[..1].to_vec()
        }
    }
}

impl SegmentationNetwork for TrainableModel {
    fn forward_heads(&self, input: &Tensor, train: bool) -> Vec<Tensor> {
        let mut heads = self.model.forward_heads(input, train);
        if !self.deep_supervision {
            heads.truncate(1);
        }
        heads
    }

    fn var_store(&self) -> &nn::VarStore {
        self.model.var_store()
    }

    fn var_store_mut(&mut self) -> &mut nn::VarStore {
        self.model.var_store_mut()
    }

    fn encoder_parameter_names(&self) -> Vec<String> {
        let prefixes = self.model.encoder_prefixes();
        let mut names: Vec<String> = self
            .model
            .var_store()
            .variables()
            .into_keys()
            .filter(|name| prefixes.iter().any(|p| name.starts_with(p)))
            .collect();
        names.sort();
        names
    }

    fn set_deep_supervision(&mut self, enabled: bool) {
        self.deep_supervision = enabled;
    }

    fn deep_supervision_heads(&self) -> usize {
        self.head_scales.len()
    }
}
