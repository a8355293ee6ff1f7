//! nnU-Net's `PlainConvUNet` (dynamic-network-architectures 0.4.4) for 2D plans: stages
//! of conv → instance norm → LeakyReLU blocks (the first conv of a stage strided), a
//! decoder of transposed convolutions and conv blocks, and a 1×1 head per decoder stage.
//!
//! PyTorch's state dict lists every conv block twice (`conv.*` and `all_modules.0.*`,
//! `norm.*` and `all_modules.1.*`) and the encoder twice (`encoder.*` and
//! `decoder.encoder.*`), because the same modules are registered under both names. The
//! VarStore contains each parameter once, under the first name; [`official_aliases`] gives
//! the other names, and loading accepts either.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{leaky_relu, Conv2d, ConvInit, ConvTranspose2d, InstanceNorm};
use super::NetsError;

/// The architecture block of an nnU-Net 2D plan. Defaults: the 320×320 AbdomenMRI plan
/// (7 stages, features min(32·2^i, 512), 3×3 kernels, strides [1, 1] then [2, 2]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlainUNetConfig {
    pub features_per_stage: Vec<i64>,
    /// Square kernel size per stage (nnU-Net's `conv_kernel_sizes`, both axes equal).
    pub kernel_sizes: Vec<i64>,
    /// Stride per stage (`pool_op_kernel_sizes`, both axes equal).
    pub strides: Vec<i64>,
    pub n_conv_per_stage: Vec<i64>,
    pub n_conv_per_stage_decoder: Vec<i64>,
    pub conv_bias: bool,
}

impl Default for PlainUNetConfig {
    fn default() -> Self {
        let stages = 7;
        Self {
            features_per_stage: (0..stages).map(|i| (32i64 << i).min(512)).collect(),
            kernel_sizes: vec![3; stages],
            strides: std::iter::once(1)
                .chain(std::iter::repeat_n(2, stages - 1))
                .collect(),
            n_conv_per_stage: vec![2; stages],
            n_conv_per_stage_decoder: vec![2; stages - 1],
            conv_bias: true,
        }
    }
}

impl PlainUNetConfig {
    fn validate(&self) -> Result<(), NetsError> {
        let n = self.features_per_stage.len();
        let lengths_ok = n >= 2
            && self.kernel_sizes.len() == n
            && self.strides.len() == n
            && self.n_conv_per_stage.len() == n
            && self.n_conv_per_stage_decoder.len() == n - 1;
        if !lengths_ok {
            return Err(NetsError::InvalidConfig {
                reason: format!(
                    "features_per_stage ({n} stages), kernel_sizes, strides and \
                     n_conv_per_stage need one entry per stage and n_conv_per_stage_decoder \
                     one fewer; got {:?}",
                    self
                ),
            });
        }
        Ok(())
    }
}

/// `ConvDropoutNormReLU` without dropout: conv (`conv`), instance norm (`norm`), LeakyReLU.
#[derive(Debug)]
struct ConvNormAct {
    conv: Conv2d,
    norm: InstanceNorm,
}

impl ConvNormAct {
    fn forward(&self, x: &Tensor) -> Tensor {
        leaky_relu(&self.norm.forward(&self.conv.forward(x)))
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) -> (i64, i64) {
        counter.add("conv", self.conv.flops(batch, hw));
        let out = self.conv.out_hw(hw);
        counter.add("instance_norm", self.norm.flops(batch, out));
        out
    }
}

/// `StackedConvBlocks` (`convs.{j}`), the first block carrying the stage's stride.
fn stacked_convs(
    path: nn::Path,
    in_channels: i64,
    out_channels: i64,
    kernel: i64,
    stride: i64,
    count: i64,
    bias: bool,
) -> Vec<ConvNormAct> {
    (0..count)
        .map(|j| {
            let p = &path / "convs" / j;
            let cin = if j == 0 { in_channels } else { out_channels };
            let s = if j == 0 { stride } else { 1 };
            ConvNormAct {
                conv: Conv2d::new(
                    &p / "conv",
                    cin,
                    out_channels,
                    kernel,
                    s,
                    (kernel - 1) / 2,
                    1,
                    bias,
                    ConvInit::HeNormal,
                ),
                norm: InstanceNorm::new(&p / "norm", out_channels, true),
            }
        })
        .collect()
}

fn run(blocks: &[ConvNormAct], x: &Tensor) -> Tensor {
    blocks
        .iter()
        .fold(x.shallow_clone(), |x, block| block.forward(&x))
}

/// The `PlainConvUNet` network with deep supervision.
#[derive(Debug)]
pub struct PlainConvUNet {
    encoder: Vec<Vec<ConvNormAct>>,
    transpconvs: Vec<ConvTranspose2d>,
    decoder: Vec<Vec<ConvNormAct>>,
    seg_layers: Vec<Conv2d>,
    strides: Vec<i64>,
}

impl PlainConvUNet {
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        num_classes: i64,
        config: &PlainUNetConfig,
    ) -> Result<Self, NetsError> {
        config.validate()?;
        let features = &config.features_per_stage;
        let n = features.len();
        let mut encoder = Vec::new();
        let mut cin = in_channels;
        for (s, &width) in features.iter().enumerate() {
            encoder.push(stacked_convs(
                &path / "encoder" / "stages" / s / 0,
                cin,
                width,
                config.kernel_sizes[s],
                config.strides[s],
                config.n_conv_per_stage[s],
                config.conv_bias,
            ));
            cin = width;
        }
        let decoder_path = &path / "decoder";
        let (mut transpconvs, mut decoder, mut seg_layers) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..n - 1 {
            let below = features[n - 1 - s];
            let skip = features[n - 2 - s];
            let stride = config.strides[n - 1 - s];
            transpconvs.push(ConvTranspose2d::new(
                &decoder_path / "transpconvs" / s,
                below,
                skip,
                stride,
                config.conv_bias,
                ConvInit::HeNormal,
            ));
            decoder.push(stacked_convs(
                &decoder_path / "stages" / s,
                2 * skip,
                skip,
                config.kernel_sizes[n - 2 - s],
                1,
                config.n_conv_per_stage_decoder[s],
                config.conv_bias,
            ));
            seg_layers.push(Conv2d::new(
                &decoder_path / "seg_layers" / s,
                skip,
                num_classes,
                1,
                1,
                0,
                1,
                true,
                ConvInit::HeNormal,
            ));
        }
        Ok(Self {
            encoder,
            transpconvs,
            decoder,
            seg_layers,
            strides: config.strides.clone(),
        })
    }

    /// Product of the strides: height and width must be multiples of it.
    pub fn divisor(&self) -> i64 {
        self.strides.iter().product()
    }

    /// Returns the heads of every decoder stage, full resolution first.
    pub fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        let mut skips = Vec::new();
        let mut h = x.shallow_clone();
        for stage in &self.encoder {
            h = run(stage, &h);
            skips.push(h.shallow_clone());
        }
        let mut heads = Vec::new();
        for (s, ((up, stage), seg)) in self
            .transpconvs
            .iter()
            .zip(&self.decoder)
            .zip(&self.seg_layers)
            .enumerate()
        {
            let skip = &skips[skips.len() - 2 - s];
            h = run(stage, &Tensor::cat(&[&up.forward(&h), skip], 1));
            heads.push(seg.forward(&h));
        }
        heads.reverse();
        heads
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        counter.section("encoder");
        let mut sizes = Vec::new();
        let mut hw = hw;
        for stage in &self.encoder {
            for block in stage {
                hw = block.flops(counter, batch, hw);
            }
            sizes.push(hw);
        }
        counter.section("decoder");
        for (s, ((up, stage), seg)) in self
            .transpconvs
            .iter()
            .zip(&self.decoder)
            .zip(&self.seg_layers)
            .enumerate()
        {
            counter.add("conv", up.flops(batch, hw));
            hw = sizes[sizes.len() - 2 - s];
            for block in stage {
                block.flops(counter, batch, hw);
            }
            counter.add("conv", seg.flops(batch, hw));
        }
    }
}

/// Index of the `conv`/`norm` component of a `ConvDropoutNormReLU` parameter name
/// (`...convs.{j}.conv.weight` in `StackedConvBlocks`, `...conv1.norm.bias` in
/// `BasicBlockD`), whose module PyTorch also registers as `all_modules.0`/`all_modules.1`.
fn conv_norm_relu_component(parts: &[&str]) -> Option<usize> {
    let n = parts.len();
    if n < 3 || !matches!(parts[n - 2], "conv" | "norm") {
        return None;
    }
    let parent = parts[n - 3];
    let in_stack = n >= 4 && parts[n - 4] == "convs";
    (in_stack || parent == "conv1" || parent == "conv2").then_some(n - 2)
}

/// Other official state-dict names of the parameter `name` in nnU-Net-style networks
/// (`PlainConvUNet`, U-Mamba): the `all_modules` alias of conv blocks and the
/// `decoder.encoder.` copy of the encoder.
pub fn official_aliases(name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    let mut parts: Vec<&str> = name.split('.').collect();
    if let Some(i) = conv_norm_relu_component(&parts) {
        parts[i] = if parts[i] == "conv" {
            "all_modules.0"
        } else {
            "all_modules.1"
        };
        names.push(parts.join("."));
    }
    let encoder_copies: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("encoder."))
        .map(|n| format!("decoder.{n}"))
        .collect();
    names.extend(encoder_copies);
    names.remove(0);
    names
}

/// Maps an official state-dict name to the VarStore name (the inverse of
/// [`official_aliases`]).
pub fn canonical_name(name: &str) -> String {
    let name = name
        .strip_prefix("decoder.encoder.")
        .map_or(name.to_string(), |rest| format!("encoder.{rest}"));
    let parts: Vec<&str> = name.split('.').collect();
    let n = parts.len();
    if n >= 4 && parts[n - 3] == "all_modules" {
        let component = match parts[n - 2] {
            "0" => "conv",
            "1" => "norm",
            _ => return name,
        };
        let mut joined: Vec<&str> = parts[..n - 3].to_vec();
        joined.push(component);
        joined.push(parts[n - 1]);
        return joined.join(".");
    }
    name
}
