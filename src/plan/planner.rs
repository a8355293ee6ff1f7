//! nnU-Net v2's default `ExperimentPlanner` (version 2.8.1), 2d configuration: target
//! spacing, transpose, patch size shrunk under the memory budget, topology, batch size.
//!
//! Python's `round` rounds halves to even; this port uses `round_ties_even` wherever the
//! planner calls `round`.

use std::collections::BTreeMap;

use serde_json::json;

use super::topology::{estimate_feature_map_size, get_pool_and_conv_props};
use super::{ArchKwargs, Architecture, Configuration, Fingerprint, Plans, ResamplingKwargs};
use crate::dataset::{DatasetJson, FileFormat};

/// The planner's constants, nnU-Net v2's `ExperimentPlanner.__init__` values.
#[derive(Debug, Clone)]
pub struct PlannerSettings {
    /// GPU memory target in GB (nnU-Net's `gpu_memory_target_in_gb`, default 8).
    pub gpu_memory_target_gb: f64,
    pub base_num_features: i64,
    pub max_features_2d: i64,
    /// Feature-map size of the reference 2d network, 85 000 000, that fits 8 GB at
    /// batch size 12 (set empirically in nnU-Net to reproduce v1's configurations).
    pub reference_val_2d: f64,
    pub reference_val_corresp_gb: f64,
    pub reference_val_corresp_bs_2d: f64,
    pub featuremap_min_edge_length: f64,
    pub blocks_per_stage_encoder: i64,
    pub blocks_per_stage_decoder: i64,
    pub min_batch_size: usize,
    /// At most this fraction of the dataset's voxels in one batch (5%).
    pub max_dataset_covered: f64,
    /// An axis is anisotropic when its spacing exceeds this factor times the others'.
    pub anisotropy_threshold: f64,
    pub plans_name: String,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        PlannerSettings {
            gpu_memory_target_gb: 8.0,
            base_num_features: 32,
            max_features_2d: 512,
            reference_val_2d: 85_000_000.0,
            reference_val_corresp_gb: 8.0,
            reference_val_corresp_bs_2d: 12.0,
            featuremap_min_edge_length: 4.0,
            blocks_per_stage_encoder: 2,
            blocks_per_stage_decoder: 2,
            min_batch_size: 2,
            max_dataset_covered: 0.05,
            anisotropy_threshold: 3.0,
            plans_name: "nnUNetPlans".into(),
        }
    }
}

/// `numpy.percentile` with linear interpolation over one column.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn column(rows: &[Vec<f64>], axis: usize) -> Vec<f64> {
    rows.iter().map(|r| r[axis]).collect()
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Median spacing, with the anisotropic axis' spacing lowered to its 10th percentile when
/// both its spacing and its voxel count are anisotropic (`determine_fullres_target_spacing`).
pub fn fullres_target_spacing(fp: &Fingerprint, settings: &PlannerSettings) -> Vec<f64> {
    let shapes: Vec<Vec<f64>> = fp
        .shapes_after_crop
        .iter()
        .map(|s| s.iter().map(|&x| x as f64).collect())
        .collect();
    let dims = fp.spacings[0].len();
    let mut target: Vec<f64> = (0..dims)
        .map(|a| percentile(&column(&fp.spacings, a), 50.0))
        .collect();
    let target_size: Vec<f64> = (0..dims)
        .map(|a| percentile(&column(&shapes, a), 50.0))
        .collect();
    let worst = argmax(&target);
    let others: Vec<usize> = (0..dims).filter(|&a| a != worst).collect();
    let max_other_spacing = others.iter().map(|&a| target[a]).fold(f64::MIN, f64::max);
    let min_other_size = others
        .iter()
        .map(|&a| target_size[a])
        .fold(f64::MAX, f64::min);
    let aniso_spacing = target[worst] > settings.anisotropy_threshold * max_other_spacing;
    let aniso_voxels = target_size[worst] * settings.anisotropy_threshold < min_other_size;
    if aniso_spacing && aniso_voxels {
        let mut axis_target = percentile(&column(&fp.spacings, worst), 10.0);
        if axis_target < max_other_spacing {
            axis_target = max_other_spacing.max(axis_target) + 1e-5;
        }
        target[worst] = axis_target;
    }
    target
}

/// `compute_new_shape`: the shape after resampling from `old_spacing` to `new_spacing`.
pub fn compute_new_shape(shape: &[usize], old_spacing: &[f64], new_spacing: &[f64]) -> Vec<usize> {
    shape
        .iter()
        .zip(old_spacing.iter().zip(new_spacing))
        .map(|(&s, (&o, &n))| (o / n * s as f64).round_ties_even() as usize)
        .collect()
}

/// Normalisation class name for a channel name (`get_normalization_scheme`).
pub fn normalization_scheme(channel_name: &str) -> &'static str {
    match channel_name.to_lowercase().as_str() {
        "ct" => "CTNormalization",
        "nonorm" => "NoNormalization",
        "zscore" => "ZScoreNormalization",
        "rescale_to_0_1" => "RescaleTo01Normalization",
        "rgb_to_0_1" => "RGBTo01Normalization",
        _ => "ZScoreNormalization",
    }
}

/// Fraction below which the median crop size turns on masked z-scoring (nnU-Net: 3/4).
const USE_MASK_FOR_NORM_CROP_FRACTION: f64 = 0.75;

fn schemes_and_masks(json: &DatasetJson, fp: &Fingerprint) -> (Vec<String>, Vec<bool>) {
    let schemes: Vec<&str> = json
        .channel_names_ordered()
        .iter()
        .map(|n| normalization_scheme(n))
        .collect();
    let use_mask = fp.median_relative_size_after_cropping < USE_MASK_FOR_NORM_CROP_FRACTION
        || json
            .extra
            .get("use_mask_for_norm")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    let masks = schemes
        .iter()
        .map(|s| use_mask && *s == "ZScoreNormalization")
        .collect();
    (schemes.into_iter().map(String::from).collect(), masks)
}

fn features_per_stage(n_stages: usize, s: &PlannerSettings) -> Vec<i64> {
    (0..n_stages)
        .map(|i| (s.base_num_features << i).min(s.max_features_2d))
        .collect()
}

/// Architecture of a 2d `PlainConvUNet` for a topology.
pub(crate) fn plain_conv_unet(
    kernel_sizes: Vec<Vec<i64>>,
    strides: Vec<Vec<i64>>,
    s: &PlannerSettings,
) -> Architecture {
    let n = strides.len();
    Architecture {
        network_class_name: "dynamic_network_architectures.architectures.unet.PlainConvUNet".into(),
        arch_kwargs: ArchKwargs {
            n_stages: n,
            features_per_stage: features_per_stage(n, s),
            conv_op: "torch.nn.modules.conv.Conv2d".into(),
            kernel_sizes,
            strides,
            n_conv_per_stage: vec![s.blocks_per_stage_encoder; n],
            n_conv_per_stage_decoder: vec![s.blocks_per_stage_decoder; n - 1],
            conv_bias: true,
            norm_op: "torch.nn.modules.instancenorm.InstanceNorm2d".into(),
            norm_op_kwargs: json!({"eps": 1e-5, "affine": true}),
            dropout_op: None,
            dropout_op_kwargs: None,
            nonlin: "torch.nn.LeakyReLU".into(),
            nonlin_kwargs: json!({"inplace": true}),
            extra: BTreeMap::new(),
        },
        kw_requires_import: ["conv_op", "norm_op", "dropout_op", "nonlin"]
            .map(String::from)
            .to_vec(),
    }
}

fn estimate(patch: &[i64], arch: &ArchKwargs, num_classes: i64) -> f64 {
    estimate_feature_map_size(
        patch,
        &arch.features_per_stage,
        &arch.strides,
        &arch.n_conv_per_stage,
        &arch.n_conv_per_stage_decoder,
        num_classes,
    ) as f64
}

/// Batch size from the memory estimate, capped at 5% of the dataset's voxels and at
/// least `min_batch_size`.
pub(crate) fn batch_size_for(
    patch: &[i64],
    arch: &ArchKwargs,
    num_classes: i64,
    approximate_n_voxels_dataset: f64,
    s: &PlannerSettings,
) -> usize {
    let reference = s.reference_val_2d * (s.gpu_memory_target_gb / s.reference_val_corresp_gb);
    let from_memory = (reference / estimate(patch, arch, num_classes)
        * s.reference_val_corresp_bs_2d)
        .round_ties_even();
    let voxels_per_patch: f64 = patch.iter().map(|&p| p as f64).product();
    let from_dataset =
        (approximate_n_voxels_dataset * s.max_dataset_covered / voxels_per_patch).round_ties_even();
    (from_memory.min(from_dataset).max(s.min_batch_size as f64)) as usize
}

/// `get_plans_for_configuration` for a 2d configuration.
fn plan_2d(
    spacing: &[f64],
    median_shape: &[f64],
    approximate_n_voxels_dataset: f64,
    json: &DatasetJson,
    fp: &Fingerprint,
    s: &PlannerSettings,
) -> Configuration {
    let num_classes = json.labels.len() as i64;
    let inverse: Vec<f64> = spacing.iter().map(|x| 1.0 / x).collect();
    let scale = (2048f64.powi(2) / inverse.iter().product::<f64>()).powf(0.5);
    let initial: Vec<f64> = inverse
        .iter()
        .zip(median_shape)
        .map(|(i, &m)| (i * scale).round_ties_even().min(m))
        .collect();
    let min_edge = s.featuremap_min_edge_length;
    let mut props = get_pool_and_conv_props(spacing, &initial, min_edge, 999_999);
    let mut arch = plain_conv_unet(
        props.conv_kernel_sizes.clone(),
        props.pool_op_kernel_sizes.clone(),
        s,
    );
    let reference = s.reference_val_2d * (s.gpu_memory_target_gb / s.reference_val_corresp_gb);
    let ref_bs = s.reference_val_corresp_bs_2d;
    while estimate(&props.patch_size, &arch.arch_kwargs, num_classes) / ref_bs * 2.0 > reference {
        // Shrink the axis that is largest relative to the median shape (ties: the last).
        let ratios: Vec<f64> = props
            .patch_size
            .iter()
            .zip(median_shape)
            .map(|(&p, &m)| p as f64 / m)
            .collect();
        let mut axis = 0;
        for (i, r) in ratios.iter().enumerate() {
            if *r >= ratios[axis] {
                axis = i;
            }
        }
        let mut trial: Vec<f64> = props.patch_size.iter().map(|&p| p as f64).collect();
        trial[axis] -= props.must_be_divisible_by[axis] as f64;
        let divisor =
            get_pool_and_conv_props(spacing, &trial, min_edge, 999_999).must_be_divisible_by;
        let mut patch: Vec<f64> = props.patch_size.iter().map(|&p| p as f64).collect();
        patch[axis] -= divisor[axis] as f64;
        props = get_pool_and_conv_props(spacing, &patch, min_edge, 999_999);
        arch = plain_conv_unet(
            props.conv_kernel_sizes.clone(),
            props.pool_op_kernel_sizes.clone(),
            s,
        );
    }
    let batch_size = batch_size_for(
        &props.patch_size,
        &arch.arch_kwargs,
        num_classes,
        approximate_n_voxels_dataset,
        s,
    );
    let (normalization_schemes, use_mask_for_norm) = schemes_and_masks(json, fp);
    let resampling = |is_seg: bool, order: u32| ResamplingKwargs {
        is_seg,
        order,
        order_z: 0,
        force_separate_z: None,
    };
    Configuration {
        data_identifier: format!("{}_2d", s.plans_name),
        preprocessor_name: "DefaultPreprocessor".into(),
        batch_size,
        patch_size: props.patch_size,
        median_image_size_in_voxels: median_shape.to_vec(),
        spacing: spacing.to_vec(),
        normalization_schemes,
        use_mask_for_norm,
        resampling_fn_data: "resample_data_or_seg_to_shape".into(),
        resampling_fn_seg: "resample_data_or_seg_to_shape".into(),
        resampling_fn_data_kwargs: resampling(false, 3),
        resampling_fn_seg_kwargs: resampling(true, 1),
        resampling_fn_probabilities: "resample_data_or_seg_to_shape".into(),
        resampling_fn_probabilities_kwargs: resampling(false, 1),
        architecture: arch,
        batch_dice: true,
        extra: BTreeMap::new(),
    }
}

/// nnU-Net's reader class name for a file ending (written to the plans for nnU-Net).
fn reader_writer_name(ending: &str) -> &'static str {
    match FileFormat::from_ending(ending) {
        Some(FileFormat::Nifti) => "SimpleITKIO",
        // NOTE: nnU-Net's NaturalImage2DIO lists .png, .bmp and .tif; JPEG and .tiff
        // files planned here can be read by this crate but not by nnU-Net.
        _ => "NaturalImage2DIO",
    }
}

/// Plans the experiment: the `2d` configuration of nnU-Net's default planner.
///
/// NOTE: for 3D datasets nnU-Net also writes `3d_fullres` (and maybe `3d_lowres`); this
/// planner writes only `2d`, the configuration Swin-UMamba trains.
pub fn plan_experiment(
    dataset_name: &str,
    json: &DatasetJson,
    fp: &Fingerprint,
    s: &PlannerSettings,
) -> Plans {
    let target = fullres_target_spacing(fp, s);
    let axis = argmax(&target);
    let mut transpose_forward = vec![axis];
    transpose_forward.extend((0..3).filter(|&a| a != axis));
    let transpose_backward: Vec<usize> = (0..3)
        .map(|i| {
            transpose_forward
                .iter()
                .position(|&t| t == i)
                .expect("permutation")
        })
        .collect();
    let new_shapes: Vec<Vec<f64>> = fp
        .spacings
        .iter()
        .zip(&fp.shapes_after_crop)
        .map(|(sp, sh)| {
            compute_new_shape(sh, sp, &target)
                .into_iter()
                .map(|x| x as f64)
                .collect()
        })
        .collect();
    let median_of = |rows: &[Vec<f64>], a: usize| super::fingerprint::median(&mut column(rows, a));
    let new_median: Vec<f64> = transpose_forward
        .iter()
        .map(|&a| median_of(&new_shapes, a))
        .collect();
    let spacing_t: Vec<f64> = transpose_forward.iter().map(|&a| target[a]).collect();
    let approximate_n_voxels = new_median.iter().product::<f64>() * json.num_training as f64;
    let config = plan_2d(
        &spacing_t[1..],
        &new_median[1..],
        approximate_n_voxels,
        json,
        fp,
        s,
    );
    let shapes: Vec<Vec<f64>> = fp
        .shapes_after_crop
        .iter()
        .map(|r| r.iter().map(|&x| x as f64).collect())
        .collect();
    let mut plans = Plans {
        dataset_name: dataset_name.into(),
        plans_name: s.plans_name.clone(),
        original_median_spacing_after_transp: transpose_forward
            .iter()
            .map(|&a| median_of(&fp.spacings, a))
            .collect(),
        original_median_shape_after_transp: transpose_forward
            .iter()
            .map(|&a| median_of(&shapes, a).round_ties_even() as i64)
            .collect(),
        image_reader_writer: reader_writer_name(&json.file_ending).into(),
        transpose_forward,
        transpose_backward,
        configurations: BTreeMap::new(),
        experiment_planner_used: "ExperimentPlanner".into(),
        label_manager: "LabelManager".into(),
        foreground_intensity_properties_per_channel: fp
            .foreground_intensity_properties_per_channel
            .clone(),
        extra: BTreeMap::new(),
    };
    plans.set_configuration("2d", &config);
    plans
}
