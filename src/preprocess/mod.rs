//! Preprocessing as nnU-Net v2's `DefaultPreprocessor`: transpose, crop to the nonzero
//! region, normalise, resample to the configuration's spacing, sample foreground
//! locations per class, and store each case as described in docs/preprocessed-format.md.

pub mod cli;
pub mod crop;
mod locations;
pub mod normalize;
pub mod npy;
pub mod random;
pub mod resample;
mod run;
pub mod splits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use locations::{
    sample_foreground_locations, FOREGROUND_SAMPLING_SEED, MAX_SAMPLES_PER_CLASS,
    MIN_PERCENT_COVERAGE,
};
pub use run::{preprocess_dataset, PreprocessSummary};
pub use splits::{generate_crossval_split, load_or_create_splits, Fold};

use crate::dataset::{DatasetJson, Geometry, Image};
use crate::plan::{compute_new_shape, Configuration, Plans};

/// Errors of preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
}

impl PreprocessError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PreprocessError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Per-case properties (`<case>.json`), nnU-Net's keys. Shapes are (Z, Y, X) after the
/// plans' transpose; `spacing` is the raw spacing after the transpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseProperties {
    pub spacing: Vec<f64>,
    pub shape_before_cropping: Vec<usize>,
    pub bbox_used_for_cropping: Vec<[usize; 2]>,
    pub shape_after_cropping_and_before_resampling: Vec<usize>,
    /// Foreground voxels per class as [c, z, y, x]; keys are the label values.
    #[serde(default)]
    pub class_locations: BTreeMap<String, Vec<[usize; 4]>>,
    /// Voxel-to-world affine of the raw image (NIfTI only), for writing predictions back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<[[f64; 4]; 4]>,
}

/// A preprocessed case in memory.
#[derive(Debug, Clone)]
pub struct PreprocessedCase {
    /// `channels × shape`, float32, C order.
    pub data: Vec<f32>,
    pub channels: usize,
    /// Labels, -1 outside the nonzero region; all 0/-1 for an image without label.
    pub seg: Vec<i16>,
    /// (Z, Y, X) after resampling.
    pub shape: [usize; 3],
    pub properties: CaseProperties,
}

fn transpose_volume<T: Copy>(
    data: &[T],
    channels: usize,
    shape: [usize; 3],
    axes: &[usize],
) -> (Vec<T>, [usize; 3]) {
    let new_shape = [shape[axes[0]], shape[axes[1]], shape[axes[2]]];
    if axes == [0, 1, 2] {
        return (data.to_vec(), shape);
    }
    let strides = [shape[1] * shape[2], shape[2], 1];
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(data.len());
    for c in 0..channels {
        for a in 0..new_shape[0] {
            for b in 0..new_shape[1] {
                for d in 0..new_shape[2] {
                    let idx = a * strides[axes[0]] + b * strides[axes[1]] + d * strides[axes[2]];
                    out.push(data[c * n + idx]);
                }
            }
        }
    }
    (out, new_shape)
}

/// Preprocesses one raw image (and its label, if given) with the plans' configuration,
/// exactly as the training data was preprocessed. Prediction uses this on unlabelled
/// images and [`revert_to_raw_geometry`] to map outputs back.
pub fn preprocess_case(
    image: &Image,
    label: Option<&Image>,
    plans: &Plans,
    config: &Configuration,
    json: &DatasetJson,
) -> Result<PreprocessedCase, String> {
    let axes = &plans.transpose_forward;
    let (data, shape) = transpose_volume(&image.data, image.channels, image.shape, axes);
    let label_data = label.map(|l| transpose_volume(&l.data, 1, l.shape, axes).0);
    let spacing: Vec<f64> = axes.iter().map(|&a| image.geometry.spacing[a]).collect();
    let cropped = crop::crop_to_nonzero(&data, image.channels, shape, label_data.as_deref());
    let mut data = cropped.data;
    let n: usize = cropped.shape.iter().product();
    for c in 0..image.channels {
        let props = plans
            .foreground_intensity_properties_per_channel
            .get(&c.to_string());
        normalize::normalize_channel(
            &mut data[c * n..(c + 1) * n],
            &cropped.seg,
            &config.normalization_schemes[c],
            config.use_mask_for_norm[c],
            props,
        )?;
    }
    let target_spacing = full_target_spacing(&config.spacing, &spacing);
    let ns = compute_new_shape(&cropped.shape, &spacing, &target_spacing);
    let new_shape = [ns[0], ns[1], ns[2]];
    let (data, seg) = if new_shape == cropped.shape {
        (data, cropped.seg)
    } else {
        (
            resample::resample_image(&data, image.channels, cropped.shape, new_shape, &spacing),
            resample::resize_segmentation(&cropped.seg, cropped.shape, new_shape),
        )
    };
    let class_locations = if label.is_some() {
        // NOTE: nnU-Net samples regions (not single labels) for region-based datasets and
        // adds a region of all labels when an ignore label exists; both are not sampled here.
        let classes: Vec<i64> = json.foreground_labels();
        sample_foreground_locations(&seg, new_shape, &classes)
    } else {
        BTreeMap::new()
    };
    let properties = CaseProperties {
        spacing,
        shape_before_cropping: shape.to_vec(),
        bbox_used_for_cropping: cropped.bbox.to_vec(),
        shape_after_cropping_and_before_resampling: cropped.shape.to_vec(),
        class_locations,
        affine: image.geometry.affine,
    };
    Ok(PreprocessedCase {
        data,
        channels: image.channels,
        seg,
        shape: new_shape,
        properties,
    })
}

/// Extends a 2d configuration's two-axis spacing with the raw z spacing, which 2d keeps.
fn full_target_spacing(config_spacing: &[f64], raw_spacing: &[f64]) -> Vec<f64> {
    if config_spacing.len() < raw_spacing.len() {
        let mut full = vec![raw_spacing[0]];
        full.extend_from_slice(config_spacing);
        full
    } else {
        config_spacing.to_vec()
    }
}

/// Maps per-voxel values (`channels × preprocessed shape`, e.g. class probabilities or a
/// label map as f32) back to the raw image grid: resample to the cropped shape, paste into
/// the box (`fill` elsewhere), and undo the transpose. Returns `channels × raw shape`.
pub fn revert_to_raw_geometry(
    values: &[f32],
    channels: usize,
    shape: [usize; 3],
    properties: &CaseProperties,
    plans: &Plans,
    fill: f32,
) -> (Vec<f32>, [usize; 3]) {
    let s = &properties.shape_after_cropping_and_before_resampling;
    let cropped_shape = [s[0], s[1], s[2]];
    let resized = if cropped_shape == shape {
        values.to_vec()
    } else {
        resample::resize_linear(values, channels, shape, cropped_shape)
    };
    let b = &properties.shape_before_cropping;
    let full_shape = [b[0], b[1], b[2]];
    let n_full: usize = full_shape.iter().product();
    let n_crop: usize = cropped_shape.iter().product();
    let bbox = &properties.bbox_used_for_cropping;
    let mut full = vec![fill; channels * n_full];
    for c in 0..channels {
        for z in 0..cropped_shape[0] {
            for y in 0..cropped_shape[1] {
                let src = c * n_crop + (z * cropped_shape[1] + y) * cropped_shape[2];
                let dst = c * n_full
                    + ((z + bbox[0][0]) * full_shape[1] + y + bbox[1][0]) * full_shape[2]
                    + bbox[2][0];
                full[dst..dst + cropped_shape[2]]
                    .copy_from_slice(&resized[src..src + cropped_shape[2]]);
            }
        }
    }
    let (raw, raw_shape) = transpose_volume(&full, channels, full_shape, &plans.transpose_backward);
    (raw, raw_shape)
}

/// Writes a case as `<case>.npy`, `<case>_seg.npy` and `<case>.json` in `folder`, each
/// through a temporary name. The properties file is written last and marks the case done.
pub fn write_case(folder: &Path, id: &str, case: &PreprocessedCase) -> Result<(), PreprocessError> {
    let [z, y, x] = case.shape;
    let data_path = folder.join(format!("{id}.npy"));
    npy::write_npy(&data_path, &case.data, &[case.channels, z, y, x])
        .map_err(|e| PreprocessError::io(&data_path, e))?;
    let seg_path = folder.join(format!("{id}_seg.npy"));
    let max = case.seg.iter().copied().max().unwrap_or(0);
    let written = if max > i8::MAX as i16 {
        npy::write_npy(&seg_path, &case.seg, &[1, z, y, x])
    } else {
        let narrow: Vec<i8> = case.seg.iter().map(|&v| v as i8).collect();
        npy::write_npy(&seg_path, &narrow, &[1, z, y, x])
    };
    written.map_err(|e| PreprocessError::io(&seg_path, e))?;
    let props_path = folder.join(format!("{id}.json"));
    crate::dataset::write_atomic(
        &props_path,
        serde_json::to_string(&case.properties)
            .expect("serialises")
            .as_bytes(),
    )?;
    Ok(())
}

/// Geometry helper for callers that build an [`Image`] themselves.
pub fn natural_geometry() -> Geometry {
    Geometry {
        spacing: [crate::dataset::io::NATURAL_IMAGE_Z_SPACING, 1.0, 1.0],
        affine: None,
    }
}
