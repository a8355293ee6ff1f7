//! `train-fold` on real preprocessed data. The binary converts Kvasir-SEG cases, plans them at
//! a 64x64 patch with batch 2 and preprocesses them. It then trains a few epochs of a few
//! iterations on the CPU, with nnU-Net's network and with a reduced-width Swin-UMamba from
//! scratch and from a VMamba checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use swin_umamba::nets::{self, ModelName, SegmentationNet};
use swin_umamba::train::checkpoint;
use swin_umamba::weights::vmamba::{load_vmamba_imagenet_file, VmambaTarget};
use tch::{Device, Kind, Tensor};

const BINARY: &str = env!("CARGO_BIN_EXE_swin-umamba");
/// Cases kept from Kvasir-SEG: enough for nnU-Net's five folds.
const CASES: usize = 6;
/// Encoder widths that fit the reduced-width VMamba v0 checkpoint of the fixtures.
const REDUCED_SWIN_UMAMBA: &str = "dims: [8, 16, 32, 64]\ndepths: [1, 1, 2, 1]\n\
     feat_size: [4, 8, 16, 32, 64]\nhidden_size: 64\n";

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn vmamba_checkpoint() -> PathBuf {
    shared().join("fixtures/checkpoints/vmamba_v0_tiny_reduced_ckpt.pth")
}

struct Prepared {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model_config: PathBuf,
}

fn run_binary(root: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(BINARY)
        .args(args)
        .env("nnUNet_raw", root.join("raw"))
        .env("nnUNet_preprocessed", root.join("preprocessed"))
        .env("nnUNet_results", root.join("results"))
        .output()
        .expect("the swin-umamba binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "swin-umamba {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    output
}

/// Converts, plans and preprocesses the dataset once for every test of this file.
fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let source = shared().join("data/kvasir-seg");
        let override_path = root.join("patch64.yaml");
        std::fs::write(
            &override_path,
            "base: 2d\npatch_size: [64, 64]\nbatch_size: 2\nsource: CPU test size\n",
        )
        .unwrap();
        let model_config = root.join("swin_umamba_reduced.yaml");
        std::fs::write(&model_config, REDUCED_SWIN_UMAMBA).unwrap();
        let limit = CASES.to_string();
        run_binary(
            &root,
            &[
                "convert",
                "--layout",
                "kvasir",
                "--source",
                source.to_str().unwrap(),
                "--id",
                "901",
                "--name",
                "Kvasir",
                "--limit",
                &limit,
            ],
        );
        run_binary(
            &root,
            &[
                "plan",
                "-d",
                "901",
                "--override",
                override_path.to_str().unwrap(),
            ],
        );
        run_binary(&root, &["preprocess", "-d", "901"]);
        Prepared {
            _dir: dir,
            root,
            model_config,
        }
    })
}

fn train_fold(prepared: &Prepared, results: &str, extra: &[&str]) -> (PathBuf, String) {
    let results_dir = prepared.root.join(results);
    let mut args = vec![
        "train-fold",
        "-d",
        "901",
        "-c",
        "2d",
        "--results",
        results_dir.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    let output = run_binary(&prepared.root, &args);
    (
        results_dir,
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

fn train_losses(sidecar: &Path) -> Vec<f64> {
    let state = checkpoint::read_state(sidecar).unwrap();
    state.history.epochs.iter().map(|e| e.train_loss).collect()
}

fn assert_run_files(fold_dir: &Path) {
    for name in [
        "checkpoint_final.json",
        "checkpoint_best.json",
        "training_log.txt",
        "progress.png",
        "model_config.yaml",
    ] {
        assert!(
            fold_dir.join(name).is_file(),
            "{name} missing in {fold_dir:?}"
        );
    }
    let events: Vec<_> = std::fs::read_dir(fold_dir.join("tensorboard"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        })
        .collect();
    assert_eq!(events.len(), 1, "one TensorBoard event file expected");
    let trainer_dir = fold_dir.parent().unwrap();
    for name in ["plans.json", "dataset.json"] {
        assert!(
            trainer_dir.join(name).is_file(),
            "{name} missing in {trainer_dir:?}"
        );
    }
}

fn final_weights(fold_dir: &Path) -> BTreeMap<String, Tensor> {
    checkpoint::load(&fold_dir.join("checkpoint_final.json"))
        .unwrap()
        .weights
        .into_iter()
        .collect()
}

#[test]
fn nnunet_fold_lowers_loss_and_writes_files() {
    let prepared = prepared();
    let (results, _) = train_fold(
        prepared,
        "results_nnunet",
        &[
            "-f",
            "0",
            "--trainer",
            "nnunet",
            "--epochs",
            "4",
            "--iterations",
            "6",
            "--val-iterations",
            "1",
        ],
    );
    let fold_dir = results.join("Dataset901_Kvasir/nnunet__nnUNetPlans__2d/fold_0");
    assert_run_files(&fold_dir);
    let losses = train_losses(&fold_dir.join("checkpoint_final.json"));
    println!("nnunet training losses per epoch: {losses:?}");
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < losses[0],
        "training loss did not fall: {losses:?}"
    );

    let plans: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fold_dir.parent().unwrap().join("plans.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        plans["configurations"]["2d"]["patch_size"],
        serde_json::json!([64, 64])
    );
}

#[test]
fn swin_umamba_scratch_lowers_loss() {
    let prepared = prepared();
    let config = prepared.model_config.to_str().unwrap();
    let (results, stdout) = train_fold(
        prepared,
        "results_swin_scratch",
        &[
            "-f",
            "all",
            "--trainer",
            "swin-umamba",
            "--model-config",
            config,
            "--epochs",
            "3",
            "--iterations",
            "3",
            "--val-iterations",
            "1",
            "--val-disable-tta",
        ],
    );
    let fold_dir = results.join("Dataset901_Kvasir/swin-umamba__nnUNetPlans__2d/fold_all");
    assert!(
        stdout.contains("with sliding windows, no mirroring"),
        "--val-disable-tta not reported:\n{stdout}"
    );
    assert!(fold_dir.join("validation/summary.json").exists());
    assert_run_files(&fold_dir);
    let losses = train_losses(&fold_dir.join("checkpoint_final.json"));
    println!("swin-umamba training losses per epoch: {losses:?}");
    assert_eq!(losses.len(), 3);
    assert!(
        losses[2] < losses[0],
        "training loss did not fall: {losses:?}"
    );
    let log = std::fs::read_to_string(fold_dir.join("training_log.txt")).unwrap();
    assert!(
        !log.contains("encoder frozen"),
        "a scratch run must not freeze the encoder"
    );
}

/// Builds the reduced Swin-UMamba, loads the VMamba checkpoint and returns the encoder's
/// parameters, for comparison with the trained checkpoint.
fn encoder_after_load(config_path: &Path) -> BTreeMap<String, Tensor> {
    let config = ModelName::SwinUMamba.read_config(config_path).unwrap();
    let mut model =
        nets::build(ModelName::SwinUMamba, &config, 3, 2, (64, 64), Device::Cpu).unwrap();
    load_vmamba_imagenet_file(
        &vmamba_checkpoint(),
        model.var_store_mut(),
        VmambaTarget::SwinUMamba,
    )
    .unwrap();
    model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(name, _)| name.starts_with("vssm_encoder."))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn swin_umamba_pretrained_freezes_encoder() {
    let prepared = prepared();
    let config = prepared.model_config.to_str().unwrap();
    let checkpoint_path = vmamba_checkpoint();
    let (results, _) = train_fold(
        prepared,
        "results_swin_pretrained",
        &[
            "-f",
            "0",
            "--trainer",
            "swin-umamba",
            "--model-config",
            config,
            "--pretrained",
            checkpoint_path.to_str().unwrap(),
            "--epochs",
            "2",
            "--iterations",
            "2",
            "--val-iterations",
            "1",
        ],
    );
    let fold_dir = results.join("Dataset901_Kvasir/swin-umamba__nnUNetPlans__2d/fold_0");
    assert_run_files(&fold_dir);
    let log = std::fs::read_to_string(fold_dir.join("training_log.txt")).unwrap();
    assert!(
        log.contains("read as Vmamba"),
        "the log lacks the checkpoint kind"
    );
    assert!(
        log.contains("75 loaded"),
        "the log lacks the load report:\n{log}"
    );
    assert!(
        log.contains("encoder frozen"),
        "the log lacks the freeze state"
    );

    let (frozen_max, patch_embed_max) = encoder_changes(&prepared.model_config, &fold_dir);
    assert_eq!(frozen_max, 0.0, "frozen encoder parameters changed");
    assert!(
        patch_embed_max > 0.0,
        "the patch embedding must train while frozen"
    );
}

/// Largest change from the loaded VMamba weights to the final ones, over the encoder
/// parameters that the freeze covers and over the patch embedding.
fn encoder_changes(model_config: &Path, fold_dir: &Path) -> (f64, f64) {
    let loaded = encoder_after_load(model_config);
    let trained = final_weights(fold_dir);
    let mut frozen_max = 0.0f64;
    let mut patch_embed_max = 0.0f64;
    for (name, value) in &loaded {
        let diff = max_abs_diff(value, &trained[name]);
        if name.contains("patch_embed") {
            patch_embed_max = patch_embed_max.max(diff);
        } else {
            frozen_max = frozen_max.max(diff);
        }
    }
    println!(
        "max change of freeze-covered encoder parameters {frozen_max:e}, of the patch \
         embedding {patch_embed_max:e}"
    );
    (frozen_max, patch_embed_max)
}

#[test]
fn freeze_override_unfreezes_after_its_epochs() {
    let prepared = prepared();
    let config = prepared.model_config.to_str().unwrap();
    let checkpoint_path = vmamba_checkpoint();
    let (results, _) = train_fold(
        prepared,
        "results_swin_freeze_one",
        &[
            "-f",
            "0",
            "--trainer",
            "swin-umamba",
            "--model-config",
            config,
            "--pretrained",
            checkpoint_path.to_str().unwrap(),
            "--freeze-encoder-epochs",
            "1",
            "--epochs",
            "2",
            "--iterations",
            "2",
            "--val-iterations",
            "1",
            "--no-validation",
        ],
    );
    let fold_dir = results.join("Dataset901_Kvasir/swin-umamba__nnUNetPlans__2d/fold_0");
    let log = std::fs::read_to_string(fold_dir.join("training_log.txt")).unwrap();
    let frozen_at = log.find("encoder frozen").expect("epoch 0 is frozen");
    let trainable_at = log
        .find("encoder trainable")
        .expect("epoch 1 trains the encoder");
    assert!(
        frozen_at < trainable_at,
        "freeze states out of order:\n{log}"
    );
    let (frozen_max, _) = encoder_changes(&prepared.model_config, &fold_dir);
    assert!(
        frozen_max > 0.0,
        "the encoder must train once its freeze epochs are over"
    );
}

#[test]
fn freeze_override_without_pretrained_is_refused() {
    let output = Command::new(BINARY)
        .args([
            "train-fold",
            "-d",
            "901",
            "-f",
            "0",
            "--trainer",
            "swin-umamba",
            "--freeze-encoder-epochs",
            "3",
        ])
        .env("nnUNet_results", "/nonexistent-results")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "accepted a freeze with no encoder"
    );
    assert!(
        stderr.contains("--freeze-encoder-epochs 3 needs --pretrained"),
        "unhelpful error: {stderr}"
    );
}

#[test]
fn pretrained_vmamba_rejected_for_nnunet() {
    let prepared = prepared();
    let checkpoint_path = vmamba_checkpoint();
    let output = Command::new(BINARY)
        .args([
            "train-fold",
            "-d",
            "901",
            "-f",
            "0",
            "--trainer",
            "nnunet",
            "--pretrained",
            checkpoint_path.to_str().unwrap(),
            "--epochs",
            "1",
            "--iterations",
            "1",
        ])
        .env("nnUNet_preprocessed", prepared.root.join("preprocessed"))
        .env("nnUNet_results", prepared.root.join("results_rejected"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "nnunet accepted a VMamba checkpoint"
    );
    assert!(
        stderr.contains("--model swin-umamba"),
        "unhelpful error: {stderr}"
    );
    let fold_dir = prepared
        .root
        .join("results_rejected/Dataset901_Kvasir/nnunet__nnUNetPlans__2d/fold_0");
    assert!(
        !fold_dir.exists(),
        "a rejected run left {fold_dir:?} behind"
    );
}

#[test]
fn continued_run_matches_uninterrupted() {
    let prepared = prepared();
    let common = [
        "-f",
        "1",
        "--trainer",
        "nnunet",
        "--epochs",
        "2",
        "--iterations",
        "2",
        "--val-iterations",
        "1",
    ];
    let (whole, _) = train_fold(prepared, "results_whole", &common);

    // The interrupted run also builds every batch on demand, so the test also shows that
    // prefetching does not change the batches.
    let mut first_half = common.to_vec();
    first_half.extend_from_slice(&["--stop-epoch", "1", "--prefetch", "0"]);
    let (split, _) = train_fold(prepared, "results_split", &first_half);
    let mut second_half = common.to_vec();
    second_half.extend_from_slice(&["--continue", "--prefetch", "0"]);
    train_fold(prepared, "results_split", &second_half);

    let fold = "Dataset901_Kvasir/nnunet__nnUNetPlans__2d/fold_1";
    let whole_weights = final_weights(&whole.join(fold));
    let split_weights = final_weights(&split.join(fold));
    assert_eq!(
        checkpoint::read_state(&split.join(fold).join("checkpoint_final.json"))
            .unwrap()
            .next_epoch,
        2
    );
    let mut max_diff = 0.0f64;
    for (name, value) in &whole_weights {
        max_diff = max_diff.max(max_abs_diff(value, &split_weights[name]));
    }
    println!("max weight difference, continued vs uninterrupted: {max_diff:e}");
    assert_eq!(max_diff, 0.0, "the continued run ended with other weights");
}

#[test]
fn run_checkpoint_loads_strictly() {
    let prepared = prepared();
    let short = [
        "-f",
        "2",
        "--trainer",
        "nnunet",
        "--epochs",
        "1",
        "--iterations",
        "1",
        "--val-iterations",
        "1",
    ];
    let (first, _) = train_fold(prepared, "results_source", &short);
    let sidecar =
        first.join("Dataset901_Kvasir/nnunet__nnUNetPlans__2d/fold_2/checkpoint_final.json");

    let mut from_checkpoint = short.to_vec();
    from_checkpoint.extend_from_slice(&["--pretrained", sidecar.to_str().unwrap()]);
    let (second, _) = train_fold(prepared, "results_from_checkpoint", &from_checkpoint);
    let log_path = second.join("Dataset901_Kvasir/nnunet__nnUNetPlans__2d/fold_2/training_log.txt");
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("read as RunCheckpoint"),
        "the log lacks the checkpoint kind"
    );
    assert!(
        log.contains("strictly"),
        "the log lacks the strict load:\n{log}"
    );

    // The nnunet checkpoint does not fit Swin-UMamba, and a strict load must say so.
    let config = prepared.model_config.to_str().unwrap();
    let output = Command::new(BINARY)
        .args([
            "train-fold",
            "-d",
            "901",
            "-f",
            "2",
            "--trainer",
            "swin-umamba",
            "--model-config",
            config,
            "--pretrained",
            sidecar.to_str().unwrap(),
            "--epochs",
            "1",
        ])
        .env("nnUNet_preprocessed", prepared.root.join("preprocessed"))
        .env("nnUNet_results", prepared.root.join("results_mismatch"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a mismatched checkpoint was accepted"
    );
    assert!(
        stderr.contains("do not match the network"),
        "unhelpful error: {stderr}"
    );
}

#[test]
fn missing_pretrained_file_names_the_fix() {
    let prepared = prepared();
    let missing = prepared.root.join("no-such-vmamba.pth");
    let output = Command::new(BINARY)
        .args([
            "train-fold",
            "-d",
            "901",
            "-f",
            "0",
            "--trainer",
            "swin-umamba",
        ])
        .arg("--pretrained")
        .arg(&missing)
        .env("nnUNet_preprocessed", prepared.root.join("preprocessed"))
        .env("nnUNet_results", prepared.root.join("results_missing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a missing checkpoint was accepted"
    );
    assert!(stderr.contains("no such file"), "{stderr}");
    assert!(stderr.contains("without --pretrained"), "{stderr}");
    let missing_text = missing.display().to_string();
    assert_eq!(
        stderr.matches(missing_text.as_str()).count(),
        1,
        "the path is repeated: {stderr}"
    );
}
