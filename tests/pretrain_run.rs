//! Encoder pretraining: the classifier has the official VMamba v0 layout, a short run on
//! real photos lowers the loss and writes a checkpoint that the Swin-UMamba loaders read
//! exactly as they read the official file, and `--continue` resumes without losing or
//! repeating an epoch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use swin_umamba::nets::swin_umamba::SwinUMambaConfig;
use swin_umamba::nets::swin_umamba_d::SwinUMambaDConfig;
use swin_umamba::nets::{build, ModelConfig, ModelName, SegmentationNet};
use swin_umamba::pretrain::classifier::{ClassifierConfig, VmambaClassifier};
use swin_umamba::pretrain::run::{pretrain, sort_official_order, Recipe};
use swin_umamba::weights::vmamba::{load_vmamba_imagenet_file, VmambaTarget};
use tch::{Device, Tensor};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// Returns the reduced width of the fixtures' checkpoint: dims [8, 16, 32, 64], depths [1, 1, 2, 1].
fn reduced() -> ClassifierConfig {
    ClassifierConfig {
        dims: vec![8, 16, 32, 64],
        depths: vec![1, 1, 2, 1],
        drop_path_rate: 0.1,
        ..ClassifierConfig::tiny()
    }
}

fn recipe(epochs: usize) -> Recipe {
    Recipe {
        epochs,
        batch_size: 40,
        image_size: 32,
        lr: 3e-3,
        warmup_lr: 1e-4,
        min_lr: 1e-4,
        warmup_epochs: 1,
        weight_decay: 0.05,
        label_smoothing: 0.1,
        drop_path: 0.1,
        clip_grad: 5.0,
        seed: 7,
        workers: 2,
        val_every: 10,
    }
}

fn report() -> Json {
    let path = shared().join("fixtures/checkpoints/pretrained_load_report.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn classifier_matches_official_layout() {
    let model = VmambaClassifier::new(&reduced(), 1000, Device::Cpu);
    let mut ours: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    sort_official_order(&mut ours);
    let official = report()["checkpoint_keys"].as_array().unwrap().clone();
    assert_eq!(ours.len(), official.len(), "number of state-dict entries");
    for ((name, tensor), entry) in ours.iter().zip(&official) {
        assert_eq!(name, entry["key"].as_str().unwrap(), "key order");
        let shape: Vec<i64> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(tensor.size(), shape, "shape of {name}");
    }
}

fn tiny_model(name: ModelName, in_channels: i64, classes: i64) -> swin_umamba::nets::Model {
    let (dims, depths) = (vec![8, 16, 32, 64], vec![1, 1, 2, 1]);
    let config = match name {
        ModelName::SwinUMamba => ModelConfig::SwinUMamba(SwinUMambaConfig {
            feat_size: vec![4, 8, 16, 32, 64],
            hidden_size: 64,
            dims,
            depths,
            ..SwinUMambaConfig::default()
        }),
        _ => ModelConfig::SwinUMambaD(SwinUMambaDConfig {
            dims,
            depths,
            ..SwinUMambaDConfig::default()
        }),
    };
    build(name, &config, in_channels, classes, (64, 64), Device::Cpu).unwrap()
}

fn key_lists(report: &swin_umamba::weights::vmamba::LoadReport) -> [Vec<String>; 3] {
    let keys = |list: &[(String, String)]| list.iter().map(|(k, _)| k.clone()).collect();
    [
        keys(&report.loaded),
        keys(&report.skipped),
        keys(&report.passed),
    ]
}

fn official_lists(load: &str) -> [Vec<String>; 3] {
    let entry = &report()["loads"][load];
    let strings = |key: &str| -> Vec<String> {
        entry[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    [
        strings("loaded_ckpt_keys"),
        strings("skipped_by_skip_list"),
        strings("passed_no_match_or_in_chans"),
    ]
}

fn read_safetensors(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn imagenet_sample_run_loads_like_official() {
    let data = shared().join("data/imagenet-sample");
    let out = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let history = pretrain(&data, out.path(), recipe(3), reduced(), Device::Cpu, false).unwrap();
    let losses: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    println!("training losses per epoch (200 photos, 32×32, reduced width): {losses:?}");
    assert_eq!(history.len(), 3);
    assert!(
        losses[2] < losses[0],
        "training loss did not fall: {losses:?}"
    );

    let pth = out.path().join("checkpoint_final.pth");
    let saved = read_safetensors(&out.path().join("checkpoint_final.safetensors"));
    let loads = [
        (
            ModelName::SwinUMamba,
            1,
            14,
            VmambaTarget::SwinUMamba,
            "swin_umamba_tiny_in1_c14_after_pretrained_load",
        ),
        (
            ModelName::SwinUMambaD,
            3,
            4,
            VmambaTarget::SwinUMambaD {
                num_input_channels: 3,
            },
            "swin_umamba_d_tiny_in3_c4_after_pretrained_load",
        ),
        (
            ModelName::SwinUMambaD,
            1,
            4,
            VmambaTarget::SwinUMambaD {
                num_input_channels: 1,
            },
            "swin_umamba_d_tiny_in1_c4_after_pretrained_load",
        ),
    ];
    for (name, in_channels, classes, target, official) in loads {
        let mut model = tiny_model(name, in_channels, classes);
        let report = {
            let vs = model.var_store_mut();
            load_vmamba_imagenet_file(&pth, vs, target).unwrap()
        };
        let [loaded, skipped, passed] = key_lists(&report);
        let [want_loaded, want_skipped, want_passed] = official_lists(official);
        assert_eq!(loaded, want_loaded, "{official}: loaded keys");
        assert_eq!(skipped, want_skipped, "{official}: skipped keys");
        assert_eq!(passed, want_passed, "{official}: passed keys");

        // Round trip: every loaded encoder weight equals the saved one, bit for bit.
        let variables = model.var_store().variables();
        for (checkpoint_key, model_key) in &report.loaded {
            let value = &variables[model_key];
            assert!(
                value.equal(&saved[checkpoint_key]),
                "{model_key} differs from {checkpoint_key}"
            );
        }
    }
}

const REDUCED_YAML: &str = "dims: [8, 16, 32, 64]\ndepths: [1, 1, 2, 1]\nd_state: 16\npatch: 4\nin_channels: 3\ndrop_path_rate: 0.1\n";

fn pretrain_command(data: &Path, out: &Path, config: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_swin-umamba"));
    command
        .arg("pretrain")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(config)
        .args([
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--image-size",
            "32",
            "--lr",
            "3e-3",
        ])
        .args([
            "--warmup-epochs",
            "1",
            "--min-lr",
            "1e-4",
            "--workers",
            "2",
            "--seed",
            "7",
        ])
        .args(["--drop-path", "0.1", "--val-every", "3"]);
    command
}

#[test]
fn continue_after_kill_matches_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("textures");
    swin_umamba::ablate::synthetic::write_texture_images(&data, 6, 32, 3).unwrap();
    let config = dir.path().join("reduced.yaml");
    std::fs::write(&config, REDUCED_YAML).unwrap();

    let straight = dir.path().join("straight");
    let status = pretrain_command(&data, &straight, &config)
        .status()
        .unwrap();
    assert!(status.success(), "uninterrupted run failed");

    // Kill the second run with SIGKILL once its first epoch is on disk, then continue.
    let killed = dir.path().join("killed");
    let mut child = pretrain_command(&data, &killed, &config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("checkpoint_latest.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !state.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("checkpoint_final.pth").exists(),
        "killed run finished anyway"
    );
    let status = pretrain_command(&data, &killed, &config)
        .arg("--continue")
        .status()
        .unwrap();
    assert!(status.success(), "continued run failed");

    let log = std::fs::read_to_string(killed.join("pretrain_log.txt")).unwrap();
    let epochs: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    let unique: std::collections::BTreeSet<&str> = epochs.iter().copied().collect();
    assert_eq!(unique.len(), 3, "epochs logged: {epochs:?}");
    let a = read_safetensors(&straight.join("checkpoint_final.safetensors"));
    let b = read_safetensors(&killed.join("checkpoint_final.safetensors"));
    let mut max_difference = 0f64;
    for (key, value) in &a {
        let diff = (value - &b[key]).abs().max().double_value(&[]);
        max_difference = max_difference.max(diff);
    }
    println!("max |straight - killed and continued| over all weights: {max_difference:e}");
    assert_eq!(max_difference, 0.0, "continued run differs");
}

#[test]
fn torch_load_reads_pretrain_checkpoint() {
    let python = std::env::var_os("SWIN_UMAMBA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let has_torch = std::process::Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let out = tempfile::tempdir().unwrap();
    let textures = out.path().join("textures");
    swin_umamba::ablate::synthetic::write_texture_images(&textures, 3, 32, 1).unwrap();
    let mut short = recipe(1);
    short.batch_size = 4;
    pretrain(
        &textures,
        &out.path().join("run"),
        short,
        reduced(),
        Device::Cpu,
        false,
    )
    .unwrap();
    let pth = out.path().join("run/checkpoint_final.pth");
    let safetensors = out.path().join("run/checkpoint_final.safetensors");
    if !has_torch {
        eprintln!(
            "skipped the torch.load half: no Python with torch at {} (set SWIN_UMAMBA_TEST_PYTHON)",
            python.display()
        );
        return;
    }
    // PyTorch prints each tensor's raw bytes in hex, so the comparison does not go through
    // our own reader.
    let script = r#"
import sys, torch
ckpt = torch.load(sys.argv[1], weights_only=True)
for key, value in ckpt["model"].items():
    data = bytes(value.contiguous().untyped_storage())
    print(key, str(value.dtype), ",".join(map(str, value.shape)), data.hex())
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&pth)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "torch.load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let saved = read_safetensors(&safetensors);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (key, dtype, shape, hex) = (
            parts[0],
            parts[1],
            parts[2],
            parts.get(3).copied().unwrap_or(""),
        );
        let tensor = &saved[key];
        assert_eq!(dtype, "torch.float32", "{key}");
        let want_shape: Vec<String> = tensor.size().iter().map(|d| d.to_string()).collect();
        assert_eq!(shape, want_shape.join(","), "{key}");
        let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap();
        let want_hex: String = values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, want_hex, "{key}: bytes differ");
        seen.push(key.to_string());
    }
    assert_eq!(
        seen.len(),
        saved.len(),
        "torch.load returned {} tensors",
        seen.len()
    );
    assert_eq!(
        &seen[..2],
        ["patch_embed.proj.weight", "patch_embed.proj.bias"],
        "file order"
    );
}
