//! Expansion of an experiment into cells (dataset × model × initialisation × fold) and
//! the tasks that produce them.

use std::path::PathBuf;

use super::config::{DatasetSpec, Experiment, Initialisation};

/// Models whose encoder is VMamba-Tiny and so can start from a VMamba checkpoint.
pub const VMAMBA_MODELS: &[&str] = &["swin-umamba", "swin-umamba-v1", "swin-umamba-d"];

/// One training run of the grid and its evaluation.
#[derive(Debug, Clone)]
pub struct Cell {
    pub dataset: DatasetSpec,
    pub model: String,
    pub initialisation: Initialisation,
    pub fold: String,
    pub trainer: String,
}

impl Cell {
    /// Stable id, also the cell's folder below `cells/`:
    /// `Dataset042_Name/swin-umamba/imagenet/fold_0`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/fold_{}",
            self.dataset.folder_name(),
            self.model,
            self.initialisation.name,
            self.fold
        )
    }
}

/// Expands the grid; pretrained initialisations apply to VMamba models only, so the
/// convolutional baselines get a scratch cell alone.
pub fn expand(experiment: &Experiment) -> Vec<Cell> {
    let mut cells = Vec::new();
    for dataset in &experiment.datasets {
        for model in &experiment.models {
            for init in &experiment.initialisations {
                if init.is_pretrained() && !VMAMBA_MODELS.contains(&model.as_str()) {
                    continue;
                }
                for fold in &experiment.folds {
                    cells.push(Cell {
                        dataset: dataset.clone(),
                        model: model.clone(),
                        initialisation: init.clone(),
                        fold: fold.clone(),
                        trainer: experiment.trainer_for(model),
                    });
                }
            }
        }
    }
    cells
}

/// Keeps the cells whose id matches `pattern` (see [`matches_pattern`]), for example
/// `kvasir*swin-umamba/imagenet`.
pub fn filter(cells: Vec<Cell>, pattern: Option<&str>) -> Vec<Cell> {
    match pattern {
        None => cells,
        Some(pattern) => cells
            .into_iter()
            .filter(|c| matches_pattern(&c.id(), pattern))
            .collect(),
    }
}

/// Matches `pattern` anywhere in `text`, ignoring case; `*` matches any run of characters
/// and is the only wildcard.
pub fn matches_pattern(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut position = 0;
    for part in parts.iter().filter(|part| !part.is_empty()) {
        match text[position..].find(part) {
            Some(found) => position += found + part.len(),
            None => return false,
        }
    }
    true
}

/// Folder layout of one experiment's outputs.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub raw: PathBuf,
    pub preprocessed: PathBuf,
}

impl Layout {
    /// nnU-Net results folder shared by the cells of one model and initialisation, so
    /// every run keeps nnU-Net's `DatasetXXX/<trainer>__nnUNetPlans__2d/fold_X` layout.
    pub fn results_dir(&self, cell: &Cell) -> PathBuf {
        self.root
            .join("results")
            .join(format!("{}__{}", cell.model, cell.initialisation.name))
    }

    /// Returns the nnU-Net fold folder that `train-fold` writes for this cell.
    pub fn fold_dir(&self, cell: &Cell) -> PathBuf {
        self.results_dir(cell)
            .join(cell.dataset.folder_name())
            .join(format!("{}__nnUNetPlans__2d", cell.trainer))
            .join(format!("fold_{}", cell.fold))
    }

    /// Returns the cell's own folder, which contains its logs, markers and metric summary.
    pub fn cell_dir(&self, cell: &Cell) -> PathBuf {
        self.root.join("cells").join(cell.id())
    }

    /// Output folder of a pretraining run.
    pub fn pretrain_dir(&self, init: &Initialisation) -> PathBuf {
        self.root.join("pretrain").join(&init.name)
    }

    /// Folder of per-dataset preparation logs and markers.
    pub fn dataset_dir(&self, dataset: &DatasetSpec) -> PathBuf {
        self.root.join("datasets").join(dataset.folder_name())
    }

    /// Tables and charts.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }
}
