//! The `model-info` and `forward` subcommands run as a user would, on the fixtures.

use std::path::PathBuf;
use std::process::Command;

use swin_umamba::nets::state::read_safetensors;
use tch::Kind;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

#[test]
fn model_info_prints_manifest_counts() {
    let output = binary()
        .args([
            "model-info",
            "--model",
            "swin-umamba-d",
            "--in-channels",
            "1",
            "--classes",
            "14",
        ])
        .args(["--patch", "320", "320"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("parameters: 27497720"),
        "parameter count missing"
    );
    assert!(
        stdout.contains("18.86") || stdout.contains("18.87"),
        "GFLOPs missing"
    );
    assert!(
        stdout.contains("vssm_encoder") && stdout.contains("decoder"),
        "module table"
    );
}

#[test]
fn model_info_rejects_bad_size_and_name() {
    let output = binary()
        .args([
            "model-info",
            "--model",
            "swin-umamba",
            "--patch",
            "330",
            "320",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("330x320") && stderr.contains("320x320"),
        "{stderr}"
    );

    let output = binary()
        .args(["model-info", "--model", "swin-unet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("swin-umamba-d"), "{stderr}");
}

#[test]
fn forward_reproduces_fixture_heads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.yaml");
    std::fs::write(&config, "dims: [8, 16, 32, 64]\ndepths: [1, 1, 2, 1]\n").unwrap();
    let stem = "swin_umamba_d_tiny_in3_c4_64x96";
    let networks = fixtures().join("networks");
    let io_path = networks.join(format!("{stem}_io.safetensors"));
    let io = read_safetensors(&io_path).unwrap();
    let input = dir.path().join("input.safetensors");
    tch::Tensor::write_safetensors(&[("input", &io["input"])], &input).unwrap();
    let output = dir.path().join("heads.safetensors");
    let status = binary()
        .args([
            "forward",
            "--model",
            "swin-umamba-d",
            "--dtype",
            "f64",
            "--config",
        ])
        .arg(&config)
        .arg("--weights")
        .arg(networks.join(format!("{stem}_state_dict.safetensors")))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    let heads = read_safetensors(&output).unwrap();
    assert_eq!(heads.len(), 4, "one tensor per head");
    for i in 0..4 {
        let got = &heads[&format!("output.{i}")];
        let want = &io[&format!("output_fp64.{i}")];
        let diff = (got.to_kind(Kind::Double) - want)
            .abs()
            .max()
            .double_value(&[]);
        println!("head {i}: max abs diff {diff:e}");
        assert!(diff <= 1e-6, "head {i}: {diff:e}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary output left behind");
}

#[test]
fn forward_with_wrong_config_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let stem = "swin_umamba_d_tiny_in3_c4_64x96";
    let networks = fixtures().join("networks");
    let io = read_safetensors(&networks.join(format!("{stem}_io.safetensors"))).unwrap();
    let input = dir.path().join("input.safetensors");
    tch::Tensor::write_safetensors(&[("input", &io["input"])], &input).unwrap();
    let output_path = dir.path().join("heads.safetensors");
    // The default (full-size) configuration does not fit the tiny weights.
    let output = binary()
        .args(["forward", "--model", "swin-umamba-d", "--weights"])
        .arg(networks.join(format!("{stem}_state_dict.safetensors")))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("shape") || stderr.contains("missing"),
        "{stderr}"
    );
    assert!(!output_path.exists(), "no output may be written on failure");
}
