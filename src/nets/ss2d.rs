//! SS2D, the 2D selective-scan operator of VMamba v0 as Swin-UMamba uses it
//! (`SS2D` in the official `SwinUMamba.py`/`SwinUMambaD.py`).
//!
//! The input (B, H, W, C) is projected to x and z (inner width 2C each), x passes a 3×3
//! depthwise convolution and SiLU, and is scanned in four directions: row-major,
//! column-major, and both reversed. The four outputs are mapped back to row-major order
//! and summed, layer-normalised, gated by `silu(z)` and projected back to C.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::flops::FlopCounter;
use super::layers::{torch_default_init, Conv2d, ConvInit, LayerNorm, Linear, TRUNC_NORMAL_002};
use crate::scan::{selective_scan, ScanOptions};

/// Number of scan directions (row-major, column-major, and both reversed).
pub const DIRECTIONS: i64 = 4;
/// SSM state size N (`d_state=16` in every official constructor).
pub const D_STATE: i64 = 16;
/// Depthwise convolution kernel (`d_conv=3`).
pub const D_CONV: i64 = 3;
/// Inner width factor (`expand=2`).
pub const EXPAND: i64 = 2;
/// Range and floor of the initial step size dt (`dt_min`, `dt_max`, `dt_init_floor`).
const DT_MIN: f64 = 1e-3;
const DT_MAX: f64 = 1e-1;
const DT_INIT_FLOOR: f64 = 1e-4;

/// How the linear layers of a block are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearInit {
    /// `trunc_normal_(std=0.02)` with zero bias, as `VSSMEncoder._init_weights` applies.
    TruncNormal,
    /// PyTorch's default, as in the Swin-UMamba† decoder, which skips `_init_weights`.
    TorchDefault,
}

/// SS2D with parameters named as the official state dict: `in_proj`, `conv2d`,
/// `x_proj_weight` (K, R + 2N, D), `dt_projs_weight` (K, D, R), `dt_projs_bias` (K, D),
/// `A_logs` (K·D, N), `Ds` (K·D), `out_norm`, `out_proj`.
#[derive(Debug)]
pub struct Ss2d {
    in_proj: Linear,
    conv2d: Conv2d,
    x_proj_weight: Tensor,
    dt_projs_weight: Tensor,
    dt_projs_bias: Tensor,
    a_logs: Tensor,
    ds: Tensor,
    out_norm: LayerNorm,
    out_proj: Linear,
    pub d_model: i64,
    pub d_inner: i64,
    pub dt_rank: i64,
    pub d_state: i64,
}

impl Ss2d {
    pub fn new(path: nn::Path, d_model: i64, d_state: i64, init: LinearInit) -> Self {
        let d_inner = EXPAND * d_model;
        let dt_rank = (d_model + 15) / 16;
        let linear_init = match init {
            LinearInit::TruncNormal => Some(TRUNC_NORMAL_002),
            LinearInit::TorchDefault => None,
        };
        let in_proj =
            Linear::with_init(&path / "in_proj", d_model, 2 * d_inner, false, linear_init);
        let conv2d = Conv2d::new(
            &path / "conv2d",
            d_inner,
            d_inner,
            D_CONV,
            1,
            (D_CONV - 1) / 2,
            d_inner,
            true,
            ConvInit::TorchDefault,
        );
        // The four x projections are nn.Linear layers stacked after construction, so they
        // keep PyTorch's default initialisation.
        let x_proj_weight = path.var(
            "x_proj_weight",
            &[DIRECTIONS, dt_rank + 2 * d_state, d_inner],
            torch_default_init(d_inner),
        );
        let dt_std = (dt_rank as f64).powf(-0.5);
        let dt_projs_weight = path.var(
            "dt_projs_weight",
            &[DIRECTIONS, d_inner, dt_rank],
            Init::Uniform {
                lo: -dt_std,
                up: dt_std,
            },
        );
        let dt_projs_bias = path.var("dt_projs_bias", &[DIRECTIONS, d_inner], Init::Const(0.0));
        let a_logs = path.var("A_logs", &[DIRECTIONS * d_inner, d_state], Init::Const(0.0));
        let ds = path.var("Ds", &[DIRECTIONS * d_inner], Init::Const(1.0));
        tch::no_grad(|| {
            // Inverse softplus of a log-uniform dt in [DT_MIN, DT_MAX] floored at
            // DT_INIT_FLOOR, so that softplus(bias) starts inside that range.
            let (lo, hi) = (DT_MIN.ln(), DT_MAX.ln());
            let dt = (Tensor::rand([DIRECTIONS, d_inner], (Kind::Float, path.device()))
                * (hi - lo)
                + lo)
                .exp()
                .clamp_min(DT_INIT_FLOOR);
            let inv_dt = &dt + (-(-&dt).expm1()).log();
            dt_projs_bias.shallow_clone().copy_(&inv_dt);
            // S4D-real initialisation: A_log[d, n] = log(n + 1).
            let a = Tensor::arange_start(1, d_state + 1, (Kind::Float, path.device()))
                .log()
                .unsqueeze(0)
                .expand([DIRECTIONS * d_inner, d_state], false);
            a_logs.shallow_clone().copy_(&a);
        });
        let out_norm = LayerNorm::new(&path / "out_norm", d_inner);
        let out_proj = Linear::with_init(&path / "out_proj", d_inner, d_model, false, linear_init);
        Self {
            in_proj,
            conv2d,
            x_proj_weight,
            dt_projs_weight,
            dt_projs_bias,
            a_logs,
            ds,
            out_norm,
            out_proj,
            d_model,
            d_inner,
            dt_rank,
            d_state,
        }
    }

    /// # Shapes
    /// `x`: (B, H, W, C) → (B, H, W, C).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (batch, height, width, _) = x.size4().expect("SS2D input must be (B, H, W, C)");
        let xz = self.in_proj.forward(x);
        let parts = xz.chunk(2, -1);
        let (x, z) = (&parts[0], &parts[1]); // (B, H, W, D) each
        let x = self
            .conv2d
            .forward(&x.permute([0, 3, 1, 2]).contiguous())
            .silu(); // (B, D, H, W)
        let y = self.scan_four_directions(&x); // (B, D, L)
        let y = y
            .transpose(1, 2)
            .contiguous()
            .view([batch, height, width, -1]);
        let y = self.out_norm.forward(&y) * z.silu();
        self.out_proj.forward(&y)
    }

    /// Runs the four scans and sums them in row-major order.
    ///
    /// # Shapes
    /// `x`: (B, D, H, W) → (B, D, L) with L = H·W.
    fn scan_four_directions(&self, x: &Tensor) -> Tensor {
        let (batch, d_inner, height, width) = x.size4().expect("(B, D, H, W)");
        let length = height * width;
        let row_major = x.view([batch, d_inner, length]);
        let col_major = x
            .transpose(2, 3)
            .contiguous()
            .view([batch, d_inner, length]);
        let forward_pair = Tensor::stack(&[row_major, col_major], 1); // (B, 2, D, L)
        let xs = Tensor::cat(&[&forward_pair, &forward_pair.flip([-1])], 1); // (B, K, D, L)

        // (K, R + 2N, D) @ (B, K, D, L) -> (B, K, R + 2N, L)
        let x_dbl = self.x_proj_weight.matmul(&xs);
        let parts = x_dbl.split_with_sizes([self.dt_rank, self.d_state, self.d_state], 2);
        let (dts, bs, cs) = (&parts[0], &parts[1], &parts[2]);
        // (K, D, R) @ (B, K, R, L) -> (B, K, D, L)
        let dts = self.dt_projs_weight.matmul(dts);

        let flat = [batch, DIRECTIONS * d_inner, length];
        let u = xs.view(flat); // (B, K·D, L)
        let delta = dts.contiguous().view(flat); // (B, K·D, L)
        let a = -self.a_logs.exp(); // (K·D, N)
        let bias = self.dt_projs_bias.view([-1]); // (K·D)
        let options = ScanOptions {
            d: Some(&self.ds),
            z: None,
            delta_bias: Some(&bias),
            delta_softplus: true,
            return_last_state: false,
        };
        // B and C stay grouped (B, K, N, L): channel block k uses direction k's B and C.
        let out = selective_scan(&u, &delta, &a, &bs.contiguous(), &cs.contiguous(), &options)
            .expect("SS2D builds the scan inputs with consistent shapes")
            .y
            .view([batch, DIRECTIONS, d_inner, length]);

        let reversed = out.narrow(1, 2, 2).flip([-1]); // (B, 2, D, L)
        let to_row_major = |t: Tensor| {
            t.view([batch, d_inner, width, height])
                .transpose(2, 3)
                .contiguous()
                .view([batch, d_inner, length])
        };
        let col_y = to_row_major(out.select(1, 1));
        let col_reversed_y = to_row_major(reversed.select(1, 1));
        out.select(1, 0) + reversed.select(1, 0) + col_y + col_reversed_y
    }

    /// Counts the FLOPs of one forward at (B, H, W).
    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (height, width): (i64, i64)) {
        let tokens = batch * height * width;
        counter.add("linear", self.in_proj.flops(tokens));
        counter.add("conv", self.conv2d.flops(batch, (height, width)));
        let x_proj = DIRECTIONS * (self.dt_rank + 2 * self.d_state) * self.d_inner * tokens;
        let dt_proj = DIRECTIONS * self.d_inner * self.dt_rank * tokens;
        counter.add("einsum", (x_proj + dt_proj) as f64);
        let scan = 9 * tokens * DIRECTIONS * self.d_inner * self.d_state;
        counter.add("selective_scan", scan as f64);
        counter.add("layer_norm", self.out_norm.flops(tokens));
        counter.add("linear", self.out_proj.flops(tokens));
    }
}
