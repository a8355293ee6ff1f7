//! `ablate --slurm`: the batch scripts it writes, and a tiny grid run to its tables on a
//! real Slurm cluster. The cluster test needs `sinfo` to reach a controller (for example
//! one started by `scripts/slurm-local start`, which `.ci/run` does). Without one it
//! prints that it was skipped and passes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_swin-umamba");

/// Writes a grid of one nnU-Net fold on a 10-case synthetic dataset (48×48 patches, a few
/// iterations) with a `slurm` block that names every resource.
fn write_experiment(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("raw");
    swin_umamba::ablate::synthetic::write_organ_dataset(&raw.join("Dataset978_Tiny"), 10, 48, 5)
        .unwrap();
    let yaml = r#"
name: tiny-slurm
output_dir: out
raw_dir: raw
datasets:
  - { id: 978, name: Tiny, metrics: [dice] }
models: [nnunet]
initialisations:
  - { name: scratch }
folds: ["0"]
training:
  epochs: 2
  iterations_per_epoch: 2
  val_iterations_per_epoch: 1
  patch_size: [48, 48]
  batch_size: 2
seed: 5
slurm:
  time: "00:30:00"
  cpus_per_task: 1
  mem: 4G
  gres: gpu:1
  extra_args: [--comment=tiny]
"#;
    let path = dir.join("tiny.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn ablate(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .arg("ablate")
        .args(args)
        .current_dir(dir)
        .env_remove("nnUNet_raw")
        .env_remove("nnUNet_preprocessed")
        .env_remove("nnUNet_results")
        .output()
        .expect("the swin-umamba binary runs")
}

/// Splits the `--dry-run` output into (header line, script) pairs: each script follows a
/// `# TASK -> PATH` line and starts with `#!/bin/bash`.
fn scripts(stdout: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut found: Vec<(String, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let starts_script = lines.get(i + 1) == Some(&"#!/bin/bash");
        if line.starts_with("# ") && line.contains(" -> ") && starts_script {
            found.push((line[2..].to_string(), String::new()));
        } else if let Some((_, script)) = found.last_mut() {
            script.push_str(line);
            script.push('\n');
        }
    }
    found
}

#[test]
fn dry_run_prints_chained_scripts() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(dir.path());
    let output = ablate(dir.path(), &["tiny.yaml", "--slurm", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let scripts = scripts(&stdout);
    let headers: Vec<&str> = scripts.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        scripts.len(),
        4,
        "prepare, train, evaluate, aggregate: {headers:?}"
    );
    for (header, script) in &scripts {
        assert!(
            script.contains("#SBATCH --time=00:30:00"),
            "{header}:\n{script}"
        );
        assert!(
            script.contains("#SBATCH --cpus-per-task=1"),
            "{header}:\n{script}"
        );
        assert!(script.contains("#SBATCH --mem=4G"), "{header}:\n{script}");
        assert!(
            script.contains("#SBATCH --comment=tiny"),
            "{header}:\n{script}"
        );
        assert!(
            script.contains(&format!("--chdir={}", dir.path().display())),
            "{header}:\n{script}"
        );
        assert!(
            !script.contains("#SBATCH --chdir") && !script.contains("#SBATCH --output"),
            "paths go on sbatch's command line: {header}:\n{script}"
        );
        let wants_gpu = header.starts_with("train ");
        assert_eq!(
            script.contains("#SBATCH --gres=gpu:1"),
            wants_gpu,
            "gres belongs to network tasks only: {header}:\n{script}"
        );
    }
    let train = &scripts[1].1;
    assert!(
        train.contains("--run-task 'train Dataset978_Tiny/nnunet/scratch/fold_0'"),
        "{train}"
    );
    assert!(
        scripts[3].1.contains("--aggregate-only"),
        "{}",
        scripts[3].1
    );
    assert!(
        !dir.path().join("out/cells").exists(),
        "--dry-run wrote task folders"
    );
}

#[test]
fn unknown_run_task_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(dir.path());
    let output = ablate(dir.path(), &["tiny.yaml", "--run-task", "train nothing"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("\"train nothing\" is not a task of tiny-slurm"),
        "{stderr}"
    );
}

fn cluster_reachable() -> bool {
    Command::new("sinfo")
        .arg("--noheader")
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}

#[test]
fn slurm_runs_grid_to_tables() {
    if !cluster_reachable() {
        println!(
            "skipped: sinfo reaches no Slurm controller (scripts/slurm-local start sets one \
             up on this machine)"
        );
        return;
    }
    // A space in the path: sbatch splits `#SBATCH` lines at spaces.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("grid with space");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = tempfile::TempDir::new_in(&dir).unwrap();
    let experiment = write_experiment(dir.path());
    // The local cluster has no GPU, so drop the gres request for the real run.
    let yaml = std::fs::read_to_string(&experiment)
        .unwrap()
        .replace("  gres: gpu:1\n", "");
    std::fs::write(&experiment, yaml).unwrap();

    let output = ablate(dir.path(), &["tiny.yaml", "--slurm"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("[ablate] tables: job "), "{stderr}");
    let cell = dir
        .path()
        .join("out/cells/Dataset978_Tiny/nnunet/scratch/fold_0");
    assert!(cell.join("train/slurm_job").exists(), "{stderr}");
    assert!(cell.join("train/job.sbatch").exists(), "{stderr}");

    let tables = dir.path().join("out/tables/results.md");
    let deadline = Instant::now() + Duration::from_secs(900);
    while !tables.exists() {
        assert!(
            Instant::now() < deadline,
            "no tables within 900 s; squeue:\n{}",
            String::from_utf8_lossy(&Command::new("squeue").output().unwrap().stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for task in ["prepare", "train", "evaluate"] {
        let marker = if task == "prepare" {
            dir.path().join("out/datasets/Dataset978_Tiny/task.done")
        } else {
            cell.join(task).join("task.done")
        };
        assert!(marker.exists(), "{task} did not finish: {marker:?}");
    }
    let table = std::fs::read_to_string(&tables).unwrap();
    assert!(table.contains("| nnunet | scratch | 1 |"), "{table}");

    // A second call finds everything done and submits nothing.
    let output = ablate(dir.path(), &["tiny.yaml", "--slurm"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.matches("done (earlier run)").count(), 3, "{stderr}");
    assert!(stderr.contains("no job submitted"), "{stderr}");
}
