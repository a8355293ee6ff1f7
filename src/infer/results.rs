//! Results folders and the networks in them.
//!
//! A results folder has nnU-Net v2's layout,
//! `<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>/`, with `plans.json` and
//! `dataset.json` next to one `fold_<F>/` folder per fold. A fold's weights are either an
//! nnU-Net checkpoint (`<checkpoint>.pth`, written by nnU-Net and by the official
//! Swin-UMamba and U-Mamba code) or a checkpoint of this tool's `train-fold`
//! (`<checkpoint>.json` with its safetensors files).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::{Device, TchError, Tensor};

use super::{InferError, LogitsNetwork};
use crate::dataset::{find_dataset, DatasetJson};
use crate::nets::plain_unet::PlainUNetConfig;
use crate::nets::umamba::UMambaConfig;
use crate::nets::{self, ModelConfig, ModelName, SegmentationNet};
use crate::plan::{Configuration, Plans};
use crate::train::cli::SYNTHETIC_MODEL;
use crate::train::network::SegmentationNetwork;
use crate::train::synthetic::TinyUNet;

/// Mirroring axes used when a checkpoint does not list its own: both image axes, as
/// nnU-Net's 2d trainers allow (`configure_rotation_dummyDA_mirroring_and_inital_patch_size`).
pub const DEFAULT_MIRROR_AXES: [i64; 2] = [0, 1];

/// A trainer folder with its plans and dataset description.
#[derive(Debug, Clone)]
pub struct ResultsFolder {
    /// `<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>`.
    pub trainer_dir: PathBuf,
    pub plans: Plans,
    /// The configuration the networks were trained with (`2d`).
    pub configuration: Configuration,
    pub dataset_json: DatasetJson,
}

/// Returns the dataset folder in `results_root` for `dataset`: an id (`4`, `004`) or a
/// name as [`find_dataset`] accepts, or a folder named `Dataset<dataset>` exactly, which
/// is what `train-fold` creates.
pub fn find_results_dataset(results_root: &Path, dataset: &str) -> Result<PathBuf, InferError> {
    if let Ok(folder) = find_dataset(results_root, dataset) {
        return Ok(folder);
    }
    let literal = results_root.join(format!("Dataset{dataset}"));
    if literal.is_dir() {
        return Ok(literal);
    }
    Err(InferError::input(
        results_root,
        format!(
            "no dataset folder for -d {dataset}: expected DatasetXXX_Name (XXX the id) or \
             Dataset{dataset}; check -d and the results folder ($nnUNet_results)"
        ),
    ))
}

impl ResultsFolder {
    /// Opens `<dataset_dir>/<trainer>__<plans>__<configuration>` and reads its plans and
    /// dataset.json.
    pub fn open(
        dataset_dir: &Path,
        trainer: &str,
        plans_name: &str,
        configuration: &str,
    ) -> Result<Self, InferError> {
        let trainer_dir = dataset_dir.join(format!("{trainer}__{plans_name}__{configuration}"));
        Self::from_trainer_dir(&trainer_dir, configuration)
    }

    /// Opens a trainer folder directly and reads its plans and dataset.json.
    pub fn from_trainer_dir(trainer_dir: &Path, configuration: &str) -> Result<Self, InferError> {
        let trainer_dir = trainer_dir.to_path_buf();
        if !trainer_dir.is_dir() {
            return Err(InferError::input(
                &trainer_dir,
                "trainer folder not found; check --trainer, -p and -c against the folders in \
                 the dataset's results folder",
            ));
        }
        for file in ["plans.json", "dataset.json"] {
            if !trainer_dir.join(file).is_file() {
                return Err(InferError::input(
                    trainer_dir.join(file),
                    "missing; copy the file that training used into the trainer folder \
                     (nnU-Net's trainer and train-fold with a dataset write it there)",
                ));
            }
        }
        let plans = Plans::load(&trainer_dir.join("plans.json"))?;
        let configuration = plans.configuration(configuration)?;
        let dataset_json = DatasetJson::load(&trainer_dir.join("dataset.json"))?;
        if dataset_json.has_regions() {
            return Err(InferError::input(
                trainer_dir.join("dataset.json"),
                "labels define regions; predict supports datasets with one value per label \
                 (region-based models need sigmoid outputs and regions_class_order)",
            ));
        }
        Ok(ResultsFolder {
            trainer_dir,
            plans,
            configuration,
            dataset_json,
        })
    }

    /// Tile size (H, W) of the configuration.
    pub fn patch_size(&self) -> Result<[i64; 2], InferError> {
        match self.configuration.patch_size[..] {
            [h, w] => Ok([h, w]),
            ref other => Err(InferError::input(
                self.trainer_dir.join("plans.json"),
                format!("patch_size {other:?} is not 2D; predict supports the 2d configuration"),
            )),
        }
    }

    /// Number of network outputs: background plus the foreground labels.
    pub fn num_classes(&self) -> i64 {
        self.dataset_json.foreground_labels().len() as i64 + 1
    }

    /// Loads the network of `fold` from its checkpoint `checkpoint` (a name without
    /// extension, e.g. `checkpoint_final`) onto `device`.
    pub fn load_fold(
        &self,
        fold: &str,
        checkpoint: &str,
        device: Device,
    ) -> Result<TrainedFold, InferError> {
        let fold_dir = self.trainer_dir.join(format!("fold_{fold}"));
        let pth = fold_dir.join(format!("{checkpoint}.pth"));
        let sidecar = fold_dir.join(format!("{checkpoint}.json"));
        if pth.is_file() {
            self.load_nnunet_fold(&pth, device)
        } else if sidecar.is_file() {
            self.load_own_fold(&sidecar, device)
        } else {
            Err(InferError::input(
                &fold_dir,
                format!(
                    "neither {checkpoint}.pth (nnU-Net) nor {checkpoint}.json (train-fold) \
                     exists; check -f and --checkpoint"
                ),
            ))
        }
    }

    fn load_nnunet_fold(&self, path: &Path, device: Device) -> Result<TrainedFold, InferError> {
        let checkpoint = crate::weights::nnunet::read_nnunet_checkpoint(path)?;
        let trainer = checkpoint.trainer_name.clone().unwrap_or_default();
        let name = model_for_trainer(&trainer).ok_or_else(|| {
            InferError::input(
                path,
                format!(
                    "trainer {trainer:?} has no known network; supported are nnUNetTrainer*, \
                     nnUNetTrainerUMambaBot*, nnUNetTrainerUMambaEnc* and \
                     nnUNetTrainerSwinUMamba*"
                ),
            )
        })?;
        let model = self.build_model(name, device, path)?;
        let weights: HashMap<String, Tensor> = checkpoint.network_weights.into_iter().collect();
        model
            .load_state_dict(&weights, &path.display().to_string())
            .map_err(|source| InferError::Nets {
                path: path.to_path_buf(),
                source,
            })?;
        let mirror_axes = checkpoint
            .inference_allowed_mirroring_axes
            .unwrap_or_else(|| DEFAULT_MIRROR_AXES.to_vec());
        Ok(TrainedFold {
            network: FoldNetwork::Model(Box::new(model)),
            mirror_axes,
            checkpoint: path.to_path_buf(),
        })
    }

    fn load_own_fold(&self, sidecar: &Path, device: Device) -> Result<TrainedFold, InferError> {
        let loaded = crate::train::checkpoint::load(sidecar)?;
        let model_name = loaded.state.run.model.clone();
        let network = if model_name == SYNTHETIC_MODEL {
            let plan = &loaded.state.plan;
            let mut net = TinyUNet::new(plan.num_input_channels, plan.num_classes, device);
            crate::train::checkpoint::load_weights(
                net.var_store(),
                &loaded.weights,
                true,
                sidecar,
            )?;
            net.set_deep_supervision(false);
            FoldNetwork::Tiny(Box::new(net))
        } else {
            let name = ModelName::from_str(&model_name).map_err(|source| InferError::Nets {
                path: sidecar.to_path_buf(),
                source,
            })?;
            // train-fold writes the network's resolved configuration next to its
            // checkpoints; without it the network is built as `build_model` does.
            let config_file = sidecar.with_file_name("model_config.yaml");
            let model = if config_file.is_file() {
                let config = name
                    .read_config(&config_file)
                    .map_err(|source| InferError::Nets {
                        path: config_file.clone(),
                        source,
                    })?;
                self.build_model_with(name, &config, device, sidecar)?
            } else {
                self.build_model(name, device, sidecar)?
            };
            crate::train::checkpoint::load_weights(
                model.var_store(),
                &loaded.weights,
                true,
                sidecar,
            )?;
            FoldNetwork::Model(Box::new(model))
        };
        Ok(TrainedFold {
            network,
            mirror_axes: DEFAULT_MIRROR_AXES.to_vec(),
            checkpoint: sidecar.to_path_buf(),
        })
    }

    /// Builds `name` for this dataset. PlainConvUNet and U-Mamba take their stages from
    /// the plans' architecture, Swin-UMamba uses its official configuration.
    fn build_model(
        &self,
        name: ModelName,
        device: Device,
        source: &Path,
    ) -> Result<nets::Model, InferError> {
        let config = match name {
            ModelName::Nnunet => ModelConfig::PlainUNet(self.plain_unet_config()?),
            ModelName::UmambaBot | ModelName::UmambaEnc => ModelConfig::UMamba(UMambaConfig {
                plan: self.plain_unet_config()?,
            }),
            other => other.default_config(),
        };
        self.build_model_with(name, &config, device, source)
    }

    /// Builds `name` with an explicit configuration for this dataset's channels, classes
    /// and patch size.
    fn build_model_with(
        &self,
        name: ModelName,
        config: &ModelConfig,
        device: Device,
        source: &Path,
    ) -> Result<nets::Model, InferError> {
        let patch = self.patch_size()?;
        nets::build(
            name,
            config,
            self.dataset_json.num_channels() as i64,
            self.num_classes(),
            (patch[0], patch[1]),
            device,
        )
        .map_err(|error| InferError::Nets {
            path: source.to_path_buf(),
            source: error,
        })
    }

    /// Returns the plans' U-Net topology. Kernels and strides must be square, as in
    /// nnU-Net's 2d plans.
    fn plain_unet_config(&self) -> Result<PlainUNetConfig, InferError> {
        let arch = &self.configuration.architecture.arch_kwargs;
        let plans_path = self.trainer_dir.join("plans.json");
        let square = |values: &[Vec<i64>], key: &str| -> Result<Vec<i64>, InferError> {
            values
                .iter()
                .map(|v| match v[..] {
                    [a, b] if a == b => Ok(a),
                    _ => Err(InferError::input(
                        &plans_path,
                        format!("{key} entry {v:?} is not square; only square ones are supported"),
                    )),
                })
                .collect()
        };
        Ok(PlainUNetConfig {
            features_per_stage: arch.features_per_stage.clone(),
            kernel_sizes: square(&arch.kernel_sizes, "kernel_sizes")?,
            strides: square(&arch.strides, "strides")?,
            n_conv_per_stage: arch.n_conv_per_stage.clone(),
            n_conv_per_stage_decoder: arch.n_conv_per_stage_decoder.clone(),
            conv_bias: arch.conv_bias,
        })
    }
}

/// Maps an nnU-Net trainer class name to the network it trains: the official Swin-UMamba
/// trainers (`nnUNetTrainerSwinUMamba`, `...Scratch`, `nnUNetTrainerSwinUMambaD...`),
/// U-Mamba's (`nnUNetTrainerUMambaBot`, `nnUNetTrainerUMambaEnc`) and every other
/// `nnUNetTrainer*` variant, which trains the plans' PlainConvUNet.
pub fn model_for_trainer(trainer: &str) -> Option<ModelName> {
    if trainer.starts_with("nnUNetTrainerSwinUMambaD") {
        Some(ModelName::SwinUMambaD)
    } else if trainer.starts_with("nnUNetTrainerSwinUMamba") {
        Some(ModelName::SwinUMamba)
    } else if trainer.starts_with("nnUNetTrainerUMambaBot") {
        Some(ModelName::UmambaBot)
    } else if trainer.starts_with("nnUNetTrainerUMambaEnc") {
        Some(ModelName::UmambaEnc)
    } else if trainer.starts_with("nnUNetTrainer") {
        Some(ModelName::Nnunet)
    } else {
        None
    }
}

/// The network of one fold.
pub enum FoldNetwork {
    Model(Box<nets::Model>),
    /// The test network of `train-fold --synthetic`.
    Tiny(Box<TinyUNet>),
}

/// A fold's network, its mirroring axes and the checkpoint it came from.
pub struct TrainedFold {
    pub network: FoldNetwork,
    /// Image axes (0 = H, 1 = W) that test-time augmentation may mirror.
    pub mirror_axes: Vec<i64>,
    pub checkpoint: PathBuf,
}

impl LogitsNetwork for FoldNetwork {
    /// Returns the full-resolution head without gradients. The networks call libtorch
    /// through panicking methods, so a failure (such as running out of memory) is caught
    /// here and returned as an error for the caller to classify.
    fn logits(&self, input: &Tensor) -> Result<Tensor, TchError> {
        let run = || {
            tch::no_grad(|| match self {
                FoldNetwork::Model(model) => model.forward_heads(input, false).swap_remove(0),
                FoldNetwork::Tiny(net) => net.forward_heads(input, false).swap_remove(0),
            })
        };
        catch_unwind(AssertUnwindSafe(run)).map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the network panicked".to_string());
            TchError::Torch(message)
        })
    }
}
