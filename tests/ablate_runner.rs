//! The experiment runner end to end on a tiny grid: it expands the grid, runs every task
//! with the real subcommands, skips finished tasks on a second call, resumes a cell whose
//! runner was killed mid-training, and aggregates the folds into the tables.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_swin-umamba");

/// Two folds of nnU-Net on a 12-case synthetic dataset, 48×48 patches, a few iterations.
fn write_experiment(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("raw");
    swin_umamba::ablate::synthetic::write_organ_dataset(&raw.join("Dataset977_Tiny"), 12, 48, 5)
        .unwrap();
    let yaml = r#"
name: tiny
output_dir: out
raw_dir: raw
datasets:
  - { id: 977, name: Tiny, metrics: [dice, nsd] }
models: [nnunet]
initialisations:
  - { name: scratch }
folds: ["0", "1"]
training:
  epochs: 3
  iterations_per_epoch: 3
  val_iterations_per_epoch: 1
  patch_size: [48, 48]
  batch_size: 2
seed: 3
"#;
    let path = dir.join("tiny.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn ablate(experiment: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("ablate")
        .arg(experiment)
        .env_remove("nnUNet_raw");
    command
        .env_remove("nnUNet_preprocessed")
        .env_remove("nnUNet_results");
    command
}

#[test]
fn runner_runs_skips_resumes_and_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = write_experiment(dir.path());
    let out = dir.path().join("out");

    // First call, killed once fold 1 has written a checkpoint. The runner starts fold 0
    // first and runs one task at a time, so fold 0 is finished by then.
    let fold1 = out.join("results/nnunet__scratch/Dataset977_Tiny/nnunet__nnUNetPlans__2d/fold_1");
    let mut child = ablate(&experiment)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !fold1.join("checkpoint_latest.json").exists() {
        assert!(
            Instant::now() < deadline,
            "fold 1 wrote no checkpoint within 600 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "runner ended before fold 1 checkpointed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL the runner and the train-fold it started, as a crash or a scheduler would.
    let pid = child.id();
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string()])
        .status();
    child.kill().unwrap();
    child.wait().unwrap();
    let cell1 = out.join("cells/Dataset977_Tiny/nnunet/scratch/fold_1");
    assert!(
        !cell1.join("train/task.done").exists(),
        "killed training marked done"
    );

    // Second call resumes fold 1 with --continue and finishes everything.
    let output = ablate(&experiment).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "second call failed:\n{stderr}");
    assert!(
        stderr.contains("done (earlier run)"),
        "finished tasks not skipped:\n{stderr}"
    );
    let log = std::fs::read_to_string(cell1.join("train/task.log")).unwrap();
    assert!(log.contains("--continue"), "fold 1 was not resumed:\n{log}");
    let training_log = std::fs::read_to_string(fold1.join("training_log.txt")).unwrap();
    let epochs = training_log
        .lines()
        .filter(|l| l.contains("epoch") && l.contains("train_loss"))
        .count();
    println!("fold 1 training log:\n{training_log}");
    assert!(epochs >= 3, "fold 1 logged {epochs} epochs");

    // Third call: nothing left to run.
    let output = ablate(&experiment).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "third call failed:\n{stderr}");
    assert!(
        !stderr.contains("running"),
        "third call ran a task:\n{stderr}"
    );

    // Aggregation: one row over both folds with DSC and NSD, and the chart.
    let csv = std::fs::read_to_string(out.join("tables/results.csv")).unwrap();
    println!("{csv}");
    let row = csv.lines().nth(1).expect("a table row");
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells[1], "nnunet");
    assert_eq!(cells[3], "2", "folds aggregated");
    let dice: f64 = cells[4].parse().expect("a DSC mean");
    assert!((0.0..=1.0).contains(&dice), "DSC {dice}");
    assert!(out.join("tables/Dataset977_Tiny.png").exists());
    assert!(out.join("tables/results.md").exists());
}

#[test]
fn dry_run_prints_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = write_experiment(dir.path());
    let output = ablate(&experiment).arg("--dry-run").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "swin-umamba plan -d 977",
        "swin-umamba preprocess -d 977",
        "train-fold -d 977",
        "-f 1",
        "swin-umamba evaluate",
    ] {
        assert!(
            stdout.contains(expected),
            "dry run lacks `{expected}`:\n{stdout}"
        );
    }
    assert!(
        !dir.path().join("out/results").exists(),
        "dry run wrote results"
    );
}

#[test]
fn second_runner_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = write_experiment(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // This test process plays the first runner by holding the runner lock.
    let _first_runner_lock =
        swin_umamba::ablate::runner::lock_exclusive(&out.join("ablate.lock")).unwrap();
    let output = ablate(&experiment).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a second runner started");
    assert!(
        stderr.contains("another `swin-umamba ablate` is running on"),
        "{stderr}"
    );
    assert!(
        !out.join("cells").exists(),
        "the refused runner started tasks"
    );
}
