//! The training and validation transform chains in nnU-Net's order, with nnU-Net's values.

use std::time::Instant;

use rand::Rng;

use super::blur::GaussianBlur;
use super::brightness::MultiplicativeBrightness;
use super::contrast::Contrast;
use super::downsample_seg::downsample_for_deep_supervision;
use super::gamma::Gamma;
use super::low_resolution::SimulateLowResolution;
use super::mirror::Mirror;
use super::noise::GaussianNoise;
use super::remove_label::replace_label;
use super::spatial::{SpatialParams, SpatialTransform};
use super::{LabelMap, Sample, Stage, StageTimes};

/// The padding label the loader writes outside the image; nnU-Net's `RemoveLabelTansform(-1, 0)`
/// turns it into background after the spatial transform.
pub const PADDING_LABEL: i16 = -1;

/// nnU-Net's 2D training augmentation, every transform as a public field so that variants
/// (e.g. no mirroring) are a field change away.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingTransforms {
    pub spatial: SpatialTransform,
    pub noise: GaussianNoise,
    pub blur: GaussianBlur,
    pub brightness: MultiplicativeBrightness,
    pub contrast: Contrast,
    pub low_resolution: SimulateLowResolution,
    pub gamma_inverted: Gamma,
    pub gamma: Gamma,
    pub mirror: Mirror,
}

impl TrainingTransforms {
    /// Builds the transforms of `nnUNetTrainer.get_training_transforms` (nnunetv2 2.8.1) for
    /// a 2D `patch` with rotation range `rotation` (radians) and mirroring of both axes.
    pub fn nnunet_2d(patch: [usize; 2], rotation: (f64, f64)) -> TrainingTransforms {
        let gamma = |apply_probability, p_invert_image| Gamma {
            apply_probability,
            gamma: (0.7, 1.5),
            p_invert_image,
            p_per_channel: 1.0,
            p_retain_stats: 1.0,
        };
        TrainingTransforms {
            spatial: SpatialTransform {
                patch_size: patch,
                p_rotation: 0.2,
                rotation,
                p_scaling: 0.2,
                scaling: (0.7, 1.4),
            },
            noise: GaussianNoise {
                apply_probability: 0.1,
                sigma: (0.0, 0.1),
                p_per_channel: 1.0,
            },
            blur: GaussianBlur {
                apply_probability: 0.2,
                sigma: (0.5, 1.0),
                p_per_channel: 0.5,
            },
            brightness: MultiplicativeBrightness {
                apply_probability: 0.15,
                multiplier: (0.75, 1.25),
                p_per_channel: 1.0,
            },
            contrast: Contrast {
                apply_probability: 0.15,
                factor: (0.75, 1.25),
                preserve_range: true,
                p_per_channel: 1.0,
            },
            low_resolution: SimulateLowResolution {
                apply_probability: 0.25,
                scale: (0.5, 1.0),
                p_per_channel: 0.5,
            },
            gamma_inverted: gamma(0.1, 1.0),
            gamma: gamma(0.3, 0.0),
            mirror: Mirror { axes: vec![0, 1] },
        }
    }

    /// Runs the chain on one sample (the enlarged patch); the result has the network patch
    /// size and label -1 replaced by 0.
    pub fn apply<R: Rng>(&self, sample: Sample, rng: &mut R, times: &mut StageTimes) -> Sample {
        let params = self.spatial.sample(rng);
        self.apply_with_spatial(&params, sample, rng, times)
    }

    /// Runs the chain with spatial parameters drawn beforehand. Without rotation and scaling,
    /// `sample` may already be the centre crop of the network patch size, which the loader
    /// reads directly to save a copy.
    pub fn apply_with_spatial<R: Rng>(
        &self,
        params: &SpatialParams,
        sample: Sample,
        rng: &mut R,
        times: &mut StageTimes,
    ) -> Sample {
        let channels = sample.channels;
        let identity = params.angle.is_none() && params.scale.is_none();
        let mut s = if identity && [sample.height, sample.width] == self.spatial.patch_size {
            sample
        } else {
            times.time(Stage::Spatial, || self.spatial.apply(params, &sample))
        };

        let start = Instant::now();
        if let Some(p) = self.noise.sample(rng, channels) {
            self.noise.apply(&p, &mut s, rng);
        }
        times.add(Stage::Noise, start.elapsed());
        if let Some(p) = self.blur.sample(rng, channels) {
            times.time(Stage::Blur, || self.blur.apply(&p, &mut s));
        }
        if let Some(p) = self.brightness.sample(rng, channels) {
            times.time(Stage::Brightness, || self.brightness.apply(&p, &mut s));
        }
        if let Some(p) = self.contrast.sample(rng, channels) {
            times.time(Stage::Contrast, || self.contrast.apply(&p, &mut s));
        }
        if let Some(p) = self.low_resolution.sample(rng, channels) {
            times.time(Stage::LowResolution, || {
                self.low_resolution.apply(&p, &mut s)
            });
        }
        if let Some(p) = self.gamma_inverted.sample(rng, channels) {
            times.time(Stage::GammaInverted, || {
                self.gamma_inverted.apply(&p, &mut s)
            });
        }
        if let Some(p) = self.gamma.sample(rng, channels) {
            times.time(Stage::Gamma, || self.gamma.apply(&p, &mut s));
        }
        let flips = self.mirror.sample(rng);
        times.time(Stage::Mirror, || self.mirror.apply(&flips, &mut s));
        times.time(Stage::RemoveLabel, || {
            replace_label(&mut s.seg, PADDING_LABEL, 0)
        });
        s
    }
}

/// A transformed sample: the image and one label map per deep-supervision output.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmented {
    pub sample: Sample,
    pub targets: Vec<LabelMap>,
}

/// The transform chain of a loader: nnU-Net's training augmentation, or its validation
/// chain (label -1 to 0 and the deep-supervision maps only).
#[derive(Debug, Clone, PartialEq)]
pub enum Transforms {
    Training(Box<TrainingTransforms>),
    Validation,
}

impl Transforms {
    /// Runs the chain, then builds the deep-supervision targets for `scales` ([1, 1] only
    /// when deep supervision is off).
    pub fn apply<R: Rng>(
        &self,
        sample: Sample,
        scales: &[[f64; 2]],
        rng: &mut R,
        times: &mut StageTimes,
    ) -> Augmented {
        let spatial = match self {
            Transforms::Training(t) => Some(t.spatial.sample(rng)),
            Transforms::Validation => None,
        };
        self.apply_with_spatial(spatial.as_ref(), sample, scales, rng, times)
    }

    /// As [`Transforms::apply`], with the spatial parameters drawn beforehand (`None` for the
    /// validation chain).
    pub fn apply_with_spatial<R: Rng>(
        &self,
        spatial: Option<&SpatialParams>,
        sample: Sample,
        scales: &[[f64; 2]],
        rng: &mut R,
        times: &mut StageTimes,
    ) -> Augmented {
        let sample = match (self, spatial) {
            (Transforms::Training(t), Some(p)) => t.apply_with_spatial(p, sample, rng, times),
            (Transforms::Training(t), None) => t.apply(sample, rng, times),
            (Transforms::Validation, _) => {
                let mut s = sample;
                times.time(Stage::RemoveLabel, || {
                    replace_label(&mut s.seg, PADDING_LABEL, 0)
                });
                s
            }
        };
        let targets = times.time(Stage::DownsampleSeg, || {
            downsample_for_deep_supervision(&sample.seg, sample.height, sample.width, scales)
        });
        Augmented { sample, targets }
    }
}
