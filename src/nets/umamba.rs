//! U-Mamba_Bot and U-Mamba_Enc, 2D (`UMambaBot_2d.py`, `UMambaEnc_2d.py` of the official
//! U-Mamba repository, commit 28459e3), built from an nnU-Net plan's architecture block.
//!
//! Both use a residual conv encoder: each stage starts with a `BasicResBlock` with a 1×1
//! projection, then dynamic-network-architectures' `BasicBlockD`s. The decoder up-samples
//! (nearest, then a 1×1 conv), concatenates the skip and runs residual blocks; its last
//! stage takes no skip. U-Mamba_Bot replaces the bottleneck features by a
//! Mamba layer over the flattened pixels (`mamba_layer`). U-Mamba_Enc adds a Mamba layer
//! after every other encoder stage, always including the last (`encoder.mamba_layers`);
//! where a stage has no more pixels than channels, that layer runs over channel tokens
//! with d_model = H·W, so the network only takes the input size it was built for.
//!
//! Both builders force one block in the deeper half of the stages: encoder stages from
//! ceil(n/2) on and decoder stages from ceil((n-1)/2 + 0.5) on get a single block.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::flops::FlopCounter;
use super::layers::{
    leaky_relu, torch_default_init, Conv2d, ConvInit, InstanceNorm, LayerNorm, Linear,
};
use super::plain_unet::PlainUNetConfig;
use super::ss2d::D_STATE;
use super::NetsError;
use crate::scan::{selective_scan, ScanOptions};

/// The plan's architecture block, as for `PlainConvUNet` (`n_conv_per_stage` is the
/// number of residual blocks per stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UMambaConfig {
    #[serde(flatten)]
    pub plan: PlainUNetConfig,
}

/// Mamba's causal convolution width (`d_conv=4`) and expansion (`expand=2`) as U-Mamba's
/// `MambaLayer` passes them.
const MAMBA_D_CONV: i64 = 4;
const MAMBA_EXPAND: i64 = 2;
/// dt initialisation range and floor of `mamba_simple.Mamba`.
const DT_MIN: f64 = 1e-3;
const DT_MAX: f64 = 1e-1;
const DT_INIT_FLOOR: f64 = 1e-4;

/// `mamba_ssm.modules.mamba_simple.Mamba`, non-fused path (no `causal_conv1d`).
#[derive(Debug)]
struct Mamba {
    in_proj: Linear,
    conv1d: nn::Conv1D,
    x_proj: Linear,
    dt_proj: Linear,
    a_log: Tensor,
    d: Tensor,
    out_proj: Linear,
    d_inner: i64,
    dt_rank: i64,
}

impl Mamba {
    fn new(path: nn::Path, d_model: i64) -> Self {
        let d_inner = MAMBA_EXPAND * d_model;
        let dt_rank = (d_model + 15) / 16;
        let conv_config = nn::ConvConfig {
            padding: MAMBA_D_CONV - 1,
            groups: d_inner,
            ws_init: torch_default_init(MAMBA_D_CONV),
            bs_init: torch_default_init(MAMBA_D_CONV),
            ..Default::default()
        };
        let conv1d = nn::conv1d(
            &path / "conv1d",
            d_inner,
            d_inner,
            MAMBA_D_CONV,
            conv_config,
        );
        let dt_std = (dt_rank as f64).powf(-0.5);
        let dt_proj = Linear::with_init(
            &path / "dt_proj",
            dt_rank,
            d_inner,
            true,
            Some(Init::Uniform {
                lo: -dt_std,
                up: dt_std,
            }),
        );
        let a_log = path.var("A_log", &[d_inner, D_STATE], Init::Const(0.0));
        let d = path.var("D", &[d_inner], Init::Const(1.0));
        tch::no_grad(|| {
            let (lo, hi) = (DT_MIN.ln(), DT_MAX.ln());
            let dt = (Tensor::rand([d_inner], (Kind::Float, path.device())) * (hi - lo) + lo)
                .exp()
                .clamp_min(DT_INIT_FLOOR);
            let inv_dt = &dt + (-(-&dt).expm1()).log();
            dt_proj.bias().shallow_clone().copy_(&inv_dt);
            let a = Tensor::arange_start(1, D_STATE + 1, (Kind::Float, path.device()))
                .log()
                .unsqueeze(0)
                .expand([d_inner, D_STATE], false);
            a_log.shallow_clone().copy_(&a);
        });
        Self {
            in_proj: Linear::new(&path / "in_proj", d_model, 2 * d_inner, false),
            conv1d,
            x_proj: Linear::new(&path / "x_proj", d_inner, dt_rank + 2 * D_STATE, false),
            dt_proj,
            a_log,
            d,
            out_proj: Linear::new(&path / "out_proj", d_inner, d_model, false),
            d_inner,
            dt_rank,
        }
    }

    /// # Shapes
    /// `x`: (B, L, D_model) → (B, L, D_model).
    fn forward(&self, x: &Tensor) -> Tensor {
        let length = x.size()[1];
        let xz = self.in_proj.forward(x).transpose(1, 2); // (B, 2·D, L)
        let parts = xz.chunk(2, 1);
        let (u, z) = (&parts[0], &parts[1]);
        let u = self.conv1d.forward(u).narrow(2, 0, length).silu(); // (B, D, L)
        let x_dbl = self.x_proj.forward(&u.transpose(1, 2)); // (B, L, R + 2N)
        let parts = x_dbl.split_with_sizes([self.dt_rank, D_STATE, D_STATE], 2);
        let delta = parts[0].matmul(&self.dt_proj.weight().tr()).transpose(1, 2); // (B, D, L)
        let b = parts[1].transpose(1, 2).contiguous(); // (B, N, L)
        let c = parts[2].transpose(1, 2).contiguous(); // (B, N, L)
        let a = -self.a_log.exp();
        let z = z.contiguous();
        let options = ScanOptions {
            d: Some(&self.d),
            z: Some(&z),
            delta_bias: Some(self.dt_proj.bias()),
            delta_softplus: true,
            return_last_state: false,
        };
        let y = selective_scan(&u.contiguous(), &delta.contiguous(), &a, &b, &c, &options)
            .expect("Mamba builds the scan inputs with consistent shapes")
            .y;
        self.out_proj.forward(&y.transpose(1, 2))
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, length: i64) {
        let tokens = batch * length;
        counter.add(
            "linear",
            self.in_proj.flops(tokens) + self.x_proj.flops(tokens),
        );
        counter.add("conv", (tokens * self.d_inner * MAMBA_D_CONV) as f64);
        counter.add(
            "linear",
            self.dt_proj.flops(tokens) + self.out_proj.flops(tokens),
        );
        counter.add(
            "selective_scan",
            (9 * tokens * self.d_inner * D_STATE) as f64,
        );
    }
}

/// U-Mamba's `MambaLayer`: LayerNorm then Mamba over tokens, with no residual.
#[derive(Debug)]
struct MambaLayer {
    norm: LayerNorm,
    mamba: Mamba,
    channel_tokens: bool,
}

impl MambaLayer {
    fn new(path: nn::Path, dim: i64, channel_tokens: bool) -> Self {
        Self {
            norm: LayerNorm::new(&path / "norm", dim),
            mamba: Mamba::new(&path / "mamba", dim),
            channel_tokens,
        }
    }

    /// # Shapes
    /// `x`: (B, C, H, W) → (B, C, H, W). Pixel tokens: L = H·W, d_model = C. Channel
    /// tokens: L = C, d_model = H·W.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (batch, channels, height, width) = x.size4().expect("(B, C, H, W)");
        let tokens = if self.channel_tokens {
            x.flatten(2, -1) // (B, C, H·W)
        } else {
            x.reshape([batch, channels, height * width]).transpose(1, 2) // (B, H·W, C)
        };
        let y = self.mamba.forward(&self.norm.forward(&tokens));
        if self.channel_tokens {
            y.reshape([batch, channels, height, width])
        } else {
            y.transpose(1, 2).reshape([batch, channels, height, width])
        }
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, (c, h, w): (i64, i64, i64)) {
        let length = if self.channel_tokens { c } else { h * w };
        counter.add("layer_norm", (5 * batch * c * h * w) as f64);
        self.mamba.flops(counter, batch, length);
    }
}

fn conv(path: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, bias: bool) -> Conv2d {
    Conv2d::new(
        path,
        cin,
        cout,
        kernel,
        stride,
        kernel / 2,
        1,
        bias,
        ConvInit::HeNormal,
    )
}

/// U-Mamba's `BasicResBlock` with `use_1x1conv=True` (every use in the networks):
/// conv → IN → LeakyReLU → conv → IN, plus a strided 1×1 conv on the residual, then
/// LeakyReLU. Its convolutions always have a bias (`nn.Conv2d`'s default).
#[derive(Debug)]
struct BasicResBlock {
    conv1: Conv2d,
    norm1: InstanceNorm,
    conv2: Conv2d,
    norm2: InstanceNorm,
    conv3: Conv2d,
}

impl BasicResBlock {
    fn new(path: &nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64) -> Self {
        Self {
            conv1: conv(path / "conv1", cin, cout, kernel, stride, true),
            norm1: InstanceNorm::new(path / "norm1", cout, true),
            conv2: conv(path / "conv2", cout, cout, kernel, 1, true),
            norm2: InstanceNorm::new(path / "norm2", cout, true),
            conv3: conv(path / "conv3", cin, cout, 1, stride, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = leaky_relu(&self.norm1.forward(&self.conv1.forward(x)));
        let y = self.norm2.forward(&self.conv2.forward(&y));
        leaky_relu(&(y + self.conv3.forward(x)))
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) -> (i64, i64) {
        let out = self.conv1.out_hw(hw);
        counter.add(
            "conv",
            self.conv1.flops(batch, hw) + self.conv3.flops(batch, hw),
        );
        counter.add("conv", self.conv2.flops(batch, out));
        counter.add(
            "instance_norm",
            self.norm1.flops(batch, out) + self.norm2.flops(batch, out),
        );
        out
    }
}

/// `BasicBlockD` with stride 1 and equal channels (its only use here): conv → IN →
/// LeakyReLU (`conv1`), conv → IN (`conv2`), identity residual, LeakyReLU.
#[derive(Debug)]
struct BasicBlockD {
    convs: [(Conv2d, InstanceNorm); 2],
}

impl BasicBlockD {
    fn new(path: &nn::Path, channels: i64, kernel: i64, bias: bool) -> Self {
        let unit = |name: &str| {
            (
                conv(path / name / "conv", channels, channels, kernel, 1, bias),
                InstanceNorm::new(path / name / "norm", channels, true),
            )
        };
        Self {
            convs: [unit("conv1"), unit("conv2")],
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let [(c1, n1), (c2, n2)] = &self.convs;
        let y = leaky_relu(&n1.forward(&c1.forward(x)));
        leaky_relu(&(n2.forward(&c2.forward(&y)) + x))
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        for (c, n) in &self.convs {
            counter.add("conv", c.flops(batch, hw));
            counter.add("instance_norm", n.flops(batch, hw));
        }
    }
}

/// A `BasicResBlock` followed by `BasicBlockD`s (`{path}.0`, `{path}.1`, ...).
#[derive(Debug)]
struct ResStage {
    first: BasicResBlock,
    rest: Vec<BasicBlockD>,
}

impl ResStage {
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: nn::Path,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
        blocks: i64,
        bias: bool,
    ) -> Self {
        let first = BasicResBlock::new(&(&path / 0), cin, cout, kernel, stride);
        let rest = (1..blocks)
            .map(|j| BasicBlockD::new(&(&path / j), cout, kernel, bias))
            .collect();
        Self { first, rest }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.rest
            .iter()
            .fold(self.first.forward(x), |x, block| block.forward(&x))
    }

    fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) -> (i64, i64) {
        let out = self.first.flops(counter, batch, hw);
        for block in &self.rest {
            block.flops(counter, batch, out);
        }
        out
    }
}

/// Applies the builders' rule of one block in the deeper half of the network: encoder
/// stages from ceil(n/2) on and decoder stages from ceil((n-1)/2 + 0.5) on.
fn forced_block_counts(plan: &PlainUNetConfig) -> (Vec<i64>, Vec<i64>) {
    let n = plan.features_per_stage.len();
    let mut blocks = plan.n_conv_per_stage.clone();
    for b in blocks.iter_mut().skip(n.div_ceil(2)) {
        *b = 1;
    }
    let mut decoder_blocks = plan.n_conv_per_stage_decoder.clone();
    let first_single = ((n - 1) as f64 / 2.0 + 0.5).ceil() as usize;
    for b in decoder_blocks.iter_mut().skip(first_single) {
        *b = 1;
    }
    (blocks, decoder_blocks)
}

/// Builds the stem (`stem.*`) and the encoder stages (`stages.{s}.*`).
fn build_encoder(
    encoder: &nn::Path,
    in_channels: i64,
    plan: &PlainUNetConfig,
    blocks: &[i64],
) -> (ResStage, Vec<ResStage>) {
    let features = &plan.features_per_stage;
    let kernels = &plan.kernel_sizes;
    let bias = plan.conv_bias;
    let stem = ResStage::new(
        encoder / "stem",
        in_channels,
        features[0],
        kernels[0],
        1,
        blocks[0],
        bias,
    );
    let mut stages = Vec::new();
    let mut cin = features[0];
    for s in 0..features.len() {
        let stride = plan.strides[s];
        let path = encoder / "stages" / s;
        stages.push(ResStage::new(
            path,
            cin,
            features[s],
            kernels[s],
            stride,
            blocks[s],
            bias,
        ));
        cin = features[s];
    }
    (stem, stages)
}

/// Builds U-Mamba_Enc's `mamba_layers.{s}`: stage s has one when `(s odd) xor (n odd)`,
/// over channel tokens where the stage has no more pixels than channels.
fn encoder_mamba_layers(
    encoder: &nn::Path,
    plan: &PlainUNetConfig,
    patch: (i64, i64),
) -> Vec<Option<MambaLayer>> {
    let features = &plan.features_per_stage;
    let n = features.len();
    let (mut h, mut w) = patch;
    let mut layers = Vec::new();
    for (s, (&width, &stride)) in features.iter().zip(&plan.strides).enumerate() {
        h /= stride;
        w /= stride;
        let channel_tokens = h * w <= width;
        let layer = ((s % 2 == 1) ^ (n % 2 == 1)).then(|| {
            let dim = if channel_tokens { h * w } else { width };
            MambaLayer::new(encoder / "mamba_layers" / s, dim, channel_tokens)
        });
        layers.push(layer);
    }
    layers
}

/// Builds the decoder's up-sampling convolutions, stages and heads, from the bottom.
fn build_decoder(
    decoder: &nn::Path,
    num_classes: i64,
    plan: &PlainUNetConfig,
    blocks: &[i64],
) -> (Vec<Conv2d>, Vec<ResStage>, Vec<Conv2d>) {
    let features = &plan.features_per_stage;
    let n = features.len();
    let (mut upsample_convs, mut stages, mut seg_layers) = (vec![], vec![], vec![]);
    for s in 0..n - 1 {
        let below = features[n - 1 - s];
        let skip = features[n - 2 - s];
        let up_path = decoder / "upsample_layers" / s / "conv";
        upsample_convs.push(Conv2d::new(
            up_path,
            below,
            skip,
            1,
            1,
            0,
            1,
            true,
            ConvInit::HeNormal,
        ));
        let cin = if s + 1 < n - 1 { 2 * skip } else { skip };
        let kernel = plan.kernel_sizes[n - 2 - s];
        let path = decoder / "stages" / s;
        stages.push(ResStage::new(
            path,
            cin,
            skip,
            kernel,
            1,
            blocks[s],
            plan.conv_bias,
        ));
        seg_layers.push(conv(
            decoder / "seg_layers" / s,
            skip,
            num_classes,
            1,
            1,
            true,
        ));
    }
    (upsample_convs, stages, seg_layers)
}

/// U-Mamba_Bot or U-Mamba_Enc with deep supervision.
#[derive(Debug)]
pub struct UMamba {
    stem: ResStage,
    stages: Vec<ResStage>,
    /// Per encoder stage (U-Mamba_Enc) or only the bottleneck (U-Mamba_Bot).
    mamba_layers: Vec<Option<MambaLayer>>,
    upsample_convs: Vec<Conv2d>,
    decoder_stages: Vec<ResStage>,
    seg_layers: Vec<Conv2d>,
    features: Vec<i64>,
    strides: Vec<i64>,
    fixed_size: Option<(i64, i64)>,
}

impl UMamba {
    /// Builds U-Mamba_Enc when `encoder_variant`, else U-Mamba_Bot; `patch` is the plan's
    /// patch size, which fixes U-Mamba_Enc's channel-token layers.
    pub fn new(
        path: nn::Path,
        in_channels: i64,
        num_classes: i64,
        config: &UMambaConfig,
        encoder_variant: bool,
        patch: (i64, i64),
    ) -> Result<Self, NetsError> {
        let plan = &config.plan;
        let n = plan.features_per_stage.len();
        if n < 2
            || plan.kernel_sizes.len() != n
            || plan.strides.len() != n
            || plan.n_conv_per_stage.len() != n
            || plan.n_conv_per_stage_decoder.len() != n - 1
        {
            return Err(NetsError::InvalidConfig {
                reason: format!(
                    "features_per_stage, kernel_sizes, strides and n_conv_per_stage need one \
                     entry per stage and n_conv_per_stage_decoder one fewer; got {plan:?}"
                ),
            });
        }
        let features = plan.features_per_stage.clone();
        let (blocks, decoder_blocks) = forced_block_counts(plan);
        let encoder = &path / "encoder";
        let (stem, stages) = build_encoder(&encoder, in_channels, plan, &blocks);
        let mamba_layers = if encoder_variant {
            encoder_mamba_layers(&encoder, plan, patch)
        } else {
            let mut layers: Vec<Option<MambaLayer>> = (0..n).map(|_| None).collect();
            let bottleneck = MambaLayer::new(&path / "mamba_layer", features[n - 1], false);
            layers[n - 1] = Some(bottleneck);
            layers
        };
        let fixed_size = encoder_variant.then_some(patch);
        let (upsample_convs, decoder_stages, seg_layers) =
            build_decoder(&(&path / "decoder"), num_classes, plan, &decoder_blocks);
        Ok(Self {
            stem,
            stages,
            mamba_layers,
            upsample_convs,
            decoder_stages,
            seg_layers,
            features,
            strides: plan.strides.clone(),
            fixed_size,
        })
    }

    pub fn divisor(&self) -> i64 {
        self.strides.iter().product()
    }

    /// Returns the only input size U-Mamba_Enc takes, or `None` for U-Mamba_Bot.
    pub fn fixed_input_size(&self) -> Option<(i64, i64)> {
        self.fixed_size
    }

    /// Returns the heads of every decoder stage, full resolution first.
    pub fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        let mut h = self.stem.forward(x);
        let mut skips = Vec::new();
        for (stage, mamba) in self.stages.iter().zip(&self.mamba_layers) {
            h = stage.forward(&h);
            if let Some(mamba) = mamba {
                h = mamba.forward(&h);
            }
            skips.push(h.shallow_clone());
        }
        let n = skips.len();
        let mut heads = Vec::new();
        for s in 0..n - 1 {
            let stride = self.strides[n - 1 - s];
            let (_, _, height, width) = h.size4().expect("(B, C, H, W)");
            let up = h.upsample_nearest2d([height * stride, width * stride], None, None);
            let mut y = self.upsample_convs[s].forward(&up);
            if s + 1 < n - 1 {
                y = Tensor::cat(&[&y, &skips[n - 2 - s]], 1);
            }
            h = self.decoder_stages[s].forward(&y);
            heads.push(self.seg_layers[s].forward(&h));
        }
        heads.reverse();
        heads
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        counter.section("encoder");
        let mut hw = self.stem.flops(counter, batch, hw);
        let mut sizes = Vec::new();
        for (s, (stage, mamba)) in self.stages.iter().zip(&self.mamba_layers).enumerate() {
            hw = stage.flops(counter, batch, hw);
            if let Some(mamba) = mamba {
                if s + 1 == self.stages.len() && self.fixed_size.is_none() {
                    counter.section("mamba_layer");
                }
                mamba.flops(counter, batch, (self.features[s], hw.0, hw.1));
                counter.section("encoder");
            }
            sizes.push(hw);
        }
        counter.section("decoder");
        let n = sizes.len();
        for s in 0..n - 1 {
            let stride = self.strides[n - 1 - s];
            let up = (hw.0 * stride, hw.1 * stride);
            counter.add("conv", self.upsample_convs[s].flops(batch, up));
            hw = self.decoder_stages[s].flops(counter, batch, up);
            counter.add("conv", self.seg_layers[s].flops(batch, hw));
        }
    }
}
