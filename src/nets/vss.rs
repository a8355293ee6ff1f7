//! VSS block, VSS layer (one stage) and the VMamba v0 encoder (`VSSMEncoder`) of the
//! official Swin-UMamba code.

use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::layers::{drop_path, LayerNorm};
use super::patch::{PatchEmbed, PatchMerging};
use super::ss2d::{LinearInit, Ss2d};

/// VMamba v0 block: `x + DropPath(SS2D(LayerNorm(x)))`, with no MLP branch.
#[derive(Debug)]
pub struct VssBlock {
    ln_1: LayerNorm,
    self_attention: Ss2d,
    drop_path: f64,
}

impl VssBlock {
    pub fn new(path: nn::Path, dim: i64, d_state: i64, drop_path: f64, init: LinearInit) -> Self {
        Self {
            ln_1: LayerNorm::new(&path / "ln_1", dim),
            self_attention: Ss2d::new(&path / "self_attention", dim, d_state, init),
            drop_path,
        }
    }

    /// # Shapes
    /// `x`: (B, H, W, C) → (B, H, W, C).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.self_attention.forward(&self.ln_1.forward(x));
        x + drop_path(&y, self.drop_path, train)
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, (h, w): (i64, i64)) {
        counter.add("layer_norm", self.ln_1.flops(batch * h * w));
        self.self_attention.flops(counter, batch, (h, w));
    }
}

/// `VSSLayer`: `depth` VSS blocks at one resolution (`blocks.{i}`); the official
/// networks never give it a downsample module.
#[derive(Debug)]
pub struct VssLayer {
    blocks: Vec<VssBlock>,
}

impl VssLayer {
    /// Builds `drop_paths.len()` blocks, block i with drop-path rate `drop_paths[i]`.
    pub fn new(
        path: nn::Path,
        dim: i64,
        d_state: i64,
        drop_paths: &[f64],
        init: LinearInit,
    ) -> Self {
        let blocks_path = &path / "blocks";
        let blocks = drop_paths
            .iter()
            .enumerate()
            .map(|(i, &rate)| VssBlock::new(&blocks_path / i, dim, d_state, rate, init))
            .collect();
        Self { blocks }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(x.shallow_clone(), |x, block| block.forward(&x, train))
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        for block in &self.blocks {
            block.flops(counter, batch, hw);
        }
    }
}

/// `torch.linspace(start, end, steps)` in f64 (stochastic-depth schedules).
pub fn linspace(start: f64, end: f64, steps: usize) -> Vec<f64> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f64;
            (0..steps).map(|i| start + step * i as f64).collect()
        }
    }
}

/// `VSSMEncoder`: patch embedding, then VSS stages with patch merging between them.
/// The drop-path rate rises linearly from 0 to `drop_path_rate` over all blocks.
#[derive(Debug)]
pub struct VssmEncoder {
    patch_embed: PatchEmbed,
    layers: Vec<VssLayer>,
    downsamples: Vec<PatchMerging>,
    pub dims: Vec<i64>,
    pub patch: i64,
}

/// Shape arguments of [`VssmEncoder`].
#[derive(Debug, Clone)]
pub struct VssmEncoderConfig {
    pub patch: i64,
    pub in_channels: i64,
    pub dims: Vec<i64>,
    pub depths: Vec<i64>,
    pub d_state: i64,
    pub drop_path_rate: f64,
}

impl VssmEncoder {
    pub fn new(path: nn::Path, config: &VssmEncoderConfig) -> Self {
        let dims = config.dims.clone();
        let patch_embed = PatchEmbed::new(
            &path / "patch_embed",
            config.patch,
            config.in_channels,
            dims[0],
        );
        let total: i64 = config.depths.iter().sum();
        let rates = linspace(0.0, config.drop_path_rate, total as usize);
        let mut layers = Vec::new();
        let mut downsamples = Vec::new();
        let mut first = 0usize;
        for (i, (&dim, &depth)) in dims.iter().zip(&config.depths).enumerate() {
            let stage_rates = &rates[first..first + depth as usize];
            first += depth as usize;
            layers.push(VssLayer::new(
                &path / "layers" / i,
                dim,
                config.d_state,
                stage_rates,
                LinearInit::TruncNormal,
            ));
            if i + 1 < dims.len() {
                downsamples.push(PatchMerging::new(&path / "downsamples" / i, dim));
            }
        }
        Self {
            patch_embed,
            layers,
            downsamples,
            dims,
            patch: config.patch,
        }
    }

    /// Returns `[x, stage 0, ..., stage S-1]`, the input followed by every stage's
    /// output before patch merging, channels first.
    ///
    /// # Shapes
    /// `x`: (B, C, H, W); stage i: (B, dims\[i\], H/(p·2^i), W/(p·2^i)).
    pub fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outputs = vec![x.shallow_clone()];
        let mut h = self.patch_embed.forward(x);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, train);
            outputs.push(h.permute([0, 3, 1, 2]));
            if let Some(merge) = self.downsamples.get(i) {
                h = merge.forward(&h);
            }
        }
        outputs
    }

    pub fn flops(&self, counter: &mut FlopCounter, batch: i64, hw: (i64, i64)) {
        let mut hw = self.patch_embed.flops(counter, batch, hw);
        for (i, layer) in self.layers.iter().enumerate() {
            layer.flops(counter, batch, hw);
            if let Some(merge) = self.downsamples.get(i) {
                merge.flops(counter, batch, hw);
                hw = (hw.0 / 2, hw.1 / 2);
            }
        }
    }
}
