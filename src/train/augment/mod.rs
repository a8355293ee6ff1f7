//! nnU-Net v2's 2D training augmentation, one transform per file.
//!
//! The transforms, their order, probabilities and ranges follow
//! `nnUNetTrainer.get_training_transforms` of nnunetv2 2.8.1 with batchgeneratorsv2 0.3.6;
//! docs/augmentation.md lists each value with its source. Every transform splits into
//! `sample` (draw the random parameters, or `None` when the transform is skipped) and
//! `apply` (change the sample), so the parameters' distributions can be tested alone.

pub mod blur;
pub mod brightness;
pub mod contrast;
pub mod downsample_seg;
pub mod gamma;
pub mod low_resolution;
pub mod mirror;
pub mod noise;
pub mod patch_size;
pub mod pipeline;
pub mod random;
pub mod remove_label;
pub mod spatial;

use std::time::Duration;

pub use pipeline::{Augmented, Transforms};

/// One training sample: image (C, H, W) and label map (H, W), both row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: Vec<f32>,
    pub seg: Vec<i16>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Sample {
    /// Creates a sample, checking that the buffers match the shape.
    pub fn new(
        image: Vec<f32>,
        seg: Vec<i16>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Self {
        assert_eq!(
            image.len(),
            channels * height * width,
            "image buffer does not match (C, H, W)"
        );
        assert_eq!(
            seg.len(),
            height * width,
            "label buffer does not match (H, W)"
        );
        Sample {
            image,
            seg,
            channels,
            height,
            width,
        }
    }

    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.plane();
        &self.image[c * n..(c + 1) * n]
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.plane();
        &mut self.image[c * n..(c + 1) * n]
    }
}

/// A label map (H, W), e.g. one deep-supervision target.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub data: Vec<i16>,
    pub height: usize,
    pub width: usize,
}

/// The timed stages of building a batch, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Read,
    Sample,
    Spatial,
    Noise,
    Blur,
    Brightness,
    Contrast,
    LowResolution,
    GammaInverted,
    Gamma,
    Mirror,
    RemoveLabel,
    DownsampleSeg,
    Collate,
}

impl Stage {
    pub const ALL: [Stage; 14] = [
        Stage::Read,
        Stage::Sample,
        Stage::Spatial,
        Stage::Noise,
        Stage::Blur,
        Stage::Brightness,
        Stage::Contrast,
        Stage::LowResolution,
        Stage::GammaInverted,
        Stage::Gamma,
        Stage::Mirror,
        Stage::RemoveLabel,
        Stage::DownsampleSeg,
        Stage::Collate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Sample => "sample (cases, bbox)",
            Stage::Spatial => "spatial (rotate/scale/crop)",
            Stage::Noise => "gaussian noise",
            Stage::Blur => "gaussian blur",
            Stage::Brightness => "brightness",
            Stage::Contrast => "contrast",
            Stage::LowResolution => "low resolution",
            Stage::GammaInverted => "gamma (inverted)",
            Stage::Gamma => "gamma",
            Stage::Mirror => "mirror",
            Stage::RemoveLabel => "remove label -1",
            Stage::DownsampleSeg => "downsample seg (DS)",
            Stage::Collate => "collate to tensors",
        }
    }
}

/// Time spent per stage, summed over samples and batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes(pub [Duration; 14]);

impl StageTimes {
    pub fn add(&mut self, stage: Stage, elapsed: Duration) {
        self.0[stage as usize] += elapsed;
    }

    pub fn merge(&mut self, other: &StageTimes) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += *b;
        }
    }

    pub fn get(&self, stage: Stage) -> Duration {
        self.0[stage as usize]
    }

    pub fn total(&self) -> Duration {
        self.0.iter().sum()
    }

    /// Runs `f`, adds its run time to `stage` and returns its result.
    pub fn time<T>(&mut self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.add(stage, start.elapsed());
        out
    }
}

/// Channels chosen independently with probability `p` each, as batchgeneratorsv2's
/// `torch.rand(C) < p_per_channel`.
pub(crate) fn pick_channels<R: rand::Rng>(rng: &mut R, channels: usize, p: f64) -> Vec<usize> {
    (0..channels).filter(|_| random::chance(rng, p)).collect()
}
