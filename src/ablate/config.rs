//! The experiment YAML that `swin-umamba ablate` reads: datasets, models,
//! initialisations, folds and the training budget of one ablation grid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AblateError;

/// Model names every command accepts.
pub const MODEL_NAMES: &[&str] = &[
    "swin-umamba",
    "swin-umamba-v1",
    "swin-umamba-d",
    "nnunet",
    "umamba-bot",
    "umamba-enc",
];

/// Source layouts of `swin-umamba convert --layout`.
pub const CONVERT_LAYOUTS: &[&str] = &[
    "chaos",
    "kvasir",
    "scellseg",
    "neurips-cells",
    "amos",
    "endovis2017",
    "generic",
];

/// NSD tolerance sets built into `evaluate --nsd-tolerance`.
pub const NSD_TOLERANCE_NAMES: &[&str] = &["amos_mri", "chaos_t2", "endoscopy"];

/// Metric sets a dataset can be scored with.
pub const METRIC_NAMES: &[&str] = &["dice", "nsd", "f1"];

/// One ablation grid, as written in `experiments/*.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name, used for the output folder.
    pub name: String,
    /// Free text printed above the tables.
    #[serde(default)]
    pub description: String,
    /// Folder for every output of the grid; relative paths resolve against the YAML file.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// nnU-Net raw and preprocessed folders; `$nnUNet_raw` and `$nnUNet_preprocessed`
    /// when unset, else folders under `output_dir`.
    #[serde(default)]
    pub raw_dir: Option<PathBuf>,
    #[serde(default)]
    pub preprocessed_dir: Option<PathBuf>,
    pub datasets: Vec<DatasetSpec>,
    pub models: Vec<String>,
    pub initialisations: Vec<Initialisation>,
    #[serde(default = "default_folds")]
    pub folds: Vec<String>,
    #[serde(default)]
    pub training: TrainingBudget,
    /// Batch-job resources for `ablate --slurm`.
    #[serde(default)]
    pub slurm: super::slurm::SlurmConfig,
    /// Predict without mirroring test-time augmentation (the official scripts pass
    /// `--disable_tta`), both the test sets and `train-fold`'s validation cases.
    #[serde(default)]
    pub disable_tta: bool,
    /// Device for training and prediction: `cpu` or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub seed: u64,
}

fn default_folds() -> Vec<String> {
    vec!["0".into()]
}

fn default_device() -> String {
    "cpu".into()
}

/// A dataset of the grid, in nnU-Net raw format, or converted first from a release layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// nnU-Net dataset id (the XXX of `DatasetXXX_Name`).
    pub id: u32,
    /// Dataset name (the Name of `DatasetXXX_Name`).
    pub name: String,
    /// How to make the raw dataset with `swin-umamba convert` when it does not exist yet.
    #[serde(default)]
    pub convert: Option<ConvertSpec>,
    /// Plan override YAML from `plans/` (for example the 384×640 endoscopy patch).
    #[serde(default)]
    pub plan_overrides: Option<PathBuf>,
    /// Metrics for the table: `dice` and `nsd` (organs, instruments) or `f1` (cells).
    pub metrics: Vec<String>,
    /// NSD tolerances for `evaluate --nsd-tolerance`: a YAML file, or a built-in name
    /// (`amos_mri`, `endoscopy`, `chaos_t2`).
    #[serde(default)]
    pub nsd_tolerance: Option<PathBuf>,
    /// A held-out test set inside the raw dataset folder. When set, each cell predicts
    /// it with its final checkpoint and is scored on it (as the official scripts score
    /// `imagesTs`); otherwise the cell is scored on its fold's validation predictions.
    #[serde(default)]
    pub test: Option<TestSet>,
}

/// Test images and reference labels, as folders relative to the raw dataset folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSet {
    /// For example `imagesTs`.
    pub images: PathBuf,
    /// For example `labelsTs`, or `labelsVal-instance-mask` for cell instance masks.
    pub labels: PathBuf,
}

/// A `swin-umamba convert` call that writes a raw dataset from a release layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertSpec {
    /// Source layout, as `swin-umamba convert` names it (for example `kvasir-seg`).
    pub from: String,
    /// Folder holding the release files; relative paths resolve against the YAML file.
    pub source: PathBuf,
    /// Further `convert` flags, passed through unchanged.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl DatasetSpec {
    /// Folder name in nnU-Net's convention, `Dataset042_Name`.
    pub fn folder_name(&self) -> String {
        format!("Dataset{:03}_{}", self.id, self.name)
    }
}

/// Starting weights of the encoder: a checkpoint, a pretraining run, or none (scratch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Initialisation {
    /// `imagenet` or `scratch`, or any name for a custom checkpoint.
    pub name: String,
    /// VMamba v0 checkpoint (`.pth` or `.safetensors`) for the encoder.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Produce the checkpoint first with `swin-umamba pretrain` on this recipe.
    #[serde(default)]
    pub pretrain: Option<PretrainSpec>,
}

impl Initialisation {
    /// True when the encoder starts from a checkpoint.
    pub fn is_pretrained(&self) -> bool {
        self.checkpoint.is_some() || self.pretrain.is_some()
    }
}

/// A `swin-umamba pretrain` run whose output checkpoint initialises the encoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    /// ImageNet-layout or flat folder of images.
    pub data: PathBuf,
    pub epochs: u32,
    #[serde(default = "default_pretrain_batch")]
    pub batch_size: u32,
    #[serde(default = "default_pretrain_size")]
    pub image_size: u32,
    /// Further `pretrain` flags, passed through unchanged.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_pretrain_batch() -> u32 {
    32
}

fn default_pretrain_size() -> u32 {
    224
}

/// Training budget shared by every cell; unset values keep each trainer's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingBudget {
    /// Trainer per model name; models not listed use the trainer of the same name
    /// (`nnunet` for nnU-Net, `umamba` for both U-Mamba variants).
    #[serde(default)]
    pub trainers: BTreeMap<String, String>,
    #[serde(default)]
    pub epochs: Option<u32>,
    /// Stop after this many epochs with the schedule still laid over `epochs` (the
    /// official scripts score Swin-UMamba at such an early checkpoint).
    #[serde(default)]
    pub stop_epoch: Option<u32>,
    /// Per-model stopping epochs; they take precedence over `stop_epoch`.
    #[serde(default)]
    pub stop_epochs: BTreeMap<String, u32>,
    /// Epochs the pretrained Swin-UMamba encoders stay frozen, instead of the official 10;
    /// passed to the cells that load a pretrained encoder only.
    #[serde(default)]
    pub freeze_encoder_epochs: Option<u32>,
    #[serde(default)]
    pub iterations_per_epoch: Option<u32>,
    #[serde(default)]
    pub val_iterations_per_epoch: Option<u32>,
    #[serde(default)]
    pub patch_size: Option<Vec<u32>>,
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Further `train-fold` flags, passed through unchanged.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl Experiment {
    /// Reads and checks an experiment YAML; relative paths resolve against its folder.
    pub fn load(path: &Path) -> Result<Self, AblateError> {
        let text = std::fs::read_to_string(path).map_err(|source| AblateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut experiment: Experiment =
            serde_yaml_ng::from_str(&text).map_err(|err| AblateError::InvalidExperiment {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        experiment.resolve_paths(base);
        experiment.validate(path)?;
        Ok(experiment)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut self.output_dir,
            &mut self.raw_dir,
            &mut self.preprocessed_dir,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        for dataset in &mut self.datasets {
            if let Some(p) = dataset.plan_overrides.as_mut() {
                resolve(p);
            }
            // A tolerance is a YAML file or the name of one built into `evaluate`.
            if let Some(p) = dataset.nsd_tolerance.as_mut() {
                let is_file =
                    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                if is_file {
                    resolve(p);
                }
            }
            if let Some(convert) = dataset.convert.as_mut() {
                resolve(&mut convert.source);
            }
        }
        for init in &mut self.initialisations {
            if let Some(p) = init.checkpoint.as_mut() {
                resolve(p);
            }
            if let Some(spec) = init.pretrain.as_mut() {
                resolve(&mut spec.data);
            }
        }
    }

    /// Checks names against the allowed values, so a typo fails before any work starts.
    pub fn validate(&self, path: &Path) -> Result<(), AblateError> {
        let invalid = |key: &str, value: &str, allowed: String| AblateError::InvalidValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            value: value.to_string(),
            allowed,
        };
        if self.datasets.is_empty() {
            return Err(invalid("datasets", "[]", "at least one dataset".into()));
        }
        if self.models.is_empty() {
            return Err(invalid("models", "[]", MODEL_NAMES.join(", ")));
        }
        for model in &self.models {
            if !MODEL_NAMES.contains(&model.as_str()) {
                return Err(invalid("models", model, MODEL_NAMES.join(", ")));
            }
        }
        for dataset in &self.datasets {
            if dataset.metrics.is_empty() {
                return Err(invalid("datasets.metrics", "[]", METRIC_NAMES.join(", ")));
            }
            for metric in &dataset.metrics {
                if !METRIC_NAMES.contains(&metric.as_str()) {
                    return Err(invalid("datasets.metrics", metric, METRIC_NAMES.join(", ")));
                }
            }
        }
        if self.initialisations.is_empty() {
            return Err(invalid("initialisations", "[]", "imagenet, scratch".into()));
        }
        for init in &self.initialisations {
            if init.checkpoint.is_some() && init.pretrain.is_some() {
                return Err(invalid(
                    "initialisations.checkpoint",
                    &init.name,
                    "either `checkpoint` or `pretrain`, not both".into(),
                ));
            }
            if init.name == "scratch" && init.is_pretrained() {
                return Err(invalid(
                    "initialisations.name",
                    "scratch",
                    "no `checkpoint` or `pretrain` for scratch".into(),
                ));
            }
        }
        for fold in &self.folds {
            let valid = fold == "all" || matches!(fold.parse::<u32>(), Ok(0..=4));
            if !valid {
                return Err(invalid("folds", fold, "0, 1, 2, 3, 4 or all".into()));
            }
        }
        if !["cpu", "cuda"].contains(&self.device.as_str()) {
            return Err(invalid("device", &self.device, "cpu, cuda".into()));
        }
        for model in self
            .training
            .trainers
            .keys()
            .chain(self.training.stop_epochs.keys())
        {
            if !MODEL_NAMES.contains(&model.as_str()) {
                return Err(invalid("training.trainers", model, MODEL_NAMES.join(", ")));
            }
        }
        self.validate_unique(path)?;
        self.validate_names(path)?;
        self.validate_budget(path)
    }

    /// Rejects repeated entries, which would give two cells one output folder.
    fn validate_unique(&self, path: &Path) -> Result<(), AblateError> {
        if self.folds.is_empty() {
            return Err(AblateError::InvalidValue {
                path: path.to_path_buf(),
                key: "folds".into(),
                value: "[]".into(),
                allowed: "at least one of 0, 1, 2, 3, 4 or all".into(),
            });
        }
        let lists: [(&str, Vec<String>); 4] = [
            ("models", self.models.clone()),
            ("folds", self.folds.clone()),
            (
                "datasets.id",
                self.datasets.iter().map(|d| d.id.to_string()).collect(),
            ),
            (
                "initialisations.name",
                self.initialisations
                    .iter()
                    .map(|i| i.name.clone())
                    .collect(),
            ),
        ];
        for (key, values) in lists {
            let mut seen = std::collections::BTreeSet::new();
            for value in &values {
                if !seen.insert(value) {
                    return Err(AblateError::InvalidValue {
                        path: path.to_path_buf(),
                        key: key.into(),
                        value: value.clone(),
                        allowed: "each value once (a repeat would share its output folder)".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks the convert layouts and the NSD tolerance names.
    fn validate_names(&self, path: &Path) -> Result<(), AblateError> {
        for dataset in &self.datasets {
            if let Some(convert) = &dataset.convert {
                if !CONVERT_LAYOUTS.contains(&convert.from.as_str()) {
                    return Err(AblateError::InvalidValue {
                        path: path.to_path_buf(),
                        key: "datasets.convert.from".into(),
                        value: convert.from.clone(),
                        allowed: CONVERT_LAYOUTS.join(", "),
                    });
                }
            }
            if let Some(tolerance) = &dataset.nsd_tolerance {
                let name = tolerance.to_string_lossy();
                let is_file = matches!(
                    tolerance.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                );
                if !is_file && !NSD_TOLERANCE_NAMES.contains(&name.as_ref()) {
                    return Err(AblateError::InvalidValue {
                        path: path.to_path_buf(),
                        key: "datasets.nsd_tolerance".into(),
                        value: name.into_owned(),
                        allowed: format!(
                            "{} or a tolerance file ending in .yaml",
                            NSD_TOLERANCE_NAMES.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Lists the input files and folders the YAML names that do not exist, each as
    /// `key: path`. A run stops on them before its first task. `--dry-run` only warns,
    /// because a grid is often planned before its data arrives.
    pub fn missing_inputs(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let mut check = |key: &str, file: &Path, exists: bool| {
            if !exists {
                missing.push(format!("{key}: {} not found", file.display()));
            }
        };
        for dataset in &self.datasets {
            if let Some(convert) = &dataset.convert {
                check(
                    "datasets.convert.source",
                    &convert.source,
                    convert.source.exists(),
                );
            }
            if let Some(overrides) = &dataset.plan_overrides {
                check("datasets.plan_overrides", overrides, overrides.is_file());
            }
            if let Some(tolerance) = &dataset.nsd_tolerance {
                let builtin = NSD_TOLERANCE_NAMES.contains(&tolerance.to_string_lossy().as_ref());
                check(
                    "datasets.nsd_tolerance",
                    tolerance,
                    builtin || tolerance.is_file(),
                );
            }
        }
        for init in &self.initialisations {
            if let Some(checkpoint) = &init.checkpoint {
                check(
                    "initialisations.checkpoint",
                    checkpoint,
                    checkpoint.is_file(),
                );
            }
            if let Some(pretrain) = &init.pretrain {
                check(
                    "initialisations.pretrain.data",
                    &pretrain.data,
                    pretrain.data.is_dir(),
                );
            }
        }
        missing
    }

    /// Checks the training budget's numbers against each other and the grid's models.
    fn validate_budget(&self, path: &Path) -> Result<(), AblateError> {
        let invalid = |key: &str, value: String, allowed: String| AblateError::InvalidValue {
            path: path.to_path_buf(),
            key: key.into(),
            value,
            allowed,
        };
        let budget = &self.training;
        if budget.epochs == Some(0) {
            return Err(invalid("training.epochs", "0".into(), "1 or more".into()));
        }
        if budget.batch_size == Some(0) {
            return Err(invalid(
                "training.batch_size",
                "0".into(),
                "1 or more".into(),
            ));
        }
        let epochs = budget.epochs.unwrap_or(1000);
        let stops = budget.stop_epoch.iter().chain(budget.stop_epochs.values());
        for &stop in stops {
            if stop == 0 || stop > epochs {
                return Err(invalid(
                    "training.stop_epoch",
                    stop.to_string(),
                    format!("1 to the epoch count {epochs}"),
                ));
            }
        }
        if let Some(patch) = &budget.patch_size {
            // The Swin-UMamba and U-Mamba encoders downsample by 32 in total.
            let needs_32 = self.models.iter().any(|m| m != "nnunet");
            let valid =
                patch.len() == 2 && patch.iter().all(|&p| p > 0 && (!needs_32 || p % 32 == 0));
            if !valid {
                let rule = if needs_32 {
                    "two sizes (y, x), each a multiple of 32 for the models other than nnunet"
                } else {
                    "two positive sizes (y, x)"
                };
                return Err(invalid(
                    "training.patch_size",
                    format!("{patch:?}"),
                    rule.into(),
                ));
            }
        }
        Ok(())
    }

    /// Trainer used for a model: the YAML's choice, else the model's own trainer.
    pub fn trainer_for(&self, model: &str) -> String {
        if let Some(trainer) = self.training.trainers.get(model) {
            return trainer.clone();
        }
        match model {
            "nnunet" => "nnunet".into(),
            "umamba-bot" | "umamba-enc" => "umamba".into(),
            "swin-umamba-d" => "swin-umamba-d".into(),
            _ => "swin-umamba".into(),
        }
    }
}
