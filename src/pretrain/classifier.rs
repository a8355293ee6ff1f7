//! The VMamba-Tiny v0 classifier used for pretraining: patch embedding (4×4, RGB), four
//! VSS stages with patch merging inside each stage but the last (`layers.{i}.downsample`),
//! a final LayerNorm, global average pooling and a linear head. Parameter names equal the
//! official VMamba v0 checkpoint's, so the Swin-UMamba loaders read what this writes.

use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::nets::layers::{LayerNorm, Linear, TRUNC_NORMAL_002};
use crate::nets::patch::{PatchEmbed, PatchMerging};
use crate::nets::ss2d::LinearInit;
use crate::nets::vss::{linspace, VssLayer};

/// Shape of the classifier; [`ClassifierConfig::tiny`] is VMamba-Tiny v0.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClassifierConfig {
    pub dims: Vec<i64>,
    pub depths: Vec<i64>,
    pub d_state: i64,
    pub patch: i64,
    pub in_channels: i64,
    pub drop_path_rate: f64,
}

impl ClassifierConfig {
    /// VMamba-Tiny v0: dims [96, 192, 384, 768], depths [2, 2, 9, 2], d_state 16, 4×4
    /// patches of RGB images; drop-path 0.2, the rate Swin-UMamba's encoder uses.
    pub fn tiny() -> Self {
        Self {
            dims: vec![96, 192, 384, 768],
            depths: vec![2, 2, 9, 2],
            d_state: 16,
            patch: 4,
            in_channels: 3,
            drop_path_rate: 0.2,
        }
    }
}

/// VMamba v0 classifier with its VarStore.
pub struct VmambaClassifier {
    pub vs: VarStore,
    pub config: ClassifierConfig,
    pub num_classes: i64,
    patch_embed: PatchEmbed,
    layers: Vec<(VssLayer, Option<PatchMerging>)>,
    norm: LayerNorm,
    head: Linear,
}

impl VmambaClassifier {
    /// Builds the classifier on `device` with the official initialisation of each part.
    pub fn new(config: &ClassifierConfig, num_classes: i64, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let patch_embed = PatchEmbed::new(
            &root / "patch_embed",
            config.patch,
            config.in_channels,
            config.dims[0],
        );
        let total: i64 = config.depths.iter().sum();
        let rates = linspace(0.0, config.drop_path_rate, total as usize);
        let mut layers = Vec::new();
        let mut first = 0usize;
        let stages = config.dims.len();
        for (i, (&dim, &depth)) in config.dims.iter().zip(&config.depths).enumerate() {
            let stage_rates = &rates[first..first + depth as usize];
            first += depth as usize;
            let layer = VssLayer::new(
                &root / "layers" / i,
                dim,
                config.d_state,
                stage_rates,
                LinearInit::TruncNormal,
            );
            let downsample = (i + 1 < stages)
                .then(|| PatchMerging::new(&root / "layers" / i / "downsample", dim));
            layers.push((layer, downsample));
        }
        let last = *config.dims.last().expect("at least one stage");
        let norm = LayerNorm::new(&root / "norm", last);
        let head = Linear::with_init(
            &root / "head",
            last,
            num_classes,
            true,
            Some(TRUNC_NORMAL_002),
        );
        Self {
            vs,
            config: config.clone(),
            num_classes,
            patch_embed,
            layers,
            norm,
            head,
        }
    }

    /// Returns class logits.
    ///
    /// # Shapes
    /// `x`: (B, 3, H, W) with H and W divisible by 32 → (B, num_classes).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.patch_embed.forward(x); // (B, H/4, W/4, C)
        for (layer, downsample) in &self.layers {
            h = layer.forward(&h, train);
            if let Some(merge) = downsample {
                h = merge.forward(&h);
            }
        }
        let h = self.norm.forward(&h); // (B, h, w, C)
        let pooled = h.mean_dim(&[1i64, 2][..], false, None); // (B, C)
        self.head.forward(&pooled)
    }
}

/// Rank of each name segment in PyTorch's registration order for VMamba v0 modules:
/// a module's own parameters first, in assignment order, then its submodules in order.
fn segment_rank(segment: &str) -> (u32, u64) {
    if let Ok(index) = segment.parse::<u64>() {
        return (0, index);
    }
    let order = [
        "patch_embed",
        "layers",
        "blocks",
        "downsample",
        "ln_1",
        "self_attention",
        "x_proj_weight",
        "dt_projs_weight",
        "dt_projs_bias",
        "A_logs",
        "Ds",
        "in_proj",
        "conv2d",
        "out_norm",
        "out_proj",
        "proj",
        "reduction",
        "norm",
        "head",
        "weight",
        "bias",
    ];
    match order.iter().position(|s| *s == segment) {
        Some(position) => (1, position as u64),
        None => (2, 0),
    }
}

/// Sorts state-dict names as PyTorch's `state_dict()` lists a VMamba v0 classifier, so
/// a written checkpoint has the official file order (loaders report keys in that order).
pub fn sort_official_order(names: &mut [(String, Tensor)]) {
    names.sort_by(|(a, _), (b, _)| {
        let ranks_a: Vec<(u32, u64)> = a.split('.').map(segment_rank).collect();
        let ranks_b: Vec<(u32, u64)> = b.split('.').map(segment_rank).collect();
        ranks_a.cmp(&ranks_b).then_with(|| a.cmp(b))
    });
}
