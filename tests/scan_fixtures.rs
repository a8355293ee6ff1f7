//! The selective scan (extension and tch-op reference) against outputs and gradients of the
//! official `selective_scan_ref` from state-spaces/mamba, stored as safetensors fixtures
//! with an index.json that lists each case's layout and flags.

mod scan_common;

use std::collections::HashMap;
use std::path::PathBuf;

use scan_common::{assert_close, ScanFn};
use swin_umamba::scan::{selective_scan, selective_scan_ref, ScanOptions};
use tch::{Kind, Tensor};

/// Tolerance of the fp64 cases.
const FP64_TOL: f64 = 1e-9;
/// fp32 tolerances of mamba's tests/ops/test_selective_scan.py.
const FP32_RTOL: f64 = 6e-4;
const FP32_ATOL: f64 = 2e-3;

#[derive(serde::Deserialize)]
struct Index {
    cases: Vec<FixtureCase>,
}

#[derive(serde::Deserialize)]
struct FixtureCase {
    name: String,
    delta_softplus: bool,
    return_last_state: bool,
    dtype: String,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/selective_scan")
}

fn load_index() -> Index {
    let path = fixture_dir().join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid {}: {e}", path.display()))
}

fn load_tensors(name: &str) -> HashMap<String, Tensor> {
    let path = fixture_dir().join(format!("{name}.safetensors"));
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn check_case(scan: ScanFn, label: &str, case: &FixtureCase) {
    let tensors = load_tensors(&case.name);
    let (kind, rtol, atol) = match case.dtype.as_str() {
        "float64" => (Kind::Double, 0.0, FP64_TOL),
        "float32" => (Kind::Float, FP32_RTOL, FP32_ATOL),
        other => panic!("{}: unexpected dtype {other}", case.name),
    };
    let input_names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"];
    let inputs: HashMap<&str, Tensor> = input_names
        .iter()
        .filter_map(|name| {
            tensors
                .get(*name)
                .map(|t| (*name, t.to_kind(kind).set_requires_grad(true)))
        })
        .collect();
    let options = ScanOptions {
        d: inputs.get("D"),
        z: inputs.get("z"),
        delta_bias: inputs.get("delta_bias"),
        delta_softplus: case.delta_softplus,
        return_last_state: case.return_last_state,
    };
    let out = scan(
        &inputs["u"],
        &inputs["delta"],
        &inputs["A"],
        &inputs["B"],
        &inputs["C"],
        &options,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let what = |name: &str| format!("{label} {} {name}", case.name);
    assert_close(&what("y"), &out.y, &tensors["y"], rtol, atol);
    if case.return_last_state {
        let last = out.last_state.as_ref().expect("last state requested");
        assert_close(
            &what("last_state"),
            last,
            &tensors["last_state"],
            rtol,
            atol,
        );
    }

    let present: Vec<&str> = input_names
        .iter()
        .copied()
        .filter(|n| inputs.contains_key(n))
        .collect();
    let leaves: Vec<&Tensor> = present.iter().map(|n| &inputs[n]).collect();
    let loss = (&out.y * tensors["dout"].to_kind(kind)).sum(Kind::Double);
    let grads = Tensor::run_backward(&[loss], &leaves, false, false);
    for (name, grad) in present.iter().zip(&grads) {
        let expected = &tensors[&format!("grad_{name}")];
        assert_close(&what(&format!("grad_{name}")), grad, expected, rtol, atol);
    }
}

#[test]
fn kernel_matches_official_fixtures() {
    let index = load_index();
    assert_eq!(index.cases.len(), 14, "fixture cases");
    for case in &index.cases {
        check_case(selective_scan, "kernel", case);
    }
}

#[test]
fn reference_matches_official_fixtures() {
    for case in &load_index().cases {
        check_case(selective_scan_ref, "reference", case);
    }
}
