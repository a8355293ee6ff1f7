//! The few plan values the loader needs, read from nnU-Net's `nnUNetPlans.json`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{io_error, LoaderError, Result};

/// The loader's view of one plan configuration: patch size, batch size and the pooling
/// strides that fix the deep-supervision scales.
///
/// NOTE: a stand-in until the planner's own plan type lands. It reads only the keys listed
/// here, so swapping it for the planner's type means mapping these four fields.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderPlanConfig {
    /// Network input patch, [Y, X].
    pub patch_size: [usize; 2],
    pub batch_size: usize,
    /// Pooling stride of every encoder stage, [Y, X] each, first stage included.
    pub strides: Vec<[usize; 2]>,
    /// Folder name of the preprocessed cases, e.g. `nnUNetPlans_2d`.
    pub data_identifier: String,
}

#[derive(Deserialize)]
struct RawConfiguration {
    patch_size: Vec<usize>,
    batch_size: usize,
    data_identifier: Option<String>,
    architecture: Option<RawArchitecture>,
    pool_op_kernel_sizes: Option<Vec<Vec<usize>>>,
}

#[derive(Deserialize)]
struct RawArchitecture {
    arch_kwargs: RawArchKwargs,
}

#[derive(Deserialize)]
struct RawArchKwargs {
    strides: Vec<Vec<usize>>,
}

impl LoaderPlanConfig {
    /// Reads `configuration` (normally `2d`) from a `nnUNetPlans.json` file.
    pub fn from_plans_file(path: &Path, configuration: &str) -> Result<LoaderPlanConfig> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let plans: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| LoaderError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let bad = |reason: String| LoaderError::Plan {
            path: PathBuf::from(path),
            reason,
        };

        let configs = plans
            .get("configurations")
            .and_then(|c| c.as_object())
            .ok_or_else(|| bad("no 'configurations' object; rerun `swin-umamba plan`".into()))?;
        let raw = configs.get(configuration).ok_or_else(|| {
            let names: Vec<&String> = configs.keys().collect();
            bad(format!(
                "no configuration {configuration:?}; the file has {names:?}"
            ))
        })?;
        let raw: RawConfiguration = serde_json::from_value(raw.clone())
            .map_err(|e| bad(format!("configuration {configuration:?}: {e}")))?;

        let patch_size = match raw.patch_size.as_slice() {
            [y, x] => [*y, *x],
            other => {
                return Err(bad(format!(
                    "configuration {configuration:?} has patch_size {other:?}; the 2D loader \
                     needs two entries [Y, X]"
                )))
            }
        };
        let strides_raw = raw
            .architecture
            .map(|a| a.arch_kwargs.strides)
            .or(raw.pool_op_kernel_sizes)
            .ok_or_else(|| {
                bad("neither architecture.arch_kwargs.strides nor pool_op_kernel_sizes".into())
            })?;
        let strides = strides_raw
            .iter()
            .map(|s| match s.as_slice() {
                [y, x] => Ok([*y, *x]),
                other => Err(bad(format!("stride {other:?} does not have two entries"))),
            })
            .collect::<Result<Vec<_>>>()?;
        if raw.batch_size == 0 {
            return Err(bad(format!(
                "configuration {configuration:?} has batch_size 0"
            )));
        }
        Ok(LoaderPlanConfig {
            patch_size,
            batch_size: raw.batch_size,
            strides,
            data_identifier: raw
                .data_identifier
                .unwrap_or_else(|| format!("nnUNetPlans_{configuration}")),
        })
    }

    /// Deep-supervision scales as nnU-Net's `_get_deep_supervision_scales`: the cumulative
    /// product of the strides, inverted, without the coarsest stage.
    pub fn deep_supervision_scales(&self) -> Vec<[f64; 2]> {
        let mut scales = Vec::with_capacity(self.strides.len());
        let mut product = [1usize, 1usize];
        for stride in &self.strides {
            product = [product[0] * stride[0], product[1] * stride[1]];
            scales.push([1.0 / product[0] as f64, 1.0 / product[1] as f64]);
        }
        scales.pop();
        scales
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strides_and_scales() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nnUNetPlans.json");
        let json = r#"{"configurations": {"2d": {"patch_size": [64, 96], "batch_size": 4,
            "data_identifier": "nnUNetPlans_2d",
            "architecture": {"arch_kwargs": {"strides": [[1, 1], [2, 2], [2, 1]]}}}}}"#;
        std::fs::write(&path, json).unwrap();
        let plan = LoaderPlanConfig::from_plans_file(&path, "2d").unwrap();
        assert_eq!(plan.patch_size, [64, 96]);
        assert_eq!(plan.batch_size, 4);
        assert_eq!(plan.deep_supervision_scales(), vec![[1.0, 1.0], [0.5, 0.5]]);

        let err = LoaderPlanConfig::from_plans_file(&path, "3d_fullres").unwrap_err();
        assert!(err.to_string().contains("\"2d\""), "{err}");
    }
}
