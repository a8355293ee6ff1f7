//! Reading torch.save files: every dtype, shared storages, views, containers, the zip,
//! protocol 4 and legacy layouts, nnU-Net checkpoints, and rejection of malicious pickles.
//!
//! The `all_dtypes*` fixtures come from `tests/fixtures/weights/make_fixtures.py` (torch 2.13.0);
//! the checkpoints from the official Swin-UMamba code live in the shared fixture folder.

use std::path::{Path, PathBuf};

use swin_umamba::weights::{
    read_nnunet_checkpoint, read_pth, read_safetensors, PthFormat, Value, WeightsError,
};
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn shared_checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/checkpoints")
        .join(name)
}

/// Largest absolute difference, computed in f64 (bools and integers included).
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.numel() == 0 {
        return 0.0;
    }
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}

fn assert_bit_equal(name: &str, got: &Tensor, expected: &Tensor) {
    assert_eq!(got.kind(), expected.kind(), "{name}: dtype");
    assert_eq!(got.size(), expected.size(), "{name}: shape");
    println!("{name}: max |diff| = {:e}", max_abs_diff(got, expected));
    // Compare raw bytes so that -0.0/0.0 and every bit of f16/bf16 count.
    let bytes = |t: &Tensor| -> Vec<u8> {
        let t = t.contiguous();
        let n = t.numel();
        let mut buf = vec![0u8; n * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut buf, n);
        buf
    };
    assert!(bytes(got) == bytes(expected), "{name}: bytes differ");
}

fn check_all_dtypes(file_name: &str, format: PthFormat) {
    let file = read_pth(&fixture(file_name)).unwrap();
    assert_eq!(file.format, format, "{file_name}: format");
    let (expected, _) = read_safetensors(&fixture("all_dtypes_expected.safetensors")).unwrap();
    let tensors = file.state_dict(Some("tensors")).unwrap();
    assert_eq!(
        tensors.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{file_name}: tensor names"
    );
    for (name, want) in &expected {
        assert_bit_equal(&format!("{file_name}:{name}"), &tensors[name], want);
    }

    let base = &tensors["f32"];
    let view = &tensors["f32_view_offset"];
    assert_eq!(view.stride(), vec![6, 2], "{file_name}: view strides");
    assert_eq!(
        view.data_ptr() as usize,
        base.data_ptr() as usize + 6 * 4,
        "{file_name}: the view starts 6 floats into the shared storage"
    );
    assert_eq!(
        tensors["f32_transposed"].stride(),
        vec![1, 6],
        "{file_name}: transposed"
    );

    let Some(Value::List(twice)) = file.root.get("same_tensor_twice") else {
        panic!("{file_name}: same_tensor_twice is not a list");
    };
    let (Value::Tensor(a), Value::Tensor(b)) = (&twice[0], &twice[1]) else {
        panic!("{file_name}: same_tensor_twice does not hold tensors");
    };
    let (a, b) = (file.tensor(a).unwrap(), file.tensor(b).unwrap());
    assert_eq!(
        a.data_ptr(),
        b.data_ptr(),
        "{file_name}: one storage for the same tensor"
    );
    assert_eq!(
        a.data_ptr(),
        base.data_ptr(),
        "{file_name}: and it is base's storage"
    );

    let Some(Value::Dict(tensor_items)) = file.root.get("tensors") else {
        panic!("{file_name}: no tensors dict");
    };
    let requires_grad: Vec<&str> = tensor_items
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) if t.requires_grad => Some(k.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        requires_grad,
        vec!["parameter"],
        "{file_name}: nn.Parameter flag"
    );

    let meta = file.root.get("meta").unwrap();
    assert_eq!(meta.get("int"), Some(&Value::Int(42)));
    assert_eq!(meta.get("negative"), Some(&Value::Int(-7)));
    let mut big = vec![0u8; 9];
    big[8] = 0x40; // 2**70 in little-endian two's complement
    assert_eq!(meta.get("big"), Some(&Value::BigInt(big)));
    assert_eq!(meta.get("float"), Some(&Value::Float(0.25)));
    assert_eq!(meta.get("str"), Some(&Value::Str("näive ünicode".into())));
    assert_eq!(
        meta.get("bytes"),
        Some(&Value::Bytes(b"\x00\x01raw".to_vec()))
    );
    assert_eq!(meta.get("none"), Some(&Value::None));
    assert_eq!(meta.get("flag"), Some(&Value::Bool(true)));
    let tuple = Value::Tuple(vec![
        Value::Int(1),
        Value::Float(2.5),
        Value::Str("three".into()),
    ]);
    assert_eq!(meta.get("tuple"), Some(&tuple));
    let nested = Value::List(vec![
        Value::Int(1),
        Value::List(vec![Value::Int(2), Value::List(vec![Value::Int(3)])]),
    ]);
    assert_eq!(meta.get("list"), Some(&nested));
    assert_eq!(meta.get("device"), Some(&Value::Device("cpu".into())));
}

#[test]
fn zip_protocol2_all_dtypes() {
    check_all_dtypes("all_dtypes.pth", PthFormat::Zip);
}

#[test]
fn zip_protocol4_all_dtypes() {
    check_all_dtypes("all_dtypes_proto4.pth", PthFormat::Zip);
}

#[test]
fn legacy_format_all_dtypes() {
    check_all_dtypes("all_dtypes_legacy.pth", PthFormat::Legacy);
}

#[test]
fn vmamba_checkpoint_matches_fp64_twin() {
    let file = read_pth(&shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth")).unwrap();
    let model = file.root.get("model").unwrap();
    let ordered = file.ordered_tensors(model).unwrap();
    let (twin, _) = read_safetensors(&shared_checkpoint(
        "vmamba_v0_tiny_reduced_ckpt_fp64.safetensors",
    ))
    .unwrap();
    assert_eq!(ordered.len(), twin.len(), "tensor count");
    assert_eq!(ordered.len(), 82, "the reduced checkpoint has 82 keys");
    for (name, tensor) in &ordered {
        assert_eq!(tensor.kind(), Kind::Float, "{name} is stored as fp32");
        assert_bit_equal(name, &tensor.to_kind(Kind::Double), &twin[name]);
    }
}

#[test]
fn nnunet_checkpoint_fields() {
    let ckpt = read_nnunet_checkpoint(&shared_checkpoint("checkpoint_final.pth")).unwrap();
    assert_eq!(
        ckpt.trainer_name.as_deref(),
        Some("nnUNetTrainerSwinUMamba")
    );
    assert_eq!(ckpt.current_epoch, Some(1000));
    assert_eq!(ckpt.inference_allowed_mirroring_axes, Some(vec![0, 1]));
    let init_args = ckpt.init_args.as_ref().expect("init_args present");
    assert_eq!(init_args["configuration"], "2d");
    assert_eq!(init_args["fold"], 0);
    assert_eq!(init_args["device"], "cpu");
    assert_eq!(init_args["unpack_dataset"], true);
    assert_eq!(
        init_args["plans"]["configurations"]["2d"]["patch_size"],
        serde_json::json!([64, 64])
    );
    assert_eq!(ckpt.file.root.get("grad_scaler_state"), Some(&Value::None));

    // The weights are the tiny Swin-UMamba (1 input channel, 14 classes): the same keys and
    // shapes as the official model's state dict stored for the loader tests.
    let (reference, _) = read_safetensors(&shared_checkpoint(
        "swin_umamba_tiny_in1_c14_before_pretrained_load_state_dict.safetensors",
    ))
    .unwrap();
    let mut names: Vec<&String> = ckpt.network_weights.iter().map(|(k, _)| k).collect();
    names.sort();
    assert_eq!(
        names,
        reference.keys().collect::<Vec<_>>(),
        "network_weights keys"
    );
    for (name, tensor) in &ckpt.network_weights {
        assert_eq!(tensor.size(), reference[name].size(), "{name}: shape");
        assert_eq!(tensor.kind(), Kind::Float, "{name}: dtype");
    }
}

#[test]
fn nnunet_reader_rejects_other_layouts() {
    let err =
        read_nnunet_checkpoint(&shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth")).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains("network_weights"),
        "names the missing entry"
    );
    assert!(
        message.contains("vmamba_v0_tiny_reduced_ckpt.pth"),
        "names the file"
    );
}

const PWNED_MARKER: &str = "/tmp/pwned-marker";

fn check_rejected(name: &str) {
    let path = shared_checkpoint(name);
    let err = read_pth(&path).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    match &err {
        WeightsError::ForbiddenGlobal { global, .. } => assert_eq!(global, "os.system"),
        other => panic!("{name}: expected ForbiddenGlobal, got {other:?}"),
    }
    assert!(message.contains(name), "the error names the file");
    assert!(message.contains("os.system"), "the error names the global");
}

#[test]
fn malicious_pickles_rejected() {
    // Both files would run `echo pwned > /tmp/pwned-marker` under torch.load.
    let _ = std::fs::remove_file(PWNED_MARKER);
    check_rejected("malicious_os_system.pth");
    check_rejected("malicious_os_system_zip.pth");
    assert!(
        !Path::new(PWNED_MARKER).exists(),
        "{PWNED_MARKER} was created"
    );
}

#[test]
fn reduce_of_unlisted_callable_rejected() {
    // PROTO 2, GLOBAL 'collections Counter', EMPTY_TUPLE, REDUCE, STOP: harmless in Python,
    // but not on the allow-list, so REDUCE must fail and name it.
    let pickle = b"\x80\x02ccollections\nCounter\n)R.";
    let err = swin_umamba::weights::read_pth_bytes(Path::new("counter.pkl"), pickle).unwrap_err();
    println!("{err}");
    match err {
        WeightsError::ForbiddenGlobal { global, path } => {
            assert_eq!(global, "collections.Counter");
            assert_eq!(path, "counter.pkl");
        }
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
}

#[test]
fn unknown_class_kept_opaque() {
    // PROTO 2, GLOBAL 'mypkg Config', EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BUILD, STOP.
    let pickle = b"\x80\x02cmypkg\nConfig\n)\x81}b.";
    let file = swin_umamba::weights::read_pth_bytes(Path::new("config.pkl"), pickle).unwrap();
    match file.root {
        Value::Object { class, args, state } => {
            assert_eq!(class, "mypkg.Config");
            assert!(args.is_empty());
            assert_eq!(state.as_deref(), Some(&Value::Dict(vec![])));
        }
        other => panic!("expected an opaque object, got {other:?}"),
    }
}

#[test]
fn truncated_zip_error_names_file() {
    let bytes = std::fs::read(fixture("all_dtypes.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let message = read_pth(&path).unwrap_err().to_string();
    println!("{message}");
    assert!(message.contains("cut.pth"));
}

#[test]
fn nnunet_style_checkpoint_with_numpy_logging() {
    // Written by torch.save (torch 2.15, numpy 2) from a real SGD optimizer and nnU-Net's
    // logging layout, whose values are numpy float64 scalars.
    let ckpt = read_nnunet_checkpoint(&fixture("nnunet_style_checkpoint.pth")).unwrap();
    let names: Vec<&str> = ckpt
        .network_weights
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, vec!["weight", "bias"]);
    assert_eq!(ckpt.trainer_name.as_deref(), Some("nnUNetTrainer"));
    assert_eq!(ckpt.current_epoch, Some(2));
    assert_eq!(ckpt.init_args.as_ref().unwrap()["device"], "cpu");

    let root = &ckpt.file.root;
    let logging = root.get("logging").unwrap();
    let floats = Value::List(vec![Value::Float(0.25), Value::Float(0.275)]);
    assert_eq!(logging.get("ema_fg_dice"), Some(&floats));
    assert_eq!(root.get("_best_ema"), Some(&Value::Float(0.275)));

    let state = root.get("optimizer_state").unwrap().get("state").unwrap();
    let Value::Dict(per_param) = state else {
        panic!("optimizer state is not a dict")
    };
    assert_eq!(per_param.len(), 2, "one momentum buffer per parameter");
    let Some(Value::Tensor(buffer)) = per_param[0].1.get("momentum_buffer") else {
        panic!("no momentum buffer tensor");
    };
    assert_eq!(buffer.size, vec![2, 1, 3, 3]);
}

#[test]
fn numpy1_scalars_decoded() {
    let file = read_pth(&fixture("numpy1_scalars.pkl")).unwrap();
    assert_eq!(file.format, PthFormat::Pickle);
    assert_eq!(file.root.get("f8"), Some(&Value::Float(0.5)));
    assert_eq!(file.root.get("i8"), Some(&Value::Int(-3)));
    assert_eq!(file.root.get("f4"), Some(&Value::Float(1.5)));
    assert_eq!(file.root.get("b1"), Some(&Value::Bool(true)));
    match file.root.get("array") {
        Some(Value::Object { class, state, .. }) => {
            assert_eq!(class, "numpy.core.multiarray._reconstruct");
            assert!(state.is_some(), "the array's BUILD state is kept");
        }
        other => panic!("array is not an opaque object: {other:?}"),
    }
}
