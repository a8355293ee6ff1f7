//! Setting up a training run on a preprocessed dataset: the plan values, the fold's cases,
//! the network built from the plan, and the starting weights of `--pretrained`.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use super::checkpoint;
use super::data::TrainPlan;
use super::error::TrainError;
use super::loader::{CaseFolder, LoaderPlanConfig};
use super::nets_adapter::TrainableModel;
use super::network::SegmentationNetwork;
use crate::dataset::DatasetJson;
use crate::nets::plain_unet::PlainUNetConfig;
use crate::nets::umamba::UMambaConfig;
use crate::nets::{ModelConfig, ModelName};
use crate::plan::{Configuration, Plans};
use crate::preprocess::splits::Fold;
use crate::weights::vmamba::{load_vmamba_imagenet_file, VmambaTarget};

/// Plans file name inside a preprocessed dataset folder.
pub const PLANS_FILE: &str = "nnUNetPlans.json";
/// Split file name inside a preprocessed dataset folder (nnU-Net's name).
pub const SPLITS_FILE: &str = "splits_final.json";

fn input_error(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Input {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The plan, fold and label values a run reads from a preprocessed dataset folder.
#[derive(Debug, Clone)]
pub struct DatasetSetup {
    /// The `DatasetXXX_Name` folder under `nnUNet_preprocessed`.
    pub folder: PathBuf,
    /// The plan's configuration.
    pub configuration: Configuration,
    /// The loader's view of the configuration.
    pub loader_plan: LoaderPlanConfig,
    /// The plan values the trainer uses.
    pub train_plan: TrainPlan,
}

impl DatasetSetup {
    /// Reads `nnUNetPlans.json` and `dataset.json` of `folder` for `configuration`.
    pub fn read(folder: &Path, configuration: &str) -> Result<Self, TrainError> {
        let plans_path = folder.join(PLANS_FILE);
        let plans =
            Plans::load(&plans_path).map_err(|e| input_error(&plans_path, e.to_string()))?;
        let config = plans
            .configuration(configuration)
            .map_err(|e| input_error(&plans_path, e.to_string()))?;
        let loader_plan = LoaderPlanConfig::from_plans_file(&plans_path, configuration)
            .map_err(|e| input_error(&plans_path, e.to_string()))?;

        let json_path = folder.join("dataset.json");
        let dataset =
            DatasetJson::load(&json_path).map_err(|e| input_error(&json_path, e.to_string()))?;
        if dataset.has_regions() {
            return Err(input_error(
                &json_path,
                "labels define regions, which the trainer does not support yet; use one \
                 integer value per label",
            ));
        }
        let patch_size = match config.patch_size.as_slice() {
            [y, x] => [*y, *x],
            other => {
                return Err(input_error(
                    &plans_path,
                    format!("patch_size {other:?} of configuration {configuration} is not 2D"),
                ))
            }
        };
        let train_plan = TrainPlan {
            patch_size,
            batch_size: config.batch_size as i64,
            num_input_channels: dataset.num_channels() as i64,
            num_classes: dataset.foreground_labels().len() as i64 + 1,
            ignore_label: dataset.ignore_label(),
            batch_dice: config.batch_dice,
        };
        Ok(DatasetSetup {
            folder: folder.to_path_buf(),
            configuration: config,
            loader_plan,
            train_plan,
        })
    }

    /// The folder of the preprocessed cases.
    pub fn cases_folder(&self) -> PathBuf {
        self.folder.join(&self.loader_plan.data_identifier)
    }

    /// Returns the training and validation case names of `fold` (`0`..`4` from
    /// `splits_final.json`, or `all` for every case on both sides).
    pub fn fold_cases(&self, fold: &str) -> Result<(Vec<String>, Vec<String>), TrainError> {
        let cases_folder = self.cases_folder();
        if fold == "all" {
            let names = CaseFolder::case_names(&cases_folder)
                .map_err(|e| input_error(&cases_folder, e.to_string()))?;
            return Ok((names.clone(), names));
        }
        let splits_path = self.folder.join(SPLITS_FILE);
        let text = std::fs::read_to_string(&splits_path).map_err(|e| {
            input_error(
                &splits_path,
                format!("{e}; run `swin-umamba preprocess` to create the folds"),
            )
        })?;
        let folds: Vec<Fold> = serde_json::from_str(&text)
            .map_err(|e| input_error(&splits_path, format!("invalid splits file: {e}")))?;
        let index: usize = fold.parse().map_err(|_| TrainError::Config {
            name: "--fold",
            value: fold.to_string(),
            reason: format!("use a number below {} or `all`", folds.len()),
        })?;
        let Some(chosen) = folds.get(index) else {
            return Err(TrainError::Config {
                name: "--fold",
                value: fold.to_string(),
                reason: format!("{} lists {} folds", splits_path.display(), folds.len()),
            });
        };
        if chosen.train.is_empty() || chosen.val.is_empty() {
            return Err(input_error(
                &splits_path,
                format!("fold {index} has an empty training or validation list"),
            ));
        }
        Ok((chosen.train.clone(), chosen.val.clone()))
    }

    /// Returns the configuration of `model`: nnU-Net's `PlainConvUNet` and U-Mamba from the
    /// plan's architecture block, the Swin-UMamba networks from `config_file` when given,
    /// else from their official defaults.
    pub fn model_config(
        &self,
        model: ModelName,
        config_file: Option<&Path>,
    ) -> Result<ModelConfig, TrainError> {
        if let Some(path) = config_file {
            return model
                .read_config(path)
                .map_err(|e| input_error(path, e.to_string()));
        }
        match model {
            ModelName::Nnunet => Ok(ModelConfig::PlainUNet(self.plain_unet_config()?)),
            ModelName::UmambaBot | ModelName::UmambaEnc => Ok(ModelConfig::UMamba(UMambaConfig {
                plan: self.plain_unet_config()?,
            })),
            other => Ok(other.default_config()),
        }
    }

    fn plain_unet_config(&self) -> Result<PlainUNetConfig, TrainError> {
        let arch = &self.configuration.architecture.arch_kwargs;
        let plans_path = self.folder.join(PLANS_FILE);
        let square = |what: &str, values: &[Vec<i64>]| -> Result<Vec<i64>, TrainError> {
            values
                .iter()
                .map(|v| match v.as_slice() {
                    [a, b] if a == b => Ok(*a),
                    other => Err(input_error(
                        &plans_path,
                        format!(
                            "architecture {what} {other:?}: the 2D networks take equal values \
                             on both axes; plan a square patch (plan --override)"
                        ),
                    )),
                })
                .collect()
        };
        Ok(PlainUNetConfig {
            features_per_stage: arch.features_per_stage.clone(),
            kernel_sizes: square("kernel_sizes", &arch.kernel_sizes)?,
            strides: square("strides", &arch.strides)?,
            n_conv_per_stage: arch.n_conv_per_stage.clone(),
            n_conv_per_stage_decoder: arch.n_conv_per_stage_decoder.clone(),
            conv_bias: arch.conv_bias,
        })
    }
}

/// Builds `model` for the plan and wraps it for the trainer.
pub fn build_network(
    model: ModelName,
    config: &ModelConfig,
    plan: &TrainPlan,
    device: Device,
) -> Result<TrainableModel, TrainError> {
    let net = crate::nets::build(
        model,
        config,
        plan.num_input_channels,
        plan.num_classes,
        (plan.patch_size[0], plan.patch_size[1]),
        device,
    )
    .map_err(|e| TrainError::Config {
        name: "--model",
        value: model.to_string(),
        reason: e.to_string(),
    })?;
    TrainableModel::new(net, plan.patch_size)
}

/// The kind of file given to `--pretrained`, found from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretrainedKind {
    /// An ImageNet VMamba v0 checkpoint: a `.pth` with a `model` dict, or a safetensors file
    /// whose keys are VMamba's (`patch_embed.proj.weight` at the top level).
    Vmamba,
    /// A checkpoint sidecar (`.json`) written by `train-fold`.
    RunCheckpoint,
    /// A state dict of the whole network under its own (official) names.
    NetworkStateDict,
}

/// The VMamba key that marks an ImageNet checkpoint; segmentation networks nest it under
/// `vssm_encoder.`.
const VMAMBA_MARKER_KEY: &str = "patch_embed.proj.weight";

/// Finds what kind of weights file `path` is.
pub fn detect_pretrained(path: &Path) -> Result<PretrainedKind, TrainError> {
    if !path.is_file() {
        return Err(TrainError::Config {
            name: "--pretrained",
            value: path.display().to_string(),
            reason: "no such file; give the path of a VMamba v0 checkpoint (the official \
                     vmamba_tiny_e292.pth, or one from `swin-umamba pretrain`), or train \
                     from scratch without --pretrained"
                .into(),
        });
    }
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        checkpoint::read_state(path)?;
        return Ok(PretrainedKind::RunCheckpoint);
    }
    let weights_error = |e: crate::weights::WeightsError| input_error(path, e.to_string());
    if crate::weights::is_safetensors(path).map_err(weights_error)? {
        let (tensors, _) = crate::weights::read_safetensors(path).map_err(weights_error)?;
        return Ok(if tensors.contains_key(VMAMBA_MARKER_KEY) {
            PretrainedKind::Vmamba
        } else {
            PretrainedKind::NetworkStateDict
        });
    }
    let file = crate::weights::read_pth(path).map_err(|e| {
        input_error(
            path,
            format!(
                "{e}; --pretrained takes a VMamba v0 .pth or .safetensors checkpoint, a \
                 network state dict, or a checkpoint sidecar (.json) of train-fold"
            ),
        )
    })?;
    if file.root.get("model").is_some() {
        return Ok(PretrainedKind::Vmamba);
    }
    if file.root.get("network_weights").is_some() || file.root.get("state_dict").is_some() {
        return Ok(PretrainedKind::NetworkStateDict);
    }
    Err(input_error(
        path,
        "the .pth file has neither a `model` dict (VMamba v0 ImageNet checkpoint) nor \
         `network_weights`/`state_dict` (a segmentation network); pass one of those or a \
         checkpoint sidecar (.json) of train-fold",
    ))
}

/// Loads `path` into `net` and returns the lines of the load report for the training log.
///
/// VMamba checkpoints go through the official loader of the model (`SwinUMamba`, v1 or
/// Swin-UMamba†), which fills only the encoder. Checkpoints of train-fold and network state
/// dicts must match every parameter.
pub fn load_pretrained(
    net: &mut TrainableModel,
    model: ModelName,
    path: &Path,
) -> Result<Vec<String>, TrainError> {
    let kind = detect_pretrained(path)?;
    let mut lines = vec![format!("pretrained {} read as {kind:?}", path.display())];
    match kind {
        PretrainedKind::Vmamba => {
            let target = match model {
                ModelName::SwinUMamba => VmambaTarget::SwinUMamba,
                ModelName::SwinUMambaV1 => VmambaTarget::SwinUMambaV1,
                ModelName::SwinUMambaD => VmambaTarget::SwinUMambaD {
                    num_input_channels: net.model().in_channels,
                },
                other => {
                    return Err(TrainError::Config {
                        name: "--pretrained",
                        value: path.display().to_string(),
                        reason: format!(
                            "a VMamba ImageNet checkpoint fits only the Swin-UMamba encoders, \
                             not --model {other}; use --model swin-umamba, swin-umamba-v1 or \
                             swin-umamba-d"
                        ),
                    })
                }
            };
            let report = load_vmamba_imagenet_file(path, net.var_store_mut(), target)
                .map_err(|e| input_error(path, e.to_string()))?;
            lines.extend(report.to_string().lines().map(str::to_string));
        }
        PretrainedKind::RunCheckpoint => {
            let loaded = checkpoint::load(path)?;
            let report = checkpoint::load_weights(net.var_store(), &loaded.weights, true, path)?;
            lines.push(format!(
                "loaded all {} tensors of the checkpoint strictly",
                report.loaded.len()
            ));
        }
        PretrainedKind::NetworkStateDict => {
            let tensors = crate::weights::read_state_dict(path)
                .map_err(|e| input_error(path, e.to_string()))?;
            let tensors: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
            net.model()
                .load_state_dict(&tensors, &path.display().to_string())
                .map_err(|e| input_error(path, e.to_string()))?;
            lines.push(format!(
                "loaded the network state dict strictly ({} tensors)",
                tensors.len()
            ));
        }
    }
    Ok(lines)
}
