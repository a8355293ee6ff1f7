//! The ImageNet VMamba v0 loader against the official Swin-UMamba loaders' recorded behaviour.
//!
//! For each recorded load, a VarStore is filled with the official model's state dict before
//! loading, and the reduced VMamba checkpoint is loaded into it. The result must equal the
//! official state dict after loading bit for bit. The loaded, skipped and passed keys must
//! equal the official lists in the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use swin_umamba::weights::vmamba::var_store_from_state_dict;
use swin_umamba::weights::{
    load_vmamba_imagenet, load_vmamba_imagenet_file, read_pth, read_safetensors, LoadReport,
    StateDict, VmambaTarget,
};
use tch::{Kind, Tensor};

fn shared_checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/checkpoints")
        .join(name)
}

fn checkpoint_model() -> Vec<(String, Tensor)> {
    let file = read_pth(&shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth")).unwrap();
    file.ordered_tensors(file.root.get("model").unwrap())
        .unwrap()
}

fn read_state(name: &str) -> StateDict {
    read_safetensors(&shared_checkpoint(&format!("{name}.safetensors")))
        .unwrap()
        .0
}

fn report_entry(load: &str) -> Json {
    let text = std::fs::read_to_string(shared_checkpoint("pretrained_load_report.json")).unwrap();
    let report: Json = serde_json::from_str(&text).unwrap();
    report["loads"][load].clone()
}

fn strings(value: &Json) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn current_state(vs: &tch::nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.numel() == 0 {
        return 0.0;
    }
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn assert_state_equal(got: &BTreeMap<String, Tensor>, expected: &StateDict) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "keys"
    );
    let mut worst = 0.0f64;
    for (name, want) in expected {
        let have = &got[name];
        assert_eq!(have.size(), want.size(), "{name}: shape");
        assert_eq!(have.kind(), want.kind(), "{name}: dtype");
        worst = worst.max(max_abs_diff(have, want));
    }
    println!("max |ours - official| over all keys = {worst:e}");
    for (name, want) in expected {
        assert!(
            got[name].equal(want),
            "{name}: values differ from the official load"
        );
    }
}

/// Runs one recorded load and compares everything the report contains.
fn check_load(load: &str, target: VmambaTarget) -> LoadReport {
    let entry = report_entry(&format!("{load}_after_pretrained_load"));
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let after = read_state(&format!("{load}_after_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);

    let report = load_vmamba_imagenet(&checkpoint_model(), &mut vs, target).unwrap();
    println!("{report}");

    assert_state_equal(&current_state(&vs), &after);

    let loaded: Vec<String> = report.loaded.iter().map(|(k, _)| k.clone()).collect();
    let skipped: Vec<String> = report.skipped.iter().map(|(k, _)| k.clone()).collect();
    let passed: Vec<String> = report.passed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(loaded, strings(&entry["loaded_ckpt_keys"]), "loaded keys");
    assert_eq!(
        skipped,
        strings(&entry["skipped_by_skip_list"]),
        "skipped keys"
    );
    assert_eq!(
        passed,
        strings(&entry["passed_no_match_or_in_chans"]),
        "passed keys"
    );

    // The report's value-based lists: keys whose value changed must be keys we loaded into,
    // and keys we left at init must be among those whose value did not change.
    let targets: BTreeSet<&String> = report.loaded.iter().map(|(_, m)| m).collect();
    for key in strings(&entry["model_keys_changed"]) {
        assert!(
            targets.contains(&key),
            "{key} changed in the official load but not in ours"
        );
    }
    let unchanged: BTreeSet<String> = strings(&entry["model_keys_not_from_ckpt"])
        .into_iter()
        .collect();
    for key in &report.model_keys_left_at_init {
        assert!(
            unchanged.contains(key),
            "{key} left at init by us, changed officially"
        );
    }
    assert_eq!(
        report.loaded.len() + report.model_keys_left_at_init.len(),
        after.len(),
        "every model key is either loaded or left at init"
    );
    report
}

#[test]
fn swin_umamba_load_matches_official() {
    let report = check_load("swin_umamba_tiny_in1_c14", VmambaTarget::SwinUMamba);
    // The official skip list names patch_embed.norm.weight twice and never its bias, so the
    // bias is loaded.
    assert!(report
        .loaded
        .iter()
        .any(|(k, _)| k == "patch_embed.norm.bias"));
}

#[test]
fn swin_umamba_v1_loader_matches_current() {
    // The first-commit loader equals the current one, so the same recorded load applies.
    check_load("swin_umamba_tiny_in1_c14", VmambaTarget::SwinUMambaV1);
}

#[test]
fn swin_umamba_d_same_channels_loads_patch_embed() {
    let report = check_load(
        "swin_umamba_d_tiny_in3_c4",
        VmambaTarget::SwinUMambaD {
            num_input_channels: 3,
        },
    );
    let embed = report
        .loaded
        .iter()
        .filter(|(k, _)| k.starts_with("patch_embed"))
        .count();
    assert_eq!(embed, 4, "all four patch embedding tensors load");
}

#[test]
fn swin_umamba_d_other_channels_passes_patch_embed() {
    let report = check_load(
        "swin_umamba_d_tiny_in1_c4",
        VmambaTarget::SwinUMambaD {
            num_input_channels: 1,
        },
    );
    assert!(report
        .passed
        .iter()
        .all(|(k, _)| k.starts_with("patch_embed")));
}

#[test]
fn fp64_twin_gives_same_weights() {
    // The safetensors twin is sorted by name, not in file order, so only the weights and the
    // key sets can match.
    let (twin, _) = read_safetensors(&shared_checkpoint(
        "vmamba_v0_tiny_reduced_ckpt_fp64.safetensors",
    ))
    .unwrap();
    let twin: Vec<(String, Tensor)> = twin.into_iter().collect();
    let load = "swin_umamba_d_tiny_in3_c4";
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let after = read_state(&format!("{load}_after_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);
    let target = VmambaTarget::SwinUMambaD {
        num_input_channels: 3,
    };
    let report = load_vmamba_imagenet(&twin, &mut vs, target).unwrap();
    assert_state_equal(&current_state(&vs), &after);
    let entry = report_entry(&format!("{load}_after_pretrained_load"));
    let ours: BTreeSet<String> = report.loaded.iter().map(|(k, _)| k.clone()).collect();
    let official: BTreeSet<String> = strings(&entry["loaded_ckpt_keys"]).into_iter().collect();
    assert_eq!(ours, official);
}

#[test]
fn shape_mismatch_rejected_without_changes() {
    let load = "swin_umamba_tiny_in1_c14";
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);
    let mut checkpoint = checkpoint_model();
    let bad = "layers.2.blocks.1.self_attention.Ds";
    let entry = checkpoint.iter_mut().find(|(k, _)| k == bad).unwrap();
    entry.1 = entry.1.narrow(0, 0, 10);
    let err = load_vmamba_imagenet(&checkpoint, &mut vs, VmambaTarget::SwinUMamba).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(message.contains(bad), "names the checkpoint key");
    assert!(message.contains("shape mismatch"));
    assert_state_equal(&current_state(&vs), &before);
}

#[test]
fn missing_downsample_target_rejected() {
    // A downsample after the last stage maps to `downsamples.3`, which the model lacks. The
    // official loader asserts that the renamed key exists.
    let load = "swin_umamba_d_tiny_in3_c4";
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);
    let mut checkpoint = checkpoint_model();
    checkpoint.push((
        "layers.3.downsample.norm.weight".into(),
        Tensor::ones([8], tch::kind::FLOAT_CPU),
    ));
    let target = VmambaTarget::SwinUMambaD {
        num_input_channels: 3,
    };
    let message = load_vmamba_imagenet(&checkpoint, &mut vs, target)
        .unwrap_err()
        .to_string();
    println!("{message}");
    assert!(message.contains("vssm_encoder.downsamples.3.norm.weight"));
    assert_state_equal(&current_state(&vs), &before);
}

#[test]
fn file_loader_reads_converted_safetensors() {
    // The fp64 safetensors twin replaces a `weights convert` output here.
    let load = "swin_umamba_tiny_in1_c14";
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let after = read_state(&format!("{load}_after_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);
    let path = shared_checkpoint("vmamba_v0_tiny_reduced_ckpt_fp64.safetensors");
    load_vmamba_imagenet_file(&path, &mut vs, VmambaTarget::SwinUMamba).unwrap();
    assert_state_equal(&current_state(&vs), &after);
}

#[test]
fn file_loader_reads_pth() {
    let load = "swin_umamba_d_tiny_in1_c4";
    let before = read_state(&format!("{load}_before_pretrained_load_state_dict"));
    let after = read_state(&format!("{load}_after_pretrained_load_state_dict"));
    let mut vs = var_store_from_state_dict(&before);
    let path = shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth");
    let target = VmambaTarget::SwinUMambaD {
        num_input_channels: 1,
    };
    let report = load_vmamba_imagenet_file(&path, &mut vs, target).unwrap();
    assert_eq!(
        report.passed.len(),
        4,
        "the four patch_embed keys are passed over"
    );
    assert_state_equal(&current_state(&vs), &after);
}
