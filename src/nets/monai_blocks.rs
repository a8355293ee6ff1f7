//! MONAI 1.3.0's `UnetrBasicBlock`/`UnetResBlock`, `UnetrUpBlock` and `UnetOutBlock` as
//! the official Swin-UMamba decoder builds them (`res_block=True`, `norm_name="instance"`,
//! kernel 3, stride 1, up-sampling kernel 2). MONAI wraps each convolution in a
//! `Convolution` sequential, hence the `conv1.conv.weight` names.

use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{leaky_relu, Conv2d, ConvInit, ConvTranspose2d, InstanceNorm};

/// `UnetResBlock`: conv3×3 → IN → LeakyReLU → conv3×3 → IN, plus a residual that
/// passes conv1×1 → IN when the channel count changes, then LeakyReLU. Convolutions have
/// no bias and the instance norms no affine parameters (MONAI's defaults).
#[derive(Debug)]
pub struct UnetResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
    norm1: InstanceNorm,
    norm2: InstanceNorm,
    conv3: Option<(Conv2d, InstanceNorm)>,
}

impl UnetResBlock {
    pub fn new(path: nn::Path, in_channels: i64, out_channels: i64) -> Self {
        let conv = |name: &str, cin: i64, kernel: i64| {
            Conv2d::new(
                &path / name / "conv",
                cin,
                out_channels,
                kernel,
                1,
                kernel / 2,
                1,
                false,
                ConvInit::TorchDefault,
            )
        };
        let conv3 = (in_channels != out_channels).then(|| {
            (
                conv("conv3", in_channels, 1),
                InstanceNorm::new(&path / "norm3", out_channels, false),
            )
        });
        Self {
            conv1: conv("conv1", in_channels, 3),
            conv2: conv("conv2", out_channels, 3),
            norm1: InstanceNorm::new(&path / "norm1", out_channels, false),
            norm2: InstanceNorm::new(&path / "norm2", out_channels, false),
            conv3,
        }
    }

    /// # Shapes
    /// `x`: (B, C_in, H, W) → (B, C_out, H, W).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = leaky_relu(&self.norm1.forward(&self.conv1.forward(x)));
        let y = self.norm2.forward(&self.conv2.forward(&y));
        let residual = match &self.conv3 {
            Some((conv, norm)) => norm.forward(&conv.forward(x)),
            None => x.shallow_clone(),
        };
        leaky_relu(&(y + residual))
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        counter.add(
            "conv",
            self.conv1.flops(batch, hw) + self.conv2.flops(batch, hw),
        );
        counter.add(
            "instance_norm",
            self.norm1.flops(batch, hw) + self.norm2.flops(batch, hw),
        );
        if let Some((conv, norm)) = &self.conv3 {
            counter.add("conv", conv.flops(batch, hw));
            counter.add("instance_norm", norm.flops(batch, hw));
        }
    }
}

/// `UnetrUpBlock`: a bias-free 2×2 stride-2 transposed convolution, concatenation with
/// the skip (up-sampled features first), then a [`UnetResBlock`] from 2·C_out to C_out.
#[derive(Debug)]
pub struct UnetrUpBlock {
    transp_conv: ConvTranspose2d,
    conv_block: UnetResBlock,
}

impl UnetrUpBlock {
    pub fn new(path: nn::Path, in_channels: i64, out_channels: i64) -> Self {
        Self {
            transp_conv: ConvTranspose2d::new(
                &path / "transp_conv" / "conv",
                in_channels,
                out_channels,
                2,
                false,
                ConvInit::TorchDefault,
            ),
            conv_block: UnetResBlock::new(&path / "conv_block", 2 * out_channels, out_channels),
        }
    }

    /// # Shapes
    /// `x`: (B, C_in, H, W), `skip`: (B, C_out, 2H, 2W) → (B, C_out, 2H, 2W).
    pub fn forward(&self, x: &Tensor, skip: &Tensor) -> Tensor {
        let up = self.transp_conv.forward(x);
        self.conv_block.forward(&Tensor::cat(&[&up, skip], 1))
    }

    /// Counts FLOPs for an input of (H, W).
    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) {
        counter.add("conv", self.transp_conv.flops(batch, (h, w)));
        self.conv_block.flops(counter, batch, (2 * h, 2 * w));
    }
}

/// `UnetOutBlock`: a 1×1 convolution with bias (`conv.conv.weight`).
#[derive(Debug)]
pub struct UnetOutBlock {
    conv: Conv2d,
}

impl UnetOutBlock {
    pub fn new(path: nn::Path, in_channels: i64, out_channels: i64) -> Self {
        let conv = Conv2d::new(
            &path / "conv" / "conv",
            in_channels,
            out_channels,
            1,
            1,
            0,
            1,
            true,
            ConvInit::TorchDefault,
        );
        Self { conv }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.conv.forward(x)
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        counter.add("conv", self.conv.flops(batch, hw));
    }
}
