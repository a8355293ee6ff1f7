//! Layers built on `tch::nn::Path` with PyTorch's parameter names and default
//! initialisations, plus the shape arithmetic the FLOP walk needs.

use tch::nn::{self, Init, Module};
use tch::Tensor;

/// PyTorch's default `nn.Linear`/`nn.Conv2d` initialisation: `kaiming_uniform_(a=sqrt(5))`
/// for the weight and a bias of the same bound, which both reduce to U(±1/sqrt(fan_in)).
pub fn torch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// `trunc_normal_(std=0.02)` as timm applies it to VSS linear layers. timm truncates at
/// ±2 in absolute value, which is 100 standard deviations here, so a plain normal is the
/// same distribution in practice.
pub const TRUNC_NORMAL_002: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// Default `nn.LayerNorm` epsilon (PyTorch); every LayerNorm of the official networks
/// uses it because the encoder passes `norm_layer=nn.LayerNorm` down to its blocks.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Default `nn.InstanceNorm2d` epsilon (PyTorch and MONAI's "instance" norm).
pub const INSTANCE_NORM_EPS: f64 = 1e-5;

/// Negative slope of the LeakyReLU in MONAI's blocks and nnU-Net's defaults.
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

/// `nn.Linear` with the weight stored as (out, in).
#[derive(Debug)]
pub struct Linear {
    inner: nn::Linear,
    pub in_features: i64,
    pub out_features: i64,
}

impl Linear {
    /// Builds a linear layer; `weight_init` of `None` means PyTorch's default.
    pub fn new(path: nn::Path, in_features: i64, out_features: i64, bias: bool) -> Self {
        Self::with_init(path, in_features, out_features, bias, None)
    }

    /// Builds a linear layer with an explicit weight initialisation and zero bias, as
    /// VMamba's `_init_weights` does (`trunc_normal_` weight, `constant_(bias, 0)`).
    pub fn with_init(
        path: nn::Path,
        in_features: i64,
        out_features: i64,
        bias: bool,
        weight_init: Option<Init>,
    ) -> Self {
        let default = torch_default_init(in_features);
        let config = nn::LinearConfig {
            ws_init: weight_init.unwrap_or(default),
            bs_init: Some(if weight_init.is_some() {
                Init::Const(0.0)
            } else {
                default
            }),
            bias,
        };
        Self {
            inner: nn::linear(path, in_features, out_features, config),
            in_features,
            out_features,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.inner.forward(x)
    }

    pub fn weight(&self) -> &Tensor {
        &self.inner.ws
    }

    /// Returns the bias; panics for a layer built without one (a programming error).
    pub fn bias(&self) -> &Tensor {
        self.inner.bs.as_ref().expect("Linear built with a bias")
    }

    /// Multiply-adds for `tokens` input rows.
    pub fn flops(&self, tokens: i64) -> f64 {
        (tokens * self.in_features * self.out_features) as f64
    }
}

/// `nn.Conv2d` with square kernels.
#[derive(Debug)]
pub struct Conv2d {
    inner: nn::Conv2D,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
}

/// Weight initialisation of a convolution.
#[derive(Debug, Clone, Copy)]
pub enum ConvInit {
    /// PyTorch's default (U(±1/sqrt(fan_in)) for weight and bias).
    TorchDefault,
    /// nnU-Net's `InitWeights_He(1e-2)`: `kaiming_normal_(a=0.01)` weight, zero bias.
    HeNormal,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        groups: i64,
        bias: bool,
        init: ConvInit,
    ) -> Self {
        let fan_in = in_channels / groups * kernel * kernel;
        let (ws_init, bs_init) = match init {
            ConvInit::TorchDefault => (torch_default_init(fan_in), torch_default_init(fan_in)),
            ConvInit::HeNormal => (he_normal(fan_in), Init::Const(0.0)),
        };
        let config = nn::ConvConfig {
            stride,
            padding,
            groups,
            bias,
            ws_init,
            bs_init,
            ..Default::default()
        };
        let inner = nn::conv2d(path, in_channels, out_channels, kernel, config);
        Self {
            inner,
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            groups,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.inner.forward(x)
    }

    /// Output (H, W) for an input of (H, W).
    pub fn out_hw(&self, (h, w): (i64, i64)) -> (i64, i64) {
        let out = |n: i64| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (out(h), out(w))
    }

    /// Multiply-adds at batch `batch` for an input of (H, W), fvcore's convention
    /// (output elements × in_channels/groups × kernel area; the bias is not counted).
    pub fn flops(&self, batch: i64, hw: (i64, i64)) -> f64 {
        let (oh, ow) = self.out_hw(hw);
        let per_output = self.in_channels / self.groups * self.kernel * self.kernel;
        (batch * oh * ow * self.out_channels * per_output) as f64
    }
}

/// `kaiming_normal_(a=0.01)` with fan-in, as nnU-Net's `InitWeights_He(1e-2)`.
fn he_normal(fan_in: i64) -> Init {
    let gain = (2.0 / (1.0 + LEAKY_RELU_SLOPE * LEAKY_RELU_SLOPE)).sqrt();
    Init::Randn {
        mean: 0.0,
        stdev: gain / (fan_in as f64).sqrt(),
    }
}

/// `nn.ConvTranspose2d` with kernel = stride and no padding (the up-sampling of the
/// official decoders).
#[derive(Debug)]
pub struct ConvTranspose2d {
    inner: nn::ConvTranspose2D,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
}

impl ConvTranspose2d {
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        bias: bool,
        init: ConvInit,
    ) -> Self {
        // PyTorch computes the fan-in of a transposed convolution from weight dim 1 (out).
        let fan_in = out_channels * kernel * kernel;
        let (ws_init, bs_init) = match init {
            ConvInit::TorchDefault => (torch_default_init(fan_in), torch_default_init(fan_in)),
            ConvInit::HeNormal => (he_normal(fan_in), Init::Const(0.0)),
        };
        let config = nn::ConvTransposeConfig {
            stride: kernel,
            bias,
            ws_init,
            bs_init,
            ..Default::default()
        };
        let inner = nn::conv_transpose2d(path, in_channels, out_channels, kernel, config);
        Self {
            inner,
            in_channels,
            out_channels,
            kernel,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.inner.forward(x)
    }

    /// Multiply-adds for an input of (H, W): fvcore counts a transposed convolution over
    /// the input positions, in × out × kernel area per position.
    pub fn flops(&self, batch: i64, (h, w): (i64, i64)) -> f64 {
        (batch * h * w * self.in_channels * self.out_channels * self.kernel * self.kernel) as f64
    }
}

/// `nn.LayerNorm` over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    inner: nn::LayerNorm,
    pub dim: i64,
}

impl LayerNorm {
    pub fn new(path: nn::Path, dim: i64) -> Self {
        let config = nn::LayerNormConfig {
            eps: LAYER_NORM_EPS,
            ..Default::default()
        };
        Self {
            inner: nn::layer_norm(path, vec![dim], config),
            dim,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.inner.forward(x)
    }

    /// fvcore counts 5 FLOPs per element for an affine norm.
    pub fn flops(&self, tokens: i64) -> f64 {
        (5 * tokens * self.dim) as f64
    }
}

/// `nn.InstanceNorm2d(track_running_stats=False)`, affine (`weight`, `bias`) or not.
/// It has no buffers, like the PyTorch module with those arguments.
#[derive(Debug)]
pub struct InstanceNorm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    pub channels: i64,
}

impl InstanceNorm {
    pub fn new(path: nn::Path, channels: i64, affine: bool) -> Self {
        let (weight, bias) = if affine {
            (
                Some(path.var("weight", &[channels], Init::Const(1.0))),
                Some(path.var("bias", &[channels], Init::Const(0.0))),
            )
        } else {
            (None, None)
        };
        Self {
            weight,
            bias,
            channels,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.instance_norm(
            self.weight.as_ref(),
            self.bias.as_ref(),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            INSTANCE_NORM_EPS,
            false,
        )
    }

    /// fvcore counts 5 FLOPs per element with an affine transform and 4 without.
    pub fn flops(&self, batch: i64, (h, w): (i64, i64)) -> f64 {
        let per_element = if self.weight.is_some() { 5 } else { 4 };
        (per_element * batch * self.channels * h * w) as f64
    }
}

/// timm's `DropPath` (stochastic depth): in training, zeroes whole samples with
/// probability `rate` and scales the kept ones by 1/(1 - rate); identity in evaluation.
pub fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if !train || rate == 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut mask_shape = vec![1i64; x.dim()];
    mask_shape[0] = x.size()[0];
    let mask = Tensor::empty(mask_shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    x * mask / keep
}

/// `nn.LeakyReLU(0.01)`.
pub fn leaky_relu(x: &Tensor) -> Tensor {
    // ATen's `leaky_relu` without a slope argument uses 0.01.
    x.leaky_relu()
}
