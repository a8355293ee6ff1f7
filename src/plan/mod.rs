//! The dataset fingerprint and nnU-Net v2's default experiment planner (2d configuration),
//! with plans files in nnU-Net's JSON structure so either tool reads the other's plans.

pub mod cli;
mod fingerprint;
mod overrides;
mod planner;
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use fingerprint::{
    extract_fingerprint, Fingerprint, IntensityProperties, FOREGROUND_SAMPLES_TOTAL,
};
pub use overrides::PlanOverride;
pub use planner::{compute_new_shape, normalization_scheme, plan_experiment, PlannerSettings};
pub use topology::{estimate_feature_map_size, get_pool_and_conv_props, PoolConvProps};

/// Errors of the planner and of reading or writing plans files.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid plans or fingerprint JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("plans have no configuration {name:?}; available: {available:?}")]
    NoConfiguration {
        name: String,
        available: Vec<String>,
    },
    #[error("{path}: invalid plan override: {message}")]
    Override { path: PathBuf, message: String },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
}

/// Keyword arguments of nnU-Net's resampling functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResamplingKwargs {
    pub is_seg: bool,
    /// Spline order in the image plane (3 for images, 1 for one-hot labels).
    pub order: u32,
    /// Order along an anisotropic axis resampled separately (0 = nearest).
    pub order_z: u32,
    /// None: decide from the spacing (separate when max/min spacing > 3).
    pub force_separate_z: Option<bool>,
}

/// Keyword arguments of the network class (nnU-Net's `arch_kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchKwargs {
    pub n_stages: usize,
    pub features_per_stage: Vec<i64>,
    pub conv_op: String,
    pub kernel_sizes: Vec<Vec<i64>>,
    pub strides: Vec<Vec<i64>>,
    pub n_conv_per_stage: Vec<i64>,
    pub n_conv_per_stage_decoder: Vec<i64>,
    pub conv_bias: bool,
    pub norm_op: String,
    pub norm_op_kwargs: Value,
    pub dropout_op: Option<String>,
    pub dropout_op_kwargs: Option<Value>,
    pub nonlin: String,
    pub nonlin_kwargs: Value,
    /// Other keys (e.g. of residual-encoder planners), kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Network class and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub network_class_name: String,
    pub arch_kwargs: ArchKwargs,
    #[serde(rename = "_kw_requires_import")]
    pub kw_requires_import: Vec<String>,
}

/// One configuration of the plans (`2d`, `3d_fullres`, ...), nnU-Net's keys. Spacing,
/// patch size and shapes are in the transposed axis order (`transpose_forward`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub data_identifier: String,
    pub preprocessor_name: String,
    pub batch_size: usize,
    pub patch_size: Vec<i64>,
    pub median_image_size_in_voxels: Vec<f64>,
    pub spacing: Vec<f64>,
    pub normalization_schemes: Vec<String>,
    pub use_mask_for_norm: Vec<bool>,
    pub resampling_fn_data: String,
    pub resampling_fn_seg: String,
    pub resampling_fn_data_kwargs: ResamplingKwargs,
    pub resampling_fn_seg_kwargs: ResamplingKwargs,
    pub resampling_fn_probabilities: String,
    pub resampling_fn_probabilities_kwargs: ResamplingKwargs,
    pub architecture: Architecture,
    pub batch_dice: bool,
    /// Other keys nnU-Net or an override may add, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Configuration {
    pub fn n_stages(&self) -> usize {
        self.architecture.arch_kwargs.n_stages
    }
    pub fn features_per_stage(&self) -> &[i64] {
        &self.architecture.arch_kwargs.features_per_stage
    }
    pub fn kernel_sizes(&self) -> &[Vec<i64>] {
        &self.architecture.arch_kwargs.kernel_sizes
    }
    pub fn strides(&self) -> &[Vec<i64>] {
        &self.architecture.arch_kwargs.strides
    }
    pub fn n_conv_per_stage(&self) -> &[i64] {
        &self.architecture.arch_kwargs.n_conv_per_stage
    }
    pub fn n_conv_per_stage_decoder(&self) -> &[i64] {
        &self.architecture.arch_kwargs.n_conv_per_stage_decoder
    }
}

/// `nnUNetPlans.json`. Configurations are kept as JSON so that entries such as
/// `3d_cascade_fullres` (which only name a parent through `inherits_from`) survive a
/// round trip; [`Plans::configuration`] resolves and types one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plans {
    pub dataset_name: String,
    pub plans_name: String,
    pub original_median_spacing_after_transp: Vec<f64>,
    pub original_median_shape_after_transp: Vec<i64>,
    pub image_reader_writer: String,
    pub transpose_forward: Vec<usize>,
    pub transpose_backward: Vec<usize>,
    pub configurations: BTreeMap<String, Value>,
    pub experiment_planner_used: String,
    pub label_manager: String,
    pub foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Plans {
    /// Reads a plans file written by this crate or by nnU-Net v2.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
            path: path.into(),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| PlanError::Json {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Writes the plans through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        let text = to_json_pretty(self);
        crate::dataset::write_atomic(path, text.as_bytes())?;
        Ok(())
    }

    /// Returns a configuration by name, with `inherits_from` resolved.
    pub fn configuration(&self, name: &str) -> Result<Configuration, PlanError> {
        let resolved = self.resolve(name, 0)?;
        serde_json::from_value(Value::Object(resolved)).map_err(|e| PlanError::Json {
            path: PathBuf::from(format!("configuration {name}")),
            message: e.to_string(),
        })
    }

    fn resolve(
        &self,
        name: &str,
        depth: usize,
    ) -> Result<serde_json::Map<String, Value>, PlanError> {
        let missing = || PlanError::NoConfiguration {
            name: name.into(),
            available: self.configurations.keys().cloned().collect(),
        };
        let Some(Value::Object(config)) = self.configurations.get(name) else {
            return Err(missing());
        };
        let mut merged = match config.get("inherits_from").and_then(Value::as_str) {
            Some(parent) if depth < 8 => self.resolve(parent, depth + 1)?,
            _ => serde_json::Map::new(),
        };
        for (k, v) in config {
            if k != "inherits_from" {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged)
    }

    /// Stores a configuration under `name`.
    pub fn set_configuration(&mut self, name: &str, config: &Configuration) {
        let value = serde_json::to_value(config).expect("configuration serialises");
        self.configurations.insert(name.into(), value);
    }
}

/// JSON with 4-space indentation, as nnU-Net writes its files.
pub(crate) fn to_json_pretty<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).expect("value serialises");
    String::from_utf8(out).expect("JSON is UTF-8")
}
