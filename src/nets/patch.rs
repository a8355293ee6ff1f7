//! Patch embedding, merging and expanding, channels-last (B, H, W, C) as in the
//! official `SwinUMamba.py`/`SwinUMambaD.py`.

use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{Conv2d, ConvInit, LayerNorm, Linear, TRUNC_NORMAL_002};

/// `PatchEmbed2D`: a patch×patch convolution with stride patch, then LayerNorm.
#[derive(Debug)]
pub struct PatchEmbed {
    proj: Conv2d,
    norm: LayerNorm,
}

impl PatchEmbed {
    pub fn new(path: nn::Path, patch: i64, in_channels: i64, dim: i64) -> Self {
        let proj = Conv2d::new(
            &path / "proj",
            in_channels,
            dim,
            patch,
            patch,
            0,
            1,
            true,
            ConvInit::TorchDefault,
        );
        Self {
            proj,
            norm: LayerNorm::new(&path / "norm", dim),
        }
    }

    /// # Shapes
    /// `x`: (B, C, H, W) → (B, H/p, W/p, dim).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.norm
            .forward(&self.proj.forward(x).permute([0, 2, 3, 1]))
    }

    /// Counts FLOPs for an input of (H, W) and returns the output (H, W).
    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) -> (i64, i64) {
        counter.add("conv", self.proj.flops(batch, hw));
        let (h, w) = self.proj.out_hw(hw);
        counter.add("layer_norm", self.norm.flops(batch * h * w));
        (h, w)
    }
}

/// `PatchMerging2D`: concatenates each 2×2 neighbourhood in the order (0,0), (1,0),
/// (0,1), (1,1) (row offset first), then LayerNorm(4C) and a bias-free Linear(4C, 2C).
#[derive(Debug)]
pub struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

impl PatchMerging {
    pub fn new(path: nn::Path, dim: i64) -> Self {
        Self {
            norm: LayerNorm::new(&path / "norm", 4 * dim),
            reduction: Linear::with_init(
                &path / "reduction",
                4 * dim,
                2 * dim,
                false,
                Some(TRUNC_NORMAL_002),
            ),
        }
    }

    /// # Shapes
    /// `x`: (B, H, W, C) with even H and W → (B, H/2, W/2, 2C).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let pick = |row: i64, col: i64| {
            x.slice(1, row, None, 2).slice(2, col, None, 2) // (B, H/2, W/2, C)
        };
        let merged = Tensor::cat(&[pick(0, 0), pick(1, 0), pick(0, 1), pick(1, 1)], -1);
        self.reduction.forward(&self.norm.forward(&merged))
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) {
        let tokens = batch * (h / 2) * (w / 2);
        counter.add("layer_norm", self.norm.flops(tokens));
        counter.add("linear", self.reduction.flops(tokens));
    }
}

/// `PatchExpand` (scale 2) and `FinalPatchExpand_X4` (scale 4) of Swin-UMamba†: a
/// bias-free Linear to scale²·C_out channels, a depth-to-space rearrangement and
/// LayerNorm(C_out).
///
/// The rearrangement is einops' `b h w (p1 p2 c) -> b (h p1) (w p2) c`: channel index
/// `(p1·s + p2)·C_out + c` goes to row offset p1 and column offset p2. `pixel_shuffle`
/// uses `(c·s + p1)·s + p2` instead, so the two give different outputs.
#[derive(Debug)]
pub struct PatchExpand {
    expand: Linear,
    norm: LayerNorm,
    scale: i64,
    out_dim: i64,
}

impl PatchExpand {
    /// `PatchExpand(dim)`: Linear(dim, 2·dim), four sub-pixels of dim/2 channels.
    pub fn double(path: nn::Path, dim: i64) -> Self {
        Self {
            expand: Linear::new(&path / "expand", dim, 2 * dim, false),
            norm: LayerNorm::new(&path / "norm", dim / 2),
            scale: 2,
            out_dim: dim / 2,
        }
    }

    /// `FinalPatchExpand_X4(dim)`: Linear(dim, 16·dim), sixteen sub-pixels of dim channels.
    pub fn quadruple(path: nn::Path, dim: i64) -> Self {
        Self {
            expand: Linear::new(&path / "expand", dim, 16 * dim, false),
            norm: LayerNorm::new(&path / "norm", dim),
            scale: 4,
            out_dim: dim,
        }
    }

    /// # Shapes
    /// `x`: (B, C, H, W) → (B, s·H, s·W, C_out), channels last.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.expand.forward(&x.permute([0, 2, 3, 1])); // (B, H, W, s²·C_out)
        let (batch, height, width, _) = x.size4().expect("(B, H, W, C)");
        let s = self.scale;
        let x = x
            .view([batch, height, width, s, s, self.out_dim]) // (B, H, W, p1, p2, c)
            .permute([0, 1, 3, 2, 4, 5]) // (B, H, p1, W, p2, c)
            .reshape([batch, height * s, width * s, self.out_dim]);
        self.norm.forward(&x)
    }

    /// Counts FLOPs for an input of (H, W) and returns the output (H, W).
    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) -> (i64, i64) {
        counter.add("linear", self.expand.flops(batch * h * w));
        let out = (h * self.scale, w * self.scale);
        counter.add("layer_norm", self.norm.flops(batch * out.0 * out.1));
        out
    }
}
