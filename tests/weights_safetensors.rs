//! safetensors round trips, our own checkpoint format, and the `weights inspect` and
//! `weights convert` subcommands run as a user would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use swin_umamba::weights::{
    load_checkpoint, read_pth, read_safetensors, read_state_dict, save_checkpoint,
    write_safetensors, StateDict,
};
use tch::Tensor;

fn shared_checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/checkpoints")
        .join(name)
}

fn local_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn raw_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let n = t.numel();
    let mut buf = vec![0u8; n * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut buf, n);
    buf
}

fn assert_same_tensors(got: &StateDict, expected: &StateDict) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "names"
    );
    for (name, want) in expected {
        let have = &got[name];
        assert_eq!(have.kind(), want.kind(), "{name}: dtype");
        assert_eq!(have.size(), want.size(), "{name}: shape");
        assert!(raw_bytes(have) == raw_bytes(want), "{name}: bytes differ");
    }
    println!("{} tensors bit-equal", expected.len());
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
}

#[test]
fn safetensors_round_trip_all_dtypes() {
    // Includes non-contiguous views and a 0-d and an empty tensor.
    let file = read_pth(&local_fixture("all_dtypes.pth")).unwrap();
    let tensors = file.state_dict(Some("tensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round.safetensors");
    let metadata = HashMap::from([("note".to_string(), "round trip".to_string())]);
    write_safetensors(&path, &tensors, &metadata).unwrap();
    let (back, back_metadata) = read_safetensors(&path).unwrap();
    assert_same_tensors(&back, &tensors);
    assert_eq!(back_metadata, metadata);
}

#[test]
fn own_checkpoint_round_trip() {
    let file = read_pth(&shared_checkpoint("checkpoint_final.pth")).unwrap();
    let tensors = file.state_dict(Some("network_weights")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("checkpoint_final");
    let data = json!({ "trainer": "nnUNetTrainerSwinUMamba", "epoch": 1000, "lr": 1e-4 });
    save_checkpoint(&stem, &tensors, &data).unwrap();
    assert!(dir.path().join("checkpoint_final.safetensors").exists());
    assert!(dir.path().join("checkpoint_final.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let (back, back_data) = load_checkpoint(&stem).unwrap();
    assert_same_tensors(&back, &tensors);
    assert_eq!(back_data, data);
}

#[test]
fn foreign_sidecar_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("other");
    let tensors = StateDict::from([("w".to_string(), Tensor::ones([2], tch::kind::FLOAT_CPU))]);
    save_checkpoint(&stem, &tensors, &json!({})).unwrap();
    std::fs::write(
        dir.path().join("other.json"),
        r#"{"format": "something-else"}"#,
    )
    .unwrap();
    let message = load_checkpoint(&stem).unwrap_err().to_string();
    println!("{message}");
    assert!(message.contains("other.json"), "names the sidecar");
    assert!(message.contains("something-else"), "shows the value found");
}

#[test]
fn convert_cli_matches_pth() {
    let input = shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("vmamba.safetensors");
    let status = binary()
        .args(["weights", "convert"])
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success(), "convert failed: {status}");

    let file = read_pth(&input).unwrap();
    let expected = file.state_dict(None).unwrap();
    let (converted, metadata) = read_safetensors(&output).unwrap();
    assert_same_tensors(&converted, &expected);
    assert_eq!(metadata["source"], "vmamba_v0_tiny_reduced_ckpt.pth");
}

#[test]
fn convert_cli_rejects_malicious_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("bad.safetensors");
    let result = binary()
        .args(["weights", "convert"])
        .arg(shared_checkpoint("malicious_os_system_zip.pth"))
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    println!("{stderr}");
    assert!(!result.status.success(), "convert must exit non-zero");
    assert!(stderr.contains("os.system"), "stderr names the global");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn inspect_cli_lists_every_format() {
    let cases = [
        (shared_checkpoint("checkpoint_final.pth"), "trainer_name"),
        (
            shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth"),
            "model.head.weight",
        ),
        (
            shared_checkpoint("vmamba_v0_tiny_reduced_ckpt_fp64.safetensors"),
            "head.weight",
        ),
        (local_fixture("all_dtypes_legacy.pth"), "tensors.bf16"),
    ];
    for (path, expected_key) in cases {
        let result = binary()
            .args(["weights", "inspect"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(result.status.success(), "inspect {} failed", path.display());
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert!(
            stdout.lines().any(|l| l.starts_with(expected_key)),
            "inspect {} does not list {expected_key}",
            path.display()
        );
    }
}

#[test]
fn read_state_dict_any_format() {
    // The fp32 .pth and its fp64 safetensors twin give the same names and, cast, the same values.
    let from_pth = read_state_dict(&shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth")).unwrap();
    let from_st = read_state_dict(&shared_checkpoint(
        "vmamba_v0_tiny_reduced_ckpt_fp64.safetensors",
    ))
    .unwrap();
    let cast: StateDict = from_pth
        .iter()
        .map(|(k, t)| (k.clone(), t.to_kind(tch::Kind::Double)))
        .collect();
    assert_same_tensors(&cast, &from_st);
}
