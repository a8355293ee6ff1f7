//! Swin-UMamba† (`SwinUMambaD` in the official `SwinUMambaD.py`): the VMamba encoder
//! with a 4×4 patch embedding straight from the input, and a decoder of patch expanding
//! plus VSS blocks. Heads at full resolution (after a final 4× expansion), 1/4, 1/8 and
//! 1/16, full resolution first.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{Conv2d, ConvInit, Linear};
use super::patch::PatchExpand;
use super::ss2d::{LinearInit, D_STATE};
use super::vss::{linspace, VssLayer, VssmEncoder, VssmEncoderConfig};
use super::NetsError;

/// Architecture of Swin-UMamba†; the defaults are `get_swin_umamba_d_from_plans`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwinUMambaDConfig {
    /// Patch size of the embedding.
    pub patch_size: i64,
    /// Stage widths, shared by encoder and decoder (`features_per_stage`).
    pub dims: Vec<i64>,
    /// Encoder VSS blocks per stage.
    pub depths: Vec<i64>,
    /// VSS blocks per decoder stage (hard-coded 2 in the official decoder).
    pub decoder_depth: i64,
    /// SSM state size N.
    pub d_state: i64,
    /// Final stochastic-depth rate of the encoder.
    pub encoder_drop_path_rate: f64,
    /// First stochastic-depth rate of the decoder, falling to 0 at the last block.
    pub decoder_drop_path_rate: f64,
}

impl Default for SwinUMambaDConfig {
    fn default() -> Self {
        Self {
            patch_size: 4,
            dims: vec![96, 192, 384, 768],
            depths: vec![2, 2, 9, 2],
            decoder_depth: 2,
            d_state: D_STATE,
            encoder_drop_path_rate: 0.2,
            decoder_drop_path_rate: 0.2,
        }
    }
}

/// One decoder stage: expand the stage below, concatenate the skip, project back
/// (`concat_back_dim`), VSS blocks, segmentation head.
#[derive(Debug)]
struct DecoderStage {
    expand: PatchExpand,
    concat_back_dim: Linear,
    stage: VssLayer,
    seg_layer: Conv2d,
}

/// The Swin-UMamba† network.
#[derive(Debug)]
pub struct SwinUMambaD {
    vssm_encoder: VssmEncoder,
    stages: Vec<DecoderStage>,
    final_expand: PatchExpand,
    final_seg_layer: Conv2d,
    patch_size: i64,
}

fn seg_conv(path: nn::Path, in_channels: i64, num_classes: i64) -> Conv2d {
    // `InitWeights_He(1e-2)` re-initialises every convolution of the model.
    Conv2d::new(
        path,
        in_channels,
        num_classes,
        1,
        1,
        0,
        1,
        true,
        ConvInit::HeNormal,
    )
}

impl SwinUMambaD {
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        num_classes: i64,
        config: &SwinUMambaDConfig,
    ) -> Result<Self, NetsError> {
        if config.dims.len() != config.depths.len() || config.dims.len() < 2 {
            return Err(NetsError::InvalidConfig {
                reason: format!(
                    "dims {:?} and depths {:?} must have the same length, at least 2",
                    config.dims, config.depths
                ),
            });
        }
        let dims = &config.dims;
        let vssm_encoder = VssmEncoder::new(
            &path / "vssm_encoder",
            &VssmEncoderConfig {
                patch: config.patch_size,
                in_channels,
                dims: dims.clone(),
                depths: config.depths.clone(),
                d_state: config.d_state,
                drop_path_rate: config.encoder_drop_path_rate,
            },
        );
        let decoder = &path / "decoder";
        let n_up = dims.len() - 1;
        let depth = config.decoder_depth as usize;
        let rates = linspace(config.decoder_drop_path_rate, 0.0, n_up * 2);
        let mut stages = Vec::new();
        for s in 0..n_up {
            let below = dims[n_up - s];
            let skip = dims[n_up - s - 1];
            // The official slices `dpr[2(s-1):2s]` of a list of 2·n_up rates with
            // depths [2, 2, 2, 2], so deeper decoders reuse the same positions.
            let start = (2 * s).min(rates.len());
            let end = (start + depth).min(rates.len());
            let mut stage_rates = rates[start..end].to_vec();
            stage_rates.resize(depth, 0.0);
            stages.push(DecoderStage {
                expand: PatchExpand::double(&decoder / "expand_layers" / s, below),
                concat_back_dim: Linear::new(
                    &decoder / "concat_back_dim" / s,
                    2 * skip,
                    skip,
                    true,
                ),
                stage: VssLayer::new(
                    &decoder / "stages" / s,
                    skip,
                    config.d_state,
                    &stage_rates,
                    LinearInit::TorchDefault,
                ),
                seg_layer: seg_conv(&decoder / "seg_layers" / s, skip, num_classes),
            });
        }
        let final_expand = PatchExpand::quadruple(&decoder / "expand_layers" / n_up, dims[0]);
        let final_seg_layer = seg_conv(&decoder / "seg_layers" / n_up, dims[0], num_classes);
        Ok(Self {
            vssm_encoder,
            stages,
            final_expand,
            final_seg_layer,
            patch_size: config.patch_size,
        })
    }

    /// Returns every head, full resolution first.
    ///
    /// # Shapes
    /// `x`: (B, C, H, W) with H and W divisible by 32 → (B, K, H, W), then
    /// (B, K, H/2^(i+1), W/2^(i+1)) for the decoder stages from 1/4 down.
    pub fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let skips = self.vssm_encoder.forward(x, train); // [x, s0, ..., s3], NCHW
        let mut h = skips[skips.len() - 1].shallow_clone();
        let mut heads = Vec::new(); // lowest resolution first
        for (s, stage) in self.stages.iter().enumerate() {
            let up = stage.expand.forward(&h); // (B, 2H, 2W, C_skip)
            let skip = skips[skips.len() - 2 - s].permute([0, 2, 3, 1]);
            let merged = stage
                .concat_back_dim
                .forward(&Tensor::cat(&[&up, &skip], -1));
            h = stage.stage.forward(&merged, train).permute([0, 3, 1, 2]);
            heads.push(stage.seg_layer.forward(&h));
        }
        let full = self.final_expand.forward(&h).permute([0, 3, 1, 2]);
        heads.push(self.final_seg_layer.forward(&full));
        heads.reverse();
        heads
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) {
        counter.section("vssm_encoder");
        self.vssm_encoder.flops(counter, batch, (h, w));
        counter.section("decoder");
        let n_up = self.stages.len() as i64;
        let bottom = self.patch_size << n_up;
        let mut hw = (h / bottom, w / bottom);
        for stage in &self.stages {
            hw = stage.expand.flops(counter, batch, hw);
            counter.add("linear", stage.concat_back_dim.flops(batch * hw.0 * hw.1));
            stage.stage.flops(counter, batch, hw);
            counter.add("conv", stage.seg_layer.flops(batch, hw));
        }
        let hw = self.final_expand.flops(counter, batch, hw);
        counter.add("conv", self.final_seg_layer.flops(batch, hw));
    }
}
