//! Full-size default configurations against the manifests of the official builders:
//! every state-dict name and shape, the parameter count, and FLOPs within 1% of
//! fvcore's count (one multiply-add = one FLOP, selective scan 9·B·L·D·N).
//! Only construction runs here; no full-size forward.

use std::path::PathBuf;

use serde_json::Value;
use swin_umamba::nets::{build, ModelName};
use tch::Device;

const FLOPS_REL_TOLERANCE: f64 = 0.01;

fn manifest(dir: &str, file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(dir)
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn check(name: ModelName, dir: &str, file: &str, in_channels: i64, classes: i64, hw: (i64, i64)) {
    let manifest = manifest(dir, file);
    let model = build(
        name,
        &name.default_config(),
        in_channels,
        classes,
        hw,
        Device::Cpu,
    )
    .unwrap();

    let mut expected: Vec<(String, Vec<i64>)> = manifest["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let shape = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap());
            (entry["key"].as_str().unwrap().to_string(), shape.collect())
        })
        .collect();
    expected.sort();
    let got = model.official_state_dict_shapes();
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !got.contains(e))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|g| !expected.contains(g))
        .take(5)
        .collect();
    println!(
        "{file}: {} keys expected, {} built",
        expected.len(),
        got.len()
    );
    assert!(
        missing.is_empty(),
        "{file}: missing or reshaped keys {missing:?}"
    );
    assert!(extra.is_empty(), "{file}: unexpected keys {extra:?}");
    assert_eq!(got.len(), expected.len(), "{file}: key count");

    let parameters = manifest["parameters"].as_i64().unwrap();
    println!(
        "{file}: parameters {} (manifest {parameters})",
        model.parameter_count()
    );
    assert_eq!(
        model.parameter_count(),
        parameters,
        "{file}: parameter count"
    );

    let key = format!("{}x{}", hw.0, hw.1);
    if let Some(flops) = manifest.get("flops").and_then(|f| f.get(&key)) {
        let expected_total = flops["total_flops"].as_f64().unwrap();
        let counter = model.flops(hw.0, hw.1);
        let rel = (counter.total() - expected_total).abs() / expected_total;
        println!(
            "{file}: {:.3} GFLOPs (manifest {:.3}), relative difference {rel:.2e}",
            counter.total() / 1e9,
            expected_total / 1e9
        );
        for (op, value) in &counter.by_operator {
            println!("  {op}: {value:.0}");
        }
        let scan = flops["selective_scan_flops"].as_f64().unwrap();
        let got_scan = counter
            .by_operator
            .get("selective_scan")
            .copied()
            .unwrap_or(0.0);
        assert_eq!(got_scan, scan, "{file}: selective-scan FLOPs");
        assert!(
            rel <= FLOPS_REL_TOLERANCE,
            "{file}: FLOPs differ by {rel:e}"
        );
    }
}

#[test]
fn swin_umamba_default_manifests() {
    let dir = "manifests";
    check(
        ModelName::SwinUMamba,
        dir,
        "swin_umamba_default_in1_c14_320x320.json",
        1,
        14,
        (320, 320),
    );
    check(
        ModelName::SwinUMamba,
        dir,
        "swin_umamba_default_in3_c8_384x640.json",
        3,
        8,
        (384, 640),
    );
    check(
        ModelName::SwinUMamba,
        dir,
        "swin_umamba_default_in3_c3_512x512.json",
        3,
        3,
        (512, 512),
    );
}

#[test]
fn swin_umamba_v1_default_manifests() {
    let dir = "manifests";
    let name = ModelName::SwinUMambaV1;
    check(
        name,
        dir,
        "swin_umamba_v1_default_in1_c14_320x320.json",
        1,
        14,
        (320, 320),
    );
    check(
        name,
        dir,
        "swin_umamba_v1_default_in3_c8_384x640.json",
        3,
        8,
        (384, 640),
    );
    check(
        name,
        dir,
        "swin_umamba_v1_default_in3_c3_512x512.json",
        3,
        3,
        (512, 512),
    );
}

#[test]
fn swin_umamba_d_default_manifests() {
    let dir = "manifests";
    let name = ModelName::SwinUMambaD;
    check(
        name,
        dir,
        "swin_umamba_d_default_in1_c14_320x320.json",
        1,
        14,
        (320, 320),
    );
    check(
        name,
        dir,
        "swin_umamba_d_default_in3_c8_384x640.json",
        3,
        8,
        (384, 640),
    );
    check(
        name,
        dir,
        "swin_umamba_d_default_in3_c3_512x512.json",
        3,
        3,
        (512, 512),
    );
}

#[test]
fn plain_conv_unet_default_manifest() {
    let file = "plain_conv_unet_manifest_abdomenmri2d_320x320.json";
    check(ModelName::Nnunet, "baselines", file, 1, 14, (320, 320));
}

#[test]
fn umamba_default_manifests() {
    let bot = "umamba_bot_2d_manifest_abdomenmri2d_320x320.json";
    check(ModelName::UmambaBot, "baselines", bot, 1, 14, (320, 320));
    let enc = "umamba_enc_2d_manifest_abdomenmri2d_320x320.json";
    check(ModelName::UmambaEnc, "baselines", enc, 1, 14, (320, 320));
}
