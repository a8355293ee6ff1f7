//! A tiny two-scale U-Net and a synthetic batch source, for tests and for the `--synthetic`
//! mode of `train-fold`, which exercises the whole trainer without a preprocessed dataset.
//!
//! The images are discs of random class, radius and position on a noisy background, with an
//! intensity that depends on the class, so a small network can learn them in a few epochs.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use super::data::{Batch, BatchSource, TrainPlan};
use super::error::TrainError;
use super::network::SegmentationNetwork;

/// A two-level U-Net with two deep-supervision heads (full and half resolution).
///
/// Its first convolution lives under `encoder.patch_embed` and the rest of the encoder under
/// `encoder`, mirroring the names the Swin-UMamba freezing rule looks at.
pub struct TinyUNet {
    vs: nn::VarStore,
    patch_embed: nn::Conv2D,
    encoder_conv: nn::Conv2D,
    bottleneck: nn::Conv2D,
    up: nn::ConvTranspose2D,
    decoder: nn::Conv2D,
    head_full: nn::Conv2D,
    head_half: nn::Conv2D,
    deep_supervision: bool,
}

impl TinyUNet {
    /// Width of the first level in channels.
    const WIDTH: i64 = 8;

    /// Creates the network with `in_channels` inputs and `classes` outputs on `device`,
    /// initialised from libtorch's global generator.
    pub fn new(in_channels: i64, classes: i64, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let w = Self::WIDTH;
        let same = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let encoder = &root / "encoder";
        let patch_embed = nn::conv2d(&encoder / "patch_embed", in_channels, w, 3, same);
        let encoder_conv = nn::conv2d(&encoder / "conv", w, w, 3, same);
        let bottleneck = nn::conv2d(&encoder / "bottleneck", w, 2 * w, 3, same);

        let up_config = nn::ConvTransposeConfig {
            stride: 2,
            ..Default::default()
        };
        let decoder_root = &root / "decoder";
        let up = nn::conv_transpose2d(&decoder_root / "up", 2 * w, w, 2, up_config);
        let decoder = nn::conv2d(&decoder_root / "conv", 2 * w, w, 3, same);
        let head_full = nn::conv2d(
            &decoder_root / "head_full",
            w,
            classes,
            1,
            Default::default(),
        );
        let head_half = nn::conv2d(
            &decoder_root / "head_half",
            2 * w,
            classes,
            1,
            Default::default(),
        );
        TinyUNet {
            vs,
            patch_embed,
            encoder_conv,
            bottleneck,
            up,
            decoder,
            head_full,
            head_half,
            deep_supervision: true,
        }
    }
}

impl SegmentationNetwork for TinyUNet {
    fn forward_heads(&self, input: &Tensor, _train: bool) -> Vec<Tensor> {
        let skip = self
            .encoder_conv
            .forward(&self.patch_embed.forward(input).relu())
            .relu();
        let deep = self.bottleneck.forward(&skip.max_pool2d_default(2)).relu();
        let up = self.up.forward(&deep);
        let fused = self.decoder.forward(&Tensor::cat(&[up, skip], 1)).relu();
        let full = self.head_full.forward(&fused);
        if self.deep_supervision {
            vec![full, self.head_half.forward(&deep)]
        } else {
            vec![full]
        }
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    fn encoder_parameter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .vs
            .variables()
            .into_keys()
            .filter(|n| n.starts_with("encoder."))
            .collect();
        names.sort();
        names
    }

    fn set_deep_supervision(&mut self, enabled: bool) {
        self.deep_supervision = enabled;
    }

    fn deep_supervision_heads(&self) -> usize {
        2
    }
}

/// Synthetic images with disc-shaped objects and their label maps.
pub struct SyntheticSource {
    plan: TrainPlan,
    /// Downsampling factor of each target, highest resolution first.
    target_strides: Vec<i64>,
    /// Sleep before each batch, to make a data-wait share visible or to lengthen epochs in
    /// kill-and-resume tests.
    delay: Duration,
}

impl SyntheticSource {
    /// Creates a source for `plan` that produces one target per entry of `target_strides`.
    pub fn new(plan: TrainPlan, target_strides: Vec<i64>, delay: Duration) -> Self {
        SyntheticSource {
            plan,
            target_strides,
            delay,
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<i64>) {
        let [h, w] = self.plan.patch_size;
        let channels = self.plan.num_input_channels;
        let noise = Normal::new(0.0f32, 0.3).expect("constant standard deviation is valid");
        let mut labels = vec![0i64; (h * w) as usize];
        let objects = rng.gen_range(1..=3);
        for _ in 0..objects {
            let class = rng.gen_range(1..self.plan.num_classes.max(2));
            let radius = rng.gen_range(2.0..(h.min(w) as f64 / 3.0).max(2.5));
            let cy = rng.gen_range(0.0..h as f64);
            let cx = rng.gen_range(0.0..w as f64);
            for y in 0..h {
                for x in 0..w {
                    let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                    if dy * dy + dx * dx <= radius * radius {
                        labels[(y * w + x) as usize] = class;
                    }
                }
            }
        }
        let mut image = Vec::with_capacity((channels * h * w) as usize);
        for c in 0..channels {
            for &label in &labels {
                let base = label as f32 * (0.6 + 0.2 * c as f32);
                image.push(base + noise.sample(rng));
            }
        }
        (image, labels)
    }
}

impl BatchSource for SyntheticSource {
    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Batch, TrainError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let [h, w] = self.plan.patch_size;
        let b = self.plan.batch_size;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..b {
            let (image, label) = self.sample(rng);
            images.extend(image);
            labels.extend(label);
        }
        let data = Tensor::from_slice(&images).view([b, self.plan.num_input_channels, h, w]);
        let full = Tensor::from_slice(&labels)
            .view([b, 1, h, w])
            .to_kind(Kind::Float);
        // Lower-resolution targets take every stride-th pixel, as nnU-Net's nearest-neighbour
        // target downsampling does for integer factors.
        let targets = self
            .target_strides
            .iter()
            .map(|&s| full.slice(2, 0, h, s).slice(3, 0, w, s).contiguous())
            .collect();
        Ok(Batch { data, targets })
    }
}
