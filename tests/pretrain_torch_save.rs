//! `torch.save`-format writer: PyTorch's own `torch.load` reads what we write.

use std::path::PathBuf;
use std::process::Command;

use swin_umamba::pretrain::torch_save::{save, PickleValue};
use tch::{Kind, Tensor};

/// Python with torch: `SWIN_UMAMBA_TEST_PYTHON`, else the project's own `.venv`.
fn python_with_torch() -> Option<PathBuf> {
    let candidate = std::env::var_os("SWIN_UMAMBA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import torch"])
        .output()
        .ok()?
        .status
        .success();
    ok.then_some(candidate)
}

#[test]
fn torch_load_reads_every_dtype() {
    let Some(python) = python_with_torch() else {
        eprintln!("skipped: no Python with torch (set SWIN_UMAMBA_TEST_PYTHON)");
        return;
    };
    tch::manual_seed(0);
    let float = Tensor::randn([3, 4], (Kind::Float, tch::Device::Cpu));
    let tensors: Vec<(&str, Tensor)> = vec![
        ("f32", float.shallow_clone()),
        ("f64", Tensor::randn([5], (Kind::Double, tch::Device::Cpu))),
        ("f16", float.to_kind(Kind::Half)),
        ("bf16", float.to_kind(Kind::BFloat16)),
        (
            "i64",
            Tensor::arange(7, (Kind::Int64, tch::Device::Cpu)) - 3,
        ),
        (
            "i32",
            Tensor::arange(6, (Kind::Int, tch::Device::Cpu)).reshape([2, 3]),
        ),
        ("u8", Tensor::arange(4, (Kind::Uint8, tch::Device::Cpu))),
        ("bool", Tensor::from_slice(&[true, false, true])),
        ("transposed", float.transpose(0, 1)),
        ("scalar", Tensor::from(2.5f32)),
        (
            "empty",
            Tensor::zeros([0, 3], (Kind::Float, tch::Device::Cpu)),
        ),
    ];
    let state: Vec<(PickleValue, PickleValue)> = tensors
        .iter()
        .map(|(k, t)| (PickleValue::str(k), PickleValue::Tensor(t.shallow_clone())))
        .collect();
    let root = PickleValue::Dict(vec![
        (PickleValue::str("model"), PickleValue::OrderedDict(state)),
        (PickleValue::str("epoch"), PickleValue::Int(3_000_000_000)),
        (PickleValue::str("lr"), PickleValue::Float(1e-4)),
        (PickleValue::str("name"), PickleValue::str("vssm_tiny")),
        (
            PickleValue::str("list"),
            PickleValue::List(vec![PickleValue::Int(-1), PickleValue::None]),
        ),
        (PickleValue::str("flag"), PickleValue::Bool(true)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("written.pth");
    save(&root, &pth).unwrap();

    // PyTorch loads it with weights_only=True and writes each tensor as text, so the comparison does not depend on our own reader.
    let script = r#"
import sys, torch, collections
ckpt = torch.load(sys.argv[1], weights_only=True)
assert isinstance(ckpt["model"], collections.OrderedDict), type(ckpt["model"])
assert ckpt["epoch"] == 3_000_000_000, ckpt["epoch"]
assert ckpt["lr"] == 1e-4, ckpt["lr"]
assert ckpt["name"] == "vssm_tiny", ckpt["name"]
assert ckpt["list"] == [-1, None], ckpt["list"]
assert ckpt["flag"] is True, ckpt["flag"]
for key, t in ckpt["model"].items():
    values = t.double().flatten().tolist()
    print(key, str(t.dtype), ",".join(map(str, t.shape)), " ".join(repr(v) for v in values))
"#;
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(&pth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "torch.load failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), tensors.len(), "torch.load returned {stdout}");
    for ((name, tensor), line) in tensors.iter().zip(lines) {
        let mut parts = line.splitn(4, ' ');
        assert_eq!(parts.next(), Some(*name));
        let _dtype = parts.next().unwrap();
        let shape = parts.next().unwrap();
        let expected_shape: Vec<String> = tensor.size().iter().map(|d| d.to_string()).collect();
        assert_eq!(shape, expected_shape.join(","), "shape of {name}");
        let values: Vec<f64> = parts
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(|v| {
                if v == "True" {
                    1.0
                } else if v == "False" {
                    0.0
                } else {
                    v.parse().unwrap()
                }
            })
            .collect();
        let expected = Vec::<f64>::try_from(tensor.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        assert_eq!(values, expected, "values of {name}");
    }
}
