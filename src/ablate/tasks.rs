//! The tasks that produce a grid's results, with the exact commands each one runs.
//!
//! Every task runs the `swin-umamba` binary itself as a child process, so a task is
//! exactly what a user would type, its log is the command's own output, and a killed
//! runner leaves nothing that a second call cannot resume.

use std::path::{Path, PathBuf};

use super::config::{DatasetSpec, Experiment, Initialisation};
use super::grid::{Cell, Layout};

/// Kind of work a task does.
#[derive(Debug, Clone)]
pub enum TaskKind {
    /// Convert (when the raw dataset is missing), plan and preprocess one dataset.
    PrepareDataset(DatasetSpec),
    /// Pretrain an encoder for one initialisation.
    Pretrain(Initialisation),
    /// Train one cell's fold, ending with its validation predictions.
    Train(Cell),
    /// Predict the dataset's test images with one cell's final checkpoint.
    Predict(Cell),
    /// Score one cell's predictions (test set, else validation) with the dataset's metrics.
    Evaluate(Cell),
}

/// One schedulable unit: ordered commands, the tasks it waits for, and its files.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    pub depends_on: Vec<String>,
    /// Argument lists for the `swin-umamba` binary, run in order.
    pub commands: Vec<Vec<String>>,
    /// Environment variables set for every command.
    pub env: Vec<(String, String)>,
    /// Folder holding `task.log` and the `task.done` marker.
    pub dir: PathBuf,
}

impl Task {
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("task.log")
    }

    pub fn done_marker(&self) -> PathBuf {
        self.dir.join("task.done")
    }

    pub fn is_done(&self) -> bool {
        self.done_marker().exists()
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn nnunet_env(layout: &Layout, results: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("nnUNet_raw".to_string(), path_arg(&layout.raw)),
        (
            "nnUNet_preprocessed".to_string(),
            path_arg(&layout.preprocessed),
        ),
    ];
    if let Some(results) = results {
        env.push(("nnUNet_results".to_string(), path_arg(results)));
    }
    env
}

/// Builds every task of the grid in dependency order.
pub fn build_tasks(experiment: &Experiment, layout: &Layout, cells: &[Cell]) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut datasets: Vec<&DatasetSpec> = Vec::new();
    let mut inits: Vec<&Initialisation> = Vec::new();
    for cell in cells {
        if !datasets.iter().any(|d| d.id == cell.dataset.id) {
            datasets.push(&cell.dataset);
        }
        let needs_pretrain = cell.initialisation.pretrain.is_some();
        if needs_pretrain && !inits.iter().any(|i| i.name == cell.initialisation.name) {
            inits.push(&cell.initialisation);
        }
    }
    for dataset in datasets {
        tasks.push(prepare_task(experiment, layout, dataset));
    }
    for init in inits {
        tasks.push(pretrain_task(experiment, layout, init));
    }
    for cell in cells {
        tasks.push(train_task(experiment, layout, cell));
        if cell.dataset.test.is_some() {
            tasks.push(predict_task(experiment, layout, cell));
        }
        tasks.push(evaluate_task(layout, cell));
    }
    tasks
}

fn prepare_task(experiment: &Experiment, layout: &Layout, dataset: &DatasetSpec) -> Task {
    let id = dataset.id.to_string();
    let mut commands = Vec::new();
    let raw_folder = layout.raw.join(dataset.folder_name());
    if let Some(convert) = &dataset.convert {
        if !raw_folder.join("dataset.json").exists() {
            let mut args = vec![
                "convert".to_string(),
                "--layout".into(),
                convert.from.clone(),
                "--source".into(),
                path_arg(&convert.source),
                "--id".into(),
                id.clone(),
                "--name".into(),
                dataset.name.clone(),
                "--raw".into(),
                path_arg(&layout.raw),
            ];
            args.extend(convert.extra_args.iter().cloned());
            commands.push(args);
        }
    }
    let mut plan = vec![
        "plan".into(),
        "-d".into(),
        id.clone(),
        "--verify-dataset-integrity".into(),
    ];
    if let Some(overrides) = &dataset.plan_overrides {
        plan.extend(["--override".into(), path_arg(overrides)]);
    }
    if experiment.training.patch_size.is_some() || experiment.training.batch_size.is_some() {
        plan.extend([
            "--override".into(),
            path_arg(&budget_override_path(layout, dataset)),
        ]);
    }
    commands.push(plan);
    commands.push(vec!["preprocess".into(), "-d".into(), id]);
    Task {
        id: format!("prepare {}", dataset.folder_name()),
        kind: TaskKind::PrepareDataset(dataset.clone()),
        depends_on: Vec::new(),
        commands,
        env: nnunet_env(layout, None),
        dir: layout.dataset_dir(dataset),
    }
}

/// Plan override that applies the grid's patch and batch size, written by
/// [`write_budget_overrides`] before the tasks run.
pub fn budget_override_path(layout: &Layout, dataset: &DatasetSpec) -> PathBuf {
    layout
        .dataset_dir(dataset)
        .join("training_budget_override.yaml")
}

/// Writes the plan override YAML of every dataset whose grid sets a patch or batch size.
pub fn write_budget_overrides(experiment: &Experiment, layout: &Layout) -> std::io::Result<()> {
    let budget = &experiment.training;
    if budget.patch_size.is_none() && budget.batch_size.is_none() {
        return Ok(());
    }
    for dataset in &experiment.datasets {
        let path = budget_override_path(layout, dataset);
        std::fs::create_dir_all(path.parent().expect("override path has a folder"))?;
        let mut text = format!(
            "# Written by `swin-umamba ablate` from the training budget of `{}`.\nbase: 2d\nsource: training budget of experiment {}\n",
            experiment.name, experiment.name
        );
        if let Some(patch) = &budget.patch_size {
            let sizes: Vec<String> = patch.iter().map(|v| v.to_string()).collect();
            text.push_str(&format!("patch_size: [{}]\n", sizes.join(", ")));
        }
        if let Some(batch) = budget.batch_size {
            text.push_str(&format!("batch_size: {batch}\n"));
        }
        let temporary = path.with_extension("yaml.tmp");
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(())
}

fn pretrain_task(experiment: &Experiment, layout: &Layout, init: &Initialisation) -> Task {
    let spec = init
        .pretrain
        .as_ref()
        .expect("pretrain task needs a pretrain spec");
    let out = layout.pretrain_dir(init);
    let mut args = vec![
        "pretrain".to_string(),
        "--data".into(),
        path_arg(&spec.data),
        "--out".into(),
        path_arg(&out),
        "--epochs".into(),
        spec.epochs.to_string(),
        "--batch-size".into(),
        spec.batch_size.to_string(),
        "--image-size".into(),
        spec.image_size.to_string(),
        "--device".into(),
        experiment.device.clone(),
        "--seed".into(),
        experiment.seed.to_string(),
    ];
    if out.exists() {
        args.push("--continue".into());
    }
    args.extend(spec.extra_args.iter().cloned());
    Task {
        id: format!("pretrain {}", init.name),
        kind: TaskKind::Pretrain(init.clone()),
        depends_on: Vec::new(),
        commands: vec![args],
        env: Vec::new(),
        dir: out.join("runner"),
    }
}

/// Checkpoint that a cell's encoder starts from, when it has one.
pub fn init_checkpoint(layout: &Layout, init: &Initialisation) -> Option<PathBuf> {
    if let Some(path) = &init.checkpoint {
        return Some(path.clone());
    }
    init.pretrain
        .as_ref()
        .map(|_| layout.pretrain_dir(init).join("checkpoint_final.pth"))
}

/// Arguments that `train-fold` and `predict` share for one cell: dataset, configuration,
/// fold, trainer and device.
fn cell_arguments(experiment: &Experiment, cell: &Cell) -> [String; 10] {
    [
        "-d".into(),
        cell.dataset.id.to_string(),
        "-c".into(),
        "2d".into(),
        "-f".into(),
        cell.fold.clone(),
        "--trainer".into(),
        cell.trainer.clone(),
        "--device".into(),
        experiment.device.clone(),
    ]
}

fn train_task(experiment: &Experiment, layout: &Layout, cell: &Cell) -> Task {
    let budget = &experiment.training;
    let mut args = vec!["train-fold".to_string()];
    args.extend(cell_arguments(experiment, cell));
    args.extend([
        "--model".into(),
        cell.model.clone(),
        "--seed".into(),
        experiment.seed.to_string(),
    ]);
    if let Some(checkpoint) = init_checkpoint(layout, &cell.initialisation) {
        args.extend(["--pretrained".into(), path_arg(&checkpoint)]);
        if let Some(epochs) = budget.freeze_encoder_epochs {
            args.extend(["--freeze-encoder-epochs".into(), epochs.to_string()]);
        }
    }
    let stop_epoch = budget
        .stop_epochs
        .get(&cell.model)
        .or(budget.stop_epoch.as_ref());
    let optional = [
        ("--epochs", budget.epochs),
        ("--stop-epoch", stop_epoch.copied()),
        ("--iterations", budget.iterations_per_epoch),
        ("--val-iterations", budget.val_iterations_per_epoch),
    ];
    for (flag, value) in optional {
        if let Some(value) = value {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    // A run that left a checkpoint continues from it. That includes a finished one whose
    // validation failed: train-fold --continue takes checkpoint_final first (as nnU-Net
    // does) and goes straight to the validation instead of training again.
    let fold_dir = layout.fold_dir(cell);
    if ["checkpoint_latest.json", "checkpoint_final.json"]
        .iter()
        .any(|name| fold_dir.join(name).exists())
    {
        args.push("--continue".into());
    }
    if experiment.disable_tta {
        args.push("--val-disable-tta".into());
    }
    args.extend(budget.extra_args.iter().cloned());
    let mut depends_on = vec![format!("prepare {}", cell.dataset.folder_name())];
    if cell.initialisation.pretrain.is_some() {
        depends_on.push(format!("pretrain {}", cell.initialisation.name));
    }
    Task {
        id: format!("train {}", cell.id()),
        kind: TaskKind::Train(cell.clone()),
        depends_on,
        commands: vec![args],
        env: nnunet_env(layout, Some(&layout.results_dir(cell))),
        dir: layout.cell_dir(cell).join("train"),
    }
}

fn predict_task(experiment: &Experiment, layout: &Layout, cell: &Cell) -> Task {
    let test = cell
        .dataset
        .test
        .as_ref()
        .expect("predict task needs a test set");
    let raw = layout.raw.join(cell.dataset.folder_name());
    let mut args = vec![
        "predict".to_string(),
        "-i".into(),
        path_arg(&raw.join(&test.images)),
        "-o".into(),
        path_arg(&layout.cell_dir(cell).join("test_predictions")),
        "--checkpoint".into(),
        "checkpoint_final".into(),
    ];
    args.extend(cell_arguments(experiment, cell));
    if experiment.disable_tta {
        args.push("--disable-tta".into());
    }
    Task {
        id: format!("predict {}", cell.id()),
        kind: TaskKind::Predict(cell.clone()),
        depends_on: vec![format!("train {}", cell.id())],
        commands: vec![args],
        env: nnunet_env(layout, Some(&layout.results_dir(cell))),
        dir: layout.cell_dir(cell).join("predict"),
    }
}

fn evaluate_task(layout: &Layout, cell: &Cell) -> Task {
    let preprocessed = layout.preprocessed.join(cell.dataset.folder_name());
    let (reference, predictions, after) = match &cell.dataset.test {
        Some(test) => (
            layout
                .raw
                .join(cell.dataset.folder_name())
                .join(&test.labels),
            layout.cell_dir(cell).join("test_predictions"),
            format!("predict {}", cell.id()),
        ),
        None => (
            preprocessed.join("gt_segmentations"),
            layout.fold_dir(cell).join("validation"),
            format!("train {}", cell.id()),
        ),
    };
    let mut args = vec![
        "evaluate".to_string(),
        path_arg(&reference),
        path_arg(&predictions),
        "-djfile".into(),
        path_arg(&preprocessed.join("dataset.json")),
        "-pfile".into(),
        path_arg(&preprocessed.join("nnUNetPlans.json")),
        "-o".into(),
        path_arg(&layout.cell_dir(cell).join("summary.json")),
        "--metrics".into(),
        cell.dataset.metrics.join(","),
    ];
    if let Some(tolerance) = &cell.dataset.nsd_tolerance {
        args.extend(["--nsd-tolerance".into(), path_arg(tolerance)]);
    }
    if cell.dataset.test.is_none() {
        // gt_segmentations contains every case but the fold predicts only its validation
        // cases, so score those alone, as nnU-Net's own validation does.
        args.push("--chill".into());
        if cell.dataset.metrics.iter().any(|m| m == "f1") {
            // gt_segmentations contains the three-class maps (background, interior,
            // boundary), which cannot be matched cell by cell; `convert` keeps the
            // instance masks of cell datasets beside labelsTr.
            let instances = layout
                .raw
                .join(cell.dataset.folder_name())
                .join(crate::dataset::convert::INSTANCE_MASK_FOLDER);
            args.extend(["--instance-dir".into(), path_arg(&instances)]);
        }
    }
    Task {
        id: format!("evaluate {}", cell.id()),
        kind: TaskKind::Evaluate(cell.clone()),
        depends_on: vec![after],
        commands: vec![args],
        env: nnunet_env(layout, Some(&layout.results_dir(cell))),
        dir: layout.cell_dir(cell).join("evaluate"),
    }
}
