//! Swin-UMamba (`SwinUMamba` in the official `SwinUMamba.py`), in its current form
//! (commit 2c1f72e) and in the form of the first arXiv version of the paper (2402.03302v1, code commit 6855410).
//!
//! A 7×7 stride-2 stem with instance norm feeds the VMamba encoder (patch 2), so the
//! encoder stages sit at 1/4 … 1/32. A MONAI residual-block decoder takes skips from the
//! raw input (`encoder1`), the stem output (`encoder2`) and the VSS stages, up-samples with
//! transposed convolutions, and returns heads at full, 1/2, 1/4 and 1/8 resolution.
//!
//! The two versions differ only at the bottom. Current: five feature sizes, `encoder5`
//! maps stage 2 to `feat_size[4]`, stage 3 is the hidden state, and `decoder6` up-samples
//! it. v1: four feature sizes, `encoder5` maps stage 2 to `hidden_size` and is the hidden
//! state itself; stage 3 is computed but unused and there is no `decoder6`.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{Conv2d, ConvInit, InstanceNorm};
use super::monai_blocks::{UnetOutBlock, UnetResBlock, UnetrUpBlock};
use super::ss2d::D_STATE;
use super::vss::{VssmEncoder, VssmEncoderConfig};
use super::NetsError;

/// Architecture of Swin-UMamba; the defaults are `get_swin_umamba_from_plans`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwinUMambaConfig {
    /// Decoder widths, highest resolution first: five entries for the current network,
    /// four for v1.
    pub feat_size: Vec<i64>,
    /// Width of the hidden state the decoder starts from.
    pub hidden_size: i64,
    /// VSS stage widths; the official class hard-codes `VSSMEncoder`'s defaults.
    pub dims: Vec<i64>,
    /// VSS blocks per stage.
    pub depths: Vec<i64>,
    /// SSM state size N.
    pub d_state: i64,
    /// Final stochastic-depth rate of the encoder (`VSSMEncoder` default 0.2).
    pub drop_path_rate: f64,
}

impl Default for SwinUMambaConfig {
    fn default() -> Self {
        Self {
            feat_size: vec![48, 96, 192, 384, 768],
            hidden_size: 768,
            dims: vec![96, 192, 384, 768],
            depths: vec![2, 2, 9, 2],
            d_state: D_STATE,
            drop_path_rate: 0.2,
        }
    }
}

impl SwinUMambaConfig {
    /// The first-version defaults (`feat_size=[48, 96, 192, 384]`).
    pub fn v1() -> Self {
        Self {
            feat_size: vec![48, 96, 192, 384],
            ..Self::default()
        }
    }

    /// Checks the widths chain together for the given version.
    pub fn validate(&self, v1: bool) -> Result<(), NetsError> {
        let invalid = |reason: String| Err(NetsError::InvalidConfig { reason });
        let feats = if v1 { 4 } else { 5 };
        if self.feat_size.len() != feats {
            return invalid(format!(
                "feat_size has {} entries ({:?}), expected {feats}",
                self.feat_size.len(),
                self.feat_size
            ));
        }
        if self.dims.len() != 4 || self.depths.len() != 4 {
            return invalid(format!(
                "dims {:?} and depths {:?} must have 4 entries each",
                self.dims, self.depths
            ));
        }
        for i in 0..3 {
            if self.dims[i] != self.feat_size[i + 1] {
                return invalid(format!(
                    "dims[{i}] = {} must equal feat_size[{}] = {} (the stage feeds encoder{})",
                    self.dims[i],
                    i + 1,
                    self.feat_size[i + 1],
                    i + 3
                ));
            }
        }
        if !v1 && (self.dims[3] != self.hidden_size || self.feat_size[4] != self.hidden_size) {
            return invalid(format!(
                "dims[3] = {}, hidden_size = {} and feat_size[4] = {} must be equal",
                self.dims[3], self.hidden_size, self.feat_size[4]
            ));
        }
        Ok(())
    }
}

/// The Swin-UMamba network, current or v1.
#[derive(Debug)]
pub struct SwinUMamba {
    stem_conv: Conv2d,
    stem_norm: InstanceNorm,
    vssm_encoder: VssmEncoder,
    encoders: Vec<UnetResBlock>,
    /// Up-blocks from the hidden state to the highest resolution (`decoder6`/`decoder5`
    /// … `decoder2`).
    up_blocks: Vec<UnetrUpBlock>,
    decoder1: UnetResBlock,
    out_layers: Vec<UnetOutBlock>,
    v1: bool,
}

impl SwinUMamba {
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        num_classes: i64,
        config: &SwinUMambaConfig,
        v1: bool,
    ) -> Result<Self, NetsError> {
        config.validate(v1)?;
        let feat = &config.feat_size;
        let stem_conv = Conv2d::new(
            &path / "stem" / 0,
            in_channels,
            feat[0],
            7,
            2,
            3,
            1,
            true,
            ConvInit::TorchDefault,
        );
        let stem_norm = InstanceNorm::new(&path / "stem" / 1, feat[0], true);
        let vssm_encoder = VssmEncoder::new(
            &path / "vssm_encoder",
            &VssmEncoderConfig {
                patch: 2,
                in_channels: feat[0],
                dims: config.dims.clone(),
                depths: config.depths.clone(),
                d_state: config.d_state,
                drop_path_rate: config.drop_path_rate,
            },
        );
        // encoder1..encoder5: in -> feat[0], feat[0] -> feat[1], ..., feat[3] -> feat[4]
        // (v1: feat[3] -> hidden_size).
        let mut widths = vec![in_channels];
        widths.extend_from_slice(&feat[..4]);
        widths.push(if v1 { config.hidden_size } else { feat[4] });
        let encoders = (0..5)
            .map(|i| {
                UnetResBlock::new(
                    &path / format!("encoder{}", i + 1) / "layer",
                    widths[i],
                    widths[i + 1],
                )
            })
            .collect();
        // Up-blocks from the bottom: current decoder6 (hidden -> feat[4]), decoder5
        // (hidden -> feat[3]), decoder4 .. decoder2; v1 starts at decoder5.
        let mut up_blocks = Vec::new();
        if !v1 {
            up_blocks.push(UnetrUpBlock::new(
                &path / "decoder6",
                config.hidden_size,
                feat[4],
            ));
        }
        up_blocks.push(UnetrUpBlock::new(
            &path / "decoder5",
            config.hidden_size,
            feat[3],
        ));
        for (name, i) in [("decoder4", 3), ("decoder3", 2), ("decoder2", 1)] {
            up_blocks.push(UnetrUpBlock::new(&path / name, feat[i], feat[i - 1]));
        }
        let decoder1 = UnetResBlock::new(&path / "decoder1" / "layer", feat[0], feat[0]);
        let out_layers = (0..4)
            .map(|i| UnetOutBlock::new(&path / "out_layers" / i, feat[i as usize], num_classes))
            .collect();
        Ok(Self {
            stem_conv,
            stem_norm,
            vssm_encoder,
            encoders,
            up_blocks,
            decoder1,
            out_layers,
            v1,
        })
    }

    /// Returns the four heads, full resolution first, as the official forward does with
    /// deep supervision on.
    ///
    /// # Shapes
    /// `x`: (B, C, H, W) with H and W divisible by 32 → (B, K, H/2^i, W/2^i), i = 0..3.
    pub fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let stem = self.stem_norm.forward(&self.stem_conv.forward(x));
        let vss = self.vssm_encoder.forward(&stem, train); // [stem, s0, s1, s2, s3]
                                                           // Skips from the highest resolution: input, stem, stage 0, stage 1, stage 2.
        let inputs = [x, &vss[0], &vss[1], &vss[2], &vss[3]];
        let skips: Vec<Tensor> = self
            .encoders
            .iter()
            .zip(inputs)
            .map(|(block, t)| block.forward(t))
            .collect();
        let (mut h, skip_order): (Tensor, Vec<usize>) = if self.v1 {
            (skips[4].shallow_clone(), vec![3, 2, 1, 0])
        } else {
            (vss[4].shallow_clone(), vec![4, 3, 2, 1, 0])
        };
        let mut decoded = Vec::new(); // lowest resolution first
        for (block, &s) in self.up_blocks.iter().zip(&skip_order) {
            h = block.forward(&h, &skips[s]);
            decoded.push(h.shallow_clone());
        }
        let n = decoded.len();
        let dec_out = self.decoder1.forward(&decoded[n - 1]);
        // Heads from dec_out (full), dec1 (1/2), dec2 (1/4), dec3 (1/8).
        let features = [&dec_out, &decoded[n - 2], &decoded[n - 3], &decoded[n - 4]];
        self.out_layers
            .iter()
            .zip(features)
            .map(|(head, f)| head.forward(f))
            .collect()
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) {
        counter.section("stem");
        counter.add("conv", self.stem_conv.flops(batch, (h, w)));
        let half = (h / 2, w / 2);
        counter.add("instance_norm", self.stem_norm.flops(batch, half));
        counter.section("vssm_encoder");
        self.vssm_encoder.flops(counter, batch, half);
        let resolution = |level: i64| (h >> level, w >> level);
        for (i, block) in self.encoders.iter().enumerate() {
            counter.section(&format!("encoder{}", i + 1));
            block.flops(counter, batch, resolution(i as i64));
        }
        let first = if self.v1 { 5 } else { 6 };
        let bottom_level = if self.v1 { 4 } else { 5 };
        for (j, block) in self.up_blocks.iter().enumerate() {
            counter.section(&format!("decoder{}", first - j));
            block.flops(counter, batch, resolution(bottom_level - j as i64));
        }
        counter.section("decoder1");
        self.decoder1.flops(counter, batch, (h, w));
        counter.section("out_layers");
        for (i, head) in self.out_layers.iter().enumerate() {
            head.flops(counter, batch, resolution(i as i64));
        }
    }
}
