//! One batch, built deterministically from (seed, epoch, batch index): nnU-Net's
//! `nnUNetDataLoader.generate_train_batch` for 2D configurations.

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use crate::train::augment::patch_size::{initial_patch_size, rotation_range_2d};
use crate::train::augment::pipeline::TrainingTransforms;
use crate::train::augment::random::stream_rng;
use crate::train::augment::{Augmented, Sample, Stage, StageTimes, Transforms};

use super::case::CaseFolder;
use super::error::{LoaderError, Result};
use super::plan::LoaderPlanConfig;
use super::sampling::{force_foreground, window_lower_corner, OVERSAMPLE_FOREGROUND_PERCENT};

/// The smallest scale nnU-Net's `get_patch_size` call assumes when sizing the read window
/// (nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size passes
/// (0.85, 1.25)).
pub const WINDOW_MIN_SCALE: f64 = 0.85;

/// Settings of batch sampling and augmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Network input patch, [H, W].
    pub patch_size: [usize; 2],
    /// Size of the window read from a case before the spatial transform, [H, W]; equal to
    /// `patch_size` for validation.
    pub window: [usize; 2],
    pub oversample_foreground_percent: f64,
    /// [scale_y, scale_x] per deep-supervision output, full resolution first; `[[1, 1]]`
    /// without deep supervision.
    pub deep_supervision_scales: Vec<[f64; 2]>,
    pub transforms: Transforms,
    pub seed: u64,
}

impl LoaderConfig {
    /// nnU-Net's training loader for a 2D plan: enlarged window, full augmentation.
    pub fn nnunet_training(plan: &LoaderPlanConfig, deep_supervision: bool, seed: u64) -> Self {
        let rotation = rotation_range_2d(plan.patch_size);
        LoaderConfig {
            batch_size: plan.batch_size,
            patch_size: plan.patch_size,
            window: initial_patch_size(plan.patch_size, rotation, WINDOW_MIN_SCALE),
            oversample_foreground_percent: OVERSAMPLE_FOREGROUND_PERCENT,
            deep_supervision_scales: ds_scales(plan, deep_supervision),
            transforms: Transforms::Training(Box::new(TrainingTransforms::nnunet_2d(
                plan.patch_size,
                rotation,
            ))),
            seed,
        }
    }

    /// nnU-Net's validation loader: network-sized window, same oversampling, no augmentation.
    pub fn nnunet_validation(plan: &LoaderPlanConfig, deep_supervision: bool, seed: u64) -> Self {
        LoaderConfig {
            batch_size: plan.batch_size,
            patch_size: plan.patch_size,
            window: plan.patch_size,
            oversample_foreground_percent: OVERSAMPLE_FOREGROUND_PERCENT,
            deep_supervision_scales: ds_scales(plan, deep_supervision),
            transforms: Transforms::Validation,
            seed,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LoaderError::Config(m));
        if self.batch_size == 0 {
            return bad("batch_size is 0; use at least 1".into());
        }
        if self.patch_size.contains(&0)
            || self.window.iter().zip(&self.patch_size).any(|(w, p)| w < p)
        {
            return bad(format!(
                "window {:?} must be at least the patch size {:?}, which must be non-zero",
                self.window, self.patch_size
            ));
        }
        if matches!(self.transforms, Transforms::Validation) && self.window != self.patch_size {
            return bad(
                "the validation chain has no spatial transform, so window must equal patch_size"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.oversample_foreground_percent) {
            return bad(format!(
                "oversample_foreground_percent {} is outside [0, 1]",
                self.oversample_foreground_percent
            ));
        }
        if self.deep_supervision_scales.is_empty() {
            return bad(
                "deep_supervision_scales is empty; use [[1.0, 1.0]] without deep supervision"
                    .into(),
            );
        }
        Ok(())
    }
}

fn ds_scales(plan: &LoaderPlanConfig, deep_supervision: bool) -> Vec<[f64; 2]> {
    if deep_supervision {
        plan.deep_supervision_scales()
    } else {
        vec![[1.0, 1.0]]
    }
}

/// A batch in host memory: one (C, H, W) image per sample, to be stacked into data
/// (B, C, H, W), and one (B, 1, h, w) label array per deep-supervision output.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    pub images: Vec<Vec<f32>>,
    pub shape: [usize; 4],
    pub targets: Vec<(Vec<i16>, [usize; 4])>,
    /// Case name of every sample.
    pub keys: Vec<String>,
    /// Whether each sample was forced to contain foreground.
    pub forced_foreground: Vec<bool>,
    pub times: StageTimes,
}

/// Builds batches from the cases; cheap to clone and share between threads.
#[derive(Clone)]
pub struct BatchSampler {
    cases: Arc<CaseFolder>,
    config: Arc<LoaderConfig>,
    channels: usize,
}

/// Stream index of the case draw, kept apart from the per-sample streams 0..batch_size.
const CASE_STREAM: u64 = u64::MAX;

impl BatchSampler {
    pub fn new(cases: CaseFolder, config: LoaderConfig) -> Result<BatchSampler> {
        config.validate()?;
        let channels = cases.channels()?;
        Ok(BatchSampler {
            cases: Arc::new(cases),
            config: Arc::new(config),
            channels,
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    pub fn cases(&self) -> &CaseFolder {
        &self.cases
    }

    /// Draws the batch's cases uniformly with replacement, as nnU-Net's infinite loader.
    pub fn case_indices(&self, epoch: u64, index: u64) -> Vec<usize> {
        let mut rng = stream_rng(&[self.config.seed, epoch, index, CASE_STREAM]);
        let n = self.cases.cases.len();
        (0..self.config.batch_size)
            .map(|_| rng.gen_range(0..n))
            .collect()
    }

    /// Reads, samples and transforms sample `j` of batch (`epoch`, `index`) from case `case`.
    pub fn sample_one(
        &self,
        epoch: u64,
        index: u64,
        j: usize,
        case: usize,
        times: &mut StageTimes,
    ) -> (Augmented, bool) {
        let cfg = &self.config;
        let mut rng = stream_rng(&[cfg.seed, epoch, index, j as u64]);
        let case = &self.cases.cases[case];
        let forced = force_foreground(j, cfg.batch_size, cfg.oversample_foreground_percent);

        let start = Instant::now();
        let [_, depth, height, width] = case.shape;
        let window = [1, cfg.window[0], cfg.window[1]];
        let need_to_pad = [
            0,
            cfg.window[0] - cfg.patch_size[0],
            cfg.window[1] - cfg.patch_size[1],
        ];
        let corner = window_lower_corner(
            &mut rng,
            [depth, height, width],
            window,
            need_to_pad,
            forced,
            &case.class_locations,
        );
        let spatial = match &cfg.transforms {
            Transforms::Training(t) => Some(t.spatial.sample(&mut rng)),
            Transforms::Validation => None,
        };
        times.add(Stage::Sample, start.elapsed());

        // Without rotation and scaling the spatial transform is a centre crop of the window
        // (crop_tensor with centre floor(window / 2)), so read just that crop.
        let start = Instant::now();
        let crop_only = spatial.is_none_or(|p| p.angle.is_none() && p.scale.is_none());
        let (y0, x0, [rh, rw]) = if crop_only {
            let offset = |window: usize, patch: usize| (window / 2) as i64 - (patch / 2) as i64;
            let dy = offset(cfg.window[0], cfg.patch_size[0]);
            let dx = offset(cfg.window[1], cfg.patch_size[1]);
            (corner[1] + dy, corner[2] + dx, cfg.patch_size)
        } else {
            (corner[1], corner[2], cfg.window)
        };
        let mut image = vec![0.0f32; self.channels * rh * rw];
        let mut seg = vec![0i16; rh * rw];
        case.read_window([corner[0], y0, x0], [rh, rw], &mut image, &mut seg);
        let sample = Sample::new(image, seg, self.channels, rh, rw);
        times.add(Stage::Read, start.elapsed());

        let scales = &cfg.deep_supervision_scales;
        let transforms = &cfg.transforms;
        let out = transforms.apply_with_spatial(spatial.as_ref(), sample, scales, &mut rng, times);
        (out, forced)
    }

    /// Builds batch `index` of `epoch`. The result depends only on the seed, the epoch, the
    /// index and the cases, not on the thread that builds it.
    pub fn sample_batch(&self, epoch: u64, index: u64) -> HostBatch {
        let cfg = &self.config;
        let mut times = StageTimes::default();
        let start = Instant::now();
        let picks = self.case_indices(epoch, index);
        times.add(Stage::Sample, start.elapsed());

        let [h, w] = cfg.patch_size;
        let b = cfg.batch_size;
        let mut images = Vec::with_capacity(b);
        let mut targets: Vec<(Vec<i16>, [usize; 4])> = Vec::new();
        let mut keys = Vec::with_capacity(b);
        let mut forced_foreground = Vec::with_capacity(b);
        for (j, &case) in picks.iter().enumerate() {
            let (out, forced) = self.sample_one(epoch, index, j, case, &mut times);
            let start = Instant::now();
            if targets.is_empty() {
                targets = out
                    .targets
                    .iter()
                    .map(|t| {
                        (
                            Vec::with_capacity(b * t.data.len()),
                            [b, 1, t.height, t.width],
                        )
                    })
                    .collect();
            }
            for (dst, t) in targets.iter_mut().zip(&out.targets) {
                dst.0.extend_from_slice(&t.data);
            }
            times.add(Stage::Collate, start.elapsed());
            images.push(out.sample.image);
            keys.push(self.cases.cases[case].name.clone());
            forced_foreground.push(forced);
        }
        HostBatch {
            images,
            shape: [b, self.channels, h, w],
            targets,
            keys,
            forced_foreground,
            times,
        }
    }
}
