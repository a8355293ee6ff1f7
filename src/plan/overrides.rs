//! Plan overrides from YAML files in `plans/`, for settings a paper fixes by hand (for
//! example Swin-UMamba's 384×640 endoscopy patch).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::planner::{batch_size_for, plain_conv_unet, PlannerSettings};
use super::topology::get_pool_and_conv_props;
use super::{PlanError, Plans};
use crate::dataset::DatasetJson;

/// An override of one configuration. Unset fields keep the planned values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOverride {
    /// Configuration to start from (default "2d").
    #[serde(default = "default_base")]
    pub base: String,
    /// Name to store the result under; the base is replaced when equal to it.
    pub name: Option<String>,
    /// Patch size (y, x); the topology is recomputed for it, and so is the batch size
    /// unless `batch_size` is set.
    pub patch_size: Option<Vec<i64>>,
    pub batch_size: Option<usize>,
    /// Free text saying where the values come from.
    #[serde(default)]
    pub source: String,
}

fn default_base() -> String {
    "2d".into()
}

impl PlanOverride {
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
            path: path.into(),
            source: e,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|e| PlanError::Override {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Applies the override to `plans`; `path` names the file in errors.
    pub fn apply(
        &self,
        plans: &mut Plans,
        json: &DatasetJson,
        path: &Path,
    ) -> Result<(), PlanError> {
        let mut config = plans.configuration(&self.base)?;
        let settings = PlannerSettings::default();
        if let Some(patch) = &self.patch_size {
            if patch.len() != config.spacing.len() {
                return Err(PlanError::Override {
                    path: path.into(),
                    message: format!(
                        "patch_size {patch:?} has {} axes, the configuration {} has {}",
                        patch.len(),
                        self.base,
                        config.spacing.len()
                    ),
                });
            }
            let as_f64: Vec<f64> = patch.iter().map(|&p| p as f64).collect();
            let props = get_pool_and_conv_props(
                &config.spacing,
                &as_f64,
                settings.featuremap_min_edge_length,
                999_999,
            );
            if &props.patch_size != patch {
                return Err(PlanError::Override {
                    path: path.into(),
                    message: format!(
                        "patch_size {patch:?} is not divisible by {:?}, the downsampling of its \
                         topology; use {:?}",
                        props.must_be_divisible_by, props.patch_size
                    ),
                });
            }
            config.architecture = plain_conv_unet(
                props.conv_kernel_sizes,
                props.pool_op_kernel_sizes,
                &settings,
            );
            config.patch_size = props.patch_size;
            let num_classes = json.labels.len() as i64;
            // NOTE: the planner caps the batch at 5% of the voxels after resampling; the
            // plans keep only the median shape before resampling, used here instead.
            let median_voxels: f64 = plans
                .original_median_shape_after_transp
                .iter()
                .map(|&v| v as f64)
                .product();
            let voxels = median_voxels * json.num_training as f64;
            config.batch_size = batch_size_for(
                &config.patch_size,
                &config.architecture.arch_kwargs,
                num_classes,
                voxels,
                &settings,
            );
        }
        if let Some(bs) = self.batch_size {
            config.batch_size = bs;
        }
        let name = self.name.clone().unwrap_or_else(|| self.base.clone());
        plans.set_configuration(&name, &config);
        Ok(())
    }
}
