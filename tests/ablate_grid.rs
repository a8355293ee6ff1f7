//! Experiment YAML checks, grid expansion and the `--only` filter.

use std::path::Path;

use swin_umamba::ablate::config::Experiment;
use swin_umamba::ablate::grid::{self, matches_pattern};

fn write_yaml(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("experiment.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const BASE: &str = r#"
name: t
datasets:
  - { id: 7, name: Tiny, metrics: [dice] }
  - { id: 8, name: Cells, metrics: [f1] }
models: [swin-umamba, nnunet]
initialisations:
  - { name: imagenet, checkpoint: weights/vmamba.pth }
  - { name: scratch }
folds: ["0", "1"]
"#;

#[test]
fn grid_skips_pretrained_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::load(&write_yaml(dir.path(), BASE)).unwrap();
    let cells = grid::expand(&experiment);
    let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
    // 2 datasets × (swin-umamba × 2 inits + nnunet × scratch) × 2 folds.
    assert_eq!(ids.len(), 12, "{ids:?}");
    assert!(ids.contains(&"Dataset007_Tiny/swin-umamba/imagenet/fold_1".to_string()));
    assert!(ids.contains(&"Dataset008_Cells/nnunet/scratch/fold_0".to_string()));
    assert!(!ids.iter().any(|id| id.contains("nnunet/imagenet")));
    let nnunet = cells.iter().find(|c| c.model == "nnunet").unwrap();
    assert_eq!(nnunet.trainer, "nnunet");
}

#[test]
fn relative_checkpoint_resolves_against_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::load(&write_yaml(dir.path(), BASE)).unwrap();
    let checkpoint = experiment.initialisations[0].checkpoint.clone().unwrap();
    assert_eq!(checkpoint, dir.path().join("weights/vmamba.pth"));
}

#[test]
fn only_pattern_filters_cells() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::load(&write_yaml(dir.path(), BASE)).unwrap();
    let cells = grid::filter(grid::expand(&experiment), Some("cells*swin-umamba/scratch"));
    let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
    assert_eq!(
        ids,
        vec![
            "Dataset008_Cells/swin-umamba/scratch/fold_0".to_string(),
            "Dataset008_Cells/swin-umamba/scratch/fold_1".to_string()
        ]
    );
    assert!(matches_pattern(
        "Dataset007_Tiny/nnunet/scratch/fold_0",
        "fold_0"
    ));
    assert!(!matches_pattern(
        "Dataset007_Tiny/nnunet/scratch/fold_0",
        "imagenet"
    ));
}

#[test]
fn invalid_values_name_key_and_choices() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            BASE.replace("[swin-umamba, nnunet]", "[swin-unet]"),
            "models",
            "swin-unet",
        ),
        (
            BASE.replace("[dice]", "[hausdorff]"),
            "datasets.metrics",
            "hausdorff",
        ),
        (BASE.replace(r#"["0", "1"]"#, r#"["5"]"#), "folds", "5"),
        (BASE.replace(r#"["0", "1"]"#, "[]"), "folds", "[]"),
        (BASE.replace(r#"["0", "1"]"#, r#"["0", "0"]"#), "folds", "0"),
        (
            BASE.replace("[swin-umamba, nnunet]", "[nnunet, nnunet]"),
            "models",
            "nnunet",
        ),
        (
            format!("{BASE}training: {{ patch_size: [63, 64] }}\n"),
            "training.patch_size",
            "[63, 64]",
        ),
        (
            format!("{BASE}training: {{ patch_size: [64, 64, 64] }}\n"),
            "training.patch_size",
            "[64, 64, 64]",
        ),
        (
            format!("{BASE}training: {{ batch_size: 0 }}\n"),
            "training.batch_size",
            "0",
        ),
        (
            format!("{BASE}training: {{ epochs: 2, stop_epoch: 5 }}\n"),
            "training.stop_epoch",
            "5",
        ),
        (
            BASE.replace(
                "{ id: 7, name: Tiny, metrics: [dice] }",
                "{ id: 7, name: Tiny, metrics: [dice], convert: { from: kvasr, source: . } }",
            ),
            "datasets.convert.from",
            "kvasr",
        ),
        (
            BASE.replace(
                "{ id: 7, name: Tiny, metrics: [dice] }",
                "{ id: 7, name: Tiny, metrics: [dice], nsd_tolerance: bogus }",
            ),
            "datasets.nsd_tolerance",
            "bogus",
        ),
    ];
    for (text, key, value) in cases {
        let error = Experiment::load(&write_yaml(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("`{key}`")), "{error}");
        assert!(error.contains(value), "{error}");
        assert!(error.contains("allowed"), "{error}");
    }
    let unknown = BASE.replace("folds:", "fold_list:");
    let error = Experiment::load(&write_yaml(dir.path(), &unknown))
        .unwrap_err()
        .to_string();
    assert!(error.contains("fold_list"), "{error}");
    assert!(error.contains("experiment.yaml"), "{error}");
}

#[test]
fn paper_experiments_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for name in [
        "paper-abdomen-mri",
        "paper-endoscopy",
        "paper-microscopy",
        "standins",
        "demo",
    ] {
        let path = root.join(format!("{name}.yaml"));
        let experiment = Experiment::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!grid::expand(&experiment).is_empty(), "{name} has no cells");
        for dataset in &experiment.datasets {
            if let Some(overrides) = &dataset.plan_overrides {
                assert!(
                    overrides.exists(),
                    "{name}: missing plan override {}",
                    overrides.display()
                );
            }
        }
    }
}

#[test]
fn freeze_epochs_and_disable_tta_reach_train_fold() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("{BASE}training: {{ epochs: 4, freeze_encoder_epochs: 1 }}\ndisable_tta: true\n");
    let experiment = Experiment::load(&write_yaml(dir.path(), &text)).unwrap();
    let cells = grid::expand(&experiment);
    let layout = swin_umamba::ablate::cli::layout_for(&experiment);
    let tasks = swin_umamba::ablate::tasks::build_tasks(&experiment, &layout, &cells);
    let mut checked = 0;
    for task in tasks.iter().filter(|t| t.id.starts_with("train ")) {
        let args = &task.commands[0];
        let flag = args.iter().position(|a| a == "--freeze-encoder-epochs");
        let pretrained = args.iter().any(|a| a == "--pretrained");
        assert_eq!(flag.is_some(), pretrained, "{}: {args:?}", task.id);
        assert!(
            args.iter().any(|a| a == "--val-disable-tta"),
            "{}: disable_tta must reach the validation: {args:?}",
            task.id
        );
        if let Some(i) = flag {
            assert_eq!(args[i + 1], "1", "{}", task.id);
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn cell_validation_scores_instance_masks() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = Experiment::load(&write_yaml(dir.path(), BASE)).unwrap();
    let cells = grid::expand(&experiment);
    let layout = swin_umamba::ablate::cli::layout_for(&experiment);
    let tasks = swin_umamba::ablate::tasks::build_tasks(&experiment, &layout, &cells);
    for task in tasks.iter().filter(|t| t.id.starts_with("evaluate ")) {
        let args = &task.commands[0];
        let instance_dir = args
            .iter()
            .position(|a| a == "--instance-dir")
            .map(|i| args[i + 1].clone());
        if task.id.contains("Dataset008_Cells") {
            let dir = instance_dir.unwrap_or_else(|| panic!("{}: {args:?}", task.id));
            assert!(
                dir.ends_with("Dataset008_Cells/labelsTr-instance-mask"),
                "{}: {dir}",
                task.id
            );
        } else {
            assert_eq!(instance_dir, None, "{}: {args:?}", task.id);
        }
    }
}

#[test]
fn finished_training_continues_not_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}output_dir: out\n");
    let experiment = Experiment::load(&write_yaml(dir.path(), &text)).unwrap();
    let cells = grid::expand(&experiment);
    let layout = swin_umamba::ablate::cli::layout_for(&experiment);
    let cell = cells
        .iter()
        .find(|c| c.id() == "Dataset007_Tiny/nnunet/scratch/fold_0")
        .unwrap();
    let train_args = |layout: &swin_umamba::ablate::grid::Layout| {
        let tasks = swin_umamba::ablate::tasks::build_tasks(&experiment, layout, &cells);
        let id = format!("train {}", cell.id());
        tasks.into_iter().find(|t| t.id == id).unwrap().commands[0].clone()
    };
    assert!(!train_args(&layout).contains(&"--continue".to_string()));

    // Training ended (the final checkpoint exists) but the validation after it failed.
    let fold_dir = layout.fold_dir(cell);
    std::fs::create_dir_all(&fold_dir).unwrap();
    std::fs::write(fold_dir.join("checkpoint_final.json"), "{}").unwrap();
    assert!(
        train_args(&layout).contains(&"--continue".to_string()),
        "a finished run must not be trained again"
    );
}

#[test]
fn markdown_spread_needs_two_folds() {
    use std::collections::BTreeMap;
    use swin_umamba::ablate::aggregate::{to_markdown, DatasetTable, TableRow};
    let row = |initialisation: &str, folds: usize| TableRow {
        model: "swin-umamba".into(),
        initialisation: initialisation.into(),
        folds,
        metrics: BTreeMap::from([("dice".to_string(), (0.8123, 0.0456))]),
        gain_over_scratch: BTreeMap::new(),
        cost: None,
    };
    let table = DatasetTable {
        dataset: "Dataset007_Tiny".into(),
        metrics: vec!["dice".into()],
        rows: vec![row("imagenet", 3), row("scratch", 1)],
    };
    let markdown = to_markdown(&table);
    println!("{markdown}");
    assert!(
        markdown.contains("| swin-umamba | imagenet | 3 | 81.23 ± 4.56 |"),
        "three folds show their spread"
    );
    assert!(
        markdown.contains("| swin-umamba | scratch | 1 | 81.23 |"),
        "one fold has no spread to show"
    );
}

#[test]
fn missing_inputs_listed_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = BASE.replace(
        "{ id: 7, name: Tiny, metrics: [dice] }",
        "{ id: 7, name: Tiny, metrics: [dice], convert: { from: kvasir, source: nowhere } }",
    );
    let experiment = Experiment::load(&write_yaml(dir.path(), &text)).unwrap();
    let missing = experiment.missing_inputs();
    println!("{missing:?}");
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        missing[0].starts_with("datasets.convert.source: "),
        "{missing:?}"
    );
    assert!(missing[0].ends_with("nowhere not found"), "{missing:?}");
    assert!(
        missing[1].starts_with("initialisations.checkpoint: "),
        "{missing:?}"
    );
    assert!(
        missing[1].ends_with("weights/vmamba.pth not found"),
        "{missing:?}"
    );

    // A run stops before any task; --dry-run only warns.
    let binary = env!("CARGO_BIN_EXE_swin-umamba");
    let path = dir.path().join("experiment.yaml");
    let run = std::process::Command::new(binary)
        .args(["ablate", path.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("names inputs that do not exist"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("runs").exists(),
        "a refused run wrote output"
    );
    let dry = std::process::Command::new(binary)
        .args(["ablate", path.to_str().unwrap(), "--dry-run"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: datasets.convert.source"),
        "{stderr}"
    );
    // Dataset 8 has no convert block and no raw folder, so its prepare task would fail.
    assert!(
        stderr.contains("datasets: Dataset008_Cells not found in"),
        "{stderr}"
    );
    assert!(!stderr.contains("Dataset007_Tiny not found"), "{stderr}");
}
