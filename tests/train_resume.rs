//! `train-fold --continue` after SIGKILL: a run killed mid-epoch and continued ends with the
//! same epochs and exactly the same weights as an uninterrupted run with the same seed.
//!
//! Both runs use the binary's synthetic mode (tiny U-Net, 32x32 patches) on one thread, so
//! that libtorch's CPU kernels reduce in a fixed order.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swin_umamba::train::checkpoint;

const EPOCHS: &str = "4";

fn fold_dir(results: &Path) -> PathBuf {
    results
        .join("Dataset9")
        .join("nnunet__nnUNetPlans__2d")
        .join("fold_0")
}

fn command(results: &Path, delay_ms: u64, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swin-umamba"));
    cmd.args([
        "train-fold",
        "-d",
        "9",
        "-f",
        "0",
        "--trainer",
        "nnunet",
        "--synthetic",
    ])
    .args([
        "--epochs",
        EPOCHS,
        "--iterations",
        "6",
        "--val-iterations",
        "2",
    ])
    .args(["--seed", "11", "--threads", "1"])
    .arg("--synthetic-delay-ms")
    .arg(delay_ms.to_string())
    .arg("--results")
    .arg(results)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if resume {
        cmd.arg("--continue");
    }
    cmd
}

fn run_to_end(mut cmd: Command) {
    let out = cmd.output().expect("the binary starts");
    assert!(
        out.status.success(),
        "train-fold failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn latest_epoch(fold: &Path) -> Option<usize> {
    checkpoint::read_state(&checkpoint::sidecar_path(fold, "checkpoint_latest"))
        .ok()
        .map(|s| s.next_epoch)
}

#[test]
fn sigkill_then_continue_matches_uninterrupted() {
    let reference = tempfile::tempdir().unwrap();
    run_to_end(command(reference.path(), 0, false));

    // Batches take 40 ms each, so an epoch (8 batches) lasts about 0.3 s and the kill, sent
    // 0.1 s after checkpoint_latest reports two finished epochs, lands inside epoch 2 or 3.
    let killed = tempfile::tempdir().unwrap();
    let fold = fold_dir(killed.path());
    let mut child = command(killed.path(), 40, false).spawn().unwrap();
    let started = Instant::now();
    while latest_epoch(&fold).unwrap_or(0) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never reached epoch 2"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child was not killed: {status:?}"
    );

    let at_kill = latest_epoch(&fold).expect("checkpoint_latest is readable after the kill");
    println!("killed with {at_kill} finished epochs");
    assert!(at_kill < 4, "the kill came after the last epoch");
    checkpoint::load(&checkpoint::sidecar_path(&fold, "checkpoint_latest"))
        .expect("checkpoint_latest loads with matching CRCs");
    assert!(!checkpoint::sidecar_path(&fold, "checkpoint_final").exists());

    run_to_end(command(killed.path(), 0, true));

    let ours = checkpoint::load(&checkpoint::sidecar_path(&fold, "checkpoint_final")).unwrap();
    let theirs = checkpoint::load(&checkpoint::sidecar_path(
        &fold_dir(reference.path()),
        "checkpoint_final",
    ))
    .unwrap();
    let epochs: Vec<usize> = ours.state.history.epochs.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, vec![0, 1, 2, 3], "each epoch exactly once");
    assert_eq!(ours.state.next_epoch, theirs.state.next_epoch);
    assert_eq!(ours.weights.len(), theirs.weights.len());
    let mut max_diff = 0f64;
    for ((na, ta), (nb, tb)) in ours.weights.iter().zip(&theirs.weights) {
        assert_eq!(na, nb);
        max_diff = max_diff.max(f64::try_from((ta - tb).abs().max()).unwrap());
    }
    println!("max |weight difference| continued vs uninterrupted: {max_diff:e}");
    assert_eq!(max_diff, 0.0, "continued run ends with different weights");
    for ((na, ta), (_, tb)) in ours.optimizer.iter().zip(&theirs.optimizer) {
        assert!(ta.equal(tb), "optimiser state {na} differs");
    }
    let log = std::fs::read_to_string(fold.join("training_log.txt")).unwrap();
    assert!(
        log.contains("continuing from"),
        "the log does not record the continuation"
    );
}

#[test]
fn invalid_arguments_exit_nonzero_without_output() {
    let results = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--trainer", "bogus"], "bogus"),
        (&["--device", "tpu"], "tpu"),
        (&["--epochs", "0"], "--epochs 0"),
        (&["--stop-epoch", "5000"], "--stop-epoch 5000"),
    ];
    for (extra, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
            .args(["train-fold", "-d", "9", "-f", "0", "--synthetic"])
            .args(extra)
            .arg("--results")
            .arg(results.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{extra:?}: {}", stderr.trim());
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{extra:?}: the error does not name the value"
        );
    }
    let written = std::fs::read_dir(results.path()).unwrap().count();
    assert_eq!(written, 0, "rejected runs wrote into the results folder");
}

#[test]
fn missing_dataset_names_the_fix() {
    let preprocessed = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .args(["train-fold", "-d", "999", "-f", "0"])
        .arg("--preprocessed")
        .arg(preprocessed.path())
        .arg("--results")
        .arg(results.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing dataset was accepted");
    assert!(
        stderr.contains("swin-umamba preprocess -d 999"),
        "the error does not name the fix: {stderr}"
    );
    assert!(
        stderr.contains("dataset \"999\" not found in"),
        "the error does not name the dataset: {stderr}"
    );
    assert!(
        !stderr.contains("--raw"),
        "train-fold has no --raw flag: {stderr}"
    );
}
