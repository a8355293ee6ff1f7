//! Sliding-window inference against nnU-Net v2.8.1's own functions: tile steps, the
//! Gaussian importance map and whole predictions of a small convolutional network.
//! tests/data/infer/generate.py produced the expected values.

use std::collections::HashMap;
use std::path::PathBuf;

use swin_umamba::infer::export::{predict_folds, probabilities, segmentation, uncrop};
use swin_umamba::infer::gaussian::importance_map;
use swin_umamba::infer::sliding::{predict_sliding_window, SlidingWindowOptions};
use swin_umamba::infer::steps::compute_steps;
use swin_umamba::infer::{official, InferError, LogitsNetwork};
use tch::{Device, Kind, Tensor};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/infer")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tensors() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(data_dir().join("sliding.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn as_i64s(value: &serde_json::Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn steps_match_nnunet() {
    for case in expected()["steps"].as_array().unwrap() {
        let image = as_i64s(&case["image"]);
        let tile = as_i64s(&case["tile"]);
        let step = case["step"].as_f64().unwrap();
        let actual = compute_steps(&image, &tile, step).unwrap();
        let wanted: Vec<Vec<i64>> = case["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(as_i64s)
            .collect();
        assert_eq!(actual, wanted, "image {image:?} tile {tile:?} step {step}");
    }
}

#[test]
fn steps_reject_invalid_input() {
    assert!(matches!(
        compute_steps(&[64], &[64], 0.0),
        Err(InferError::InvalidStepSize { .. })
    ));
    assert!(matches!(
        compute_steps(&[32], &[64], 0.5),
        Err(InferError::InvalidShape { .. })
    ));
}

#[test]
fn gaussian_matches_nnunet() {
    let stored = tensors();
    for tile in expected()["gaussian_tiles"].as_array().unwrap() {
        let tile = as_i64s(tile);
        for (name, kind) in [("half", Kind::Half), ("float", Kind::Float)] {
            let wanted = &stored[&format!("gaussian_{}x{}_{name}", tile[0], tile[1])];
            let actual = importance_map(
                [tile[0], tile[1]],
                official::GAUSSIAN_SIGMA_SCALE,
                official::GAUSSIAN_VALUE_SCALING,
                kind,
                Device::Cpu,
            );
            let difference = max_abs_difference(&actual, wanted);
            println!("gaussian {tile:?} {name}: max |diff| {difference:e}");
            assert_eq!(actual.kind(), kind);
            assert!(difference <= 1e-6, "gaussian {tile:?} {name}");
        }
    }
}

#[test]
fn sliding_window_matches_nnunet() {
    let stored = tensors();
    let (w0, b0) = (&stored["net.0.weight"], &stored["net.0.bias"]);
    let (w2, b2) = (&stored["net.2.weight"], &stored["net.2.bias"]);
    let network = |x: &Tensor| -> Result<Tensor, tch::TchError> {
        let hidden = x
            .f_conv2d(w0, Some(b0), [1, 1], [1, 1], [1, 1], 1)?
            .f_relu()?;
        hidden.f_conv2d(w2, Some(b2), [1, 1], [1, 1], [1, 1], 1)
    };
    for case in expected()["window_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tile = as_i64s(&case["tile"]);
        let input = &stored[&format!("{name}.input")];
        let wanted = &stored[&format!("{name}.logits")];
        for tile_batch in [1, 3] {
            let options = SlidingWindowOptions {
                tile: [tile[0], tile[1]],
                step_size: case["step"].as_f64().unwrap(),
                use_gaussian: case["gaussian"].as_bool().unwrap(),
                mirror_axes: case["mirror"].as_bool().unwrap().then(|| vec![0, 1]),
                tile_batch,
                ..SlidingWindowOptions::default()
            };
            let actual = predict_sliding_window(&network, input, &options).unwrap();
            let difference = max_abs_difference(&actual, wanted);
            println!("{name} batch {tile_batch}: max |diff| {difference:e}");
            assert_eq!(actual.size(), wanted.size(), "{name}: shape");
            assert_eq!(
                actual.kind(),
                Kind::Half,
                "{name}: nnU-Net accumulates in float16"
            );
            // One tile per call repeats nnU-Net's operations exactly. Batched convolutions
            // may round differently, which float16 accumulation turns into one unit in the
            // last place: 2^-10 for logits of magnitude 1.
            let tolerance = if tile_batch == 1 { 1e-6 } else { 2e-3 };
            assert!(difference <= tolerance, "{name} batch {tile_batch}");
            let same_argmax = actual
                .argmax(0, false)
                .eq_tensor(&wanted.argmax(0, false))
                .all();
            assert!(
                same_argmax.int64_value(&[]) != 0,
                "{name}: segmentation differs"
            );
        }
    }
}

/// Builds the two-layer test network from stored weights under `prefix`.
fn conv_network(
    stored: &HashMap<String, Tensor>,
    prefix: &str,
) -> impl Fn(&Tensor) -> Result<Tensor, tch::TchError> {
    let w0 = stored[&format!("{prefix}.0.weight")].shallow_clone();
    let b0 = stored[&format!("{prefix}.0.bias")].shallow_clone();
    let w2 = stored[&format!("{prefix}.2.weight")].shallow_clone();
    let b2 = stored[&format!("{prefix}.2.bias")].shallow_clone();
    move |x: &Tensor| {
        let hidden = x
            .f_conv2d(&w0, Some(&b0), [1, 1], [1, 1], [1, 1], 1)?
            .f_relu()?;
        hidden.f_conv2d(&w2, Some(&b2), [1, 1], [1, 1], [1, 1], 1)
    }
}

#[test]
fn fold_average_matches_nnunet() {
    let stored = tensors();
    let first = conv_network(&stored, "fold1");
    let second = conv_network(&stored, "fold2");
    let folds: [&dyn LogitsNetwork; 2] = [&first, &second];
    let options = SlidingWindowOptions {
        tile: [32, 48],
        ..SlidingWindowOptions::default()
    };
    let logits = predict_folds(&folds, &stored["folds.input"], &options).unwrap();
    let difference = max_abs_difference(&logits, &stored["folds.logits"]);
    println!("fold logits: max |diff| {difference:e}");
    assert!(difference <= 1e-6);
    let probabilities = probabilities(&logits);
    let difference = max_abs_difference(&probabilities, &stored["folds.probabilities"]);
    println!("fold probabilities: max |diff| {difference:e}");
    assert!(difference <= 1e-4);
    let wanted = stored["folds.logits"].argmax(0, false).to_kind(Kind::Uint8);
    let labels = segmentation(&logits);
    assert!(labels.eq_tensor(&wanted).all().int64_value(&[]) != 0);
}

#[test]
fn uncrop_places_region() {
    let crop = Tensor::ones([2, 3], (Kind::Uint8, Device::Cpu));
    let full = uncrop(&crop, &[[1, 3], [2, 5]], &[4, 6]);
    assert_eq!(full.sum(Kind::Int64).int64_value(&[]), 6);
    assert_eq!(full.int64_value(&[1, 2]), 1);
    assert_eq!(full.int64_value(&[0, 2]), 0);
    assert_eq!(full.int64_value(&[3, 4]), 0);
}

/// Times the sliding window with the test network on (2, 4, 384, 384) data, 128x128
/// tiles, step 0.5 and mirroring: 100 tiles, 400 network calls. Run with
/// `cargo test --release --test infer_sliding -- --ignored --nocapture`; the matching
/// nnU-Net timing command is in BENCHMARKS.md.
#[test]
#[ignore = "benchmark; prints timings only"]
fn sliding_window_benchmark() {
    tch::set_num_threads(1);
    let stored = tensors();
    let network = conv_network(&stored, "net");
    let data = Tensor::randn([2, 4, 384, 384], (Kind::Float, Device::Cpu));
    for tile_batch in [1, 4] {
        let options = SlidingWindowOptions {
            tile: [128, 128],
            tile_batch,
            ..Default::default()
        };
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = std::time::Instant::now();
            let logits = predict_sliding_window(&network, &data, &options).unwrap();
            assert_eq!(logits.size(), [3, 4, 384, 384]);
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "tile_batch {tile_batch}: median {:.3} s, min {:.3} s",
            times[2], times[0]
        );
    }
}

#[test]
fn out_of_memory_is_reported() {
    let message = "CUDA out of memory. Tried to allocate 2.00 GiB";
    let network = |_: &Tensor| -> Result<Tensor, tch::TchError> {
        Err(tch::TchError::Torch(message.to_string()))
    };
    let data = Tensor::zeros([1, 1, 40, 40], (Kind::Float, Device::Cpu));
    let options = SlidingWindowOptions {
        tile: [32, 32],
        tile_batch: 2,
        ..Default::default()
    };
    let error = predict_sliding_window(&network, &data, &options).unwrap_err();
    let text = error.to_string();
    println!("{text}");
    assert!(matches!(error, InferError::OutOfMemory { tiles: 2, .. }));
    assert!(text.contains("tile batch size"));
}

#[test]
fn network_error_is_returned() {
    let network = |_: &Tensor| -> Result<Tensor, tch::TchError> {
        Err(tch::TchError::Torch("shape mismatch".to_string()))
    };
    let data = Tensor::zeros([1, 1, 40, 40], (Kind::Float, Device::Cpu));
    let options = SlidingWindowOptions {
        tile: [32, 32],
        ..Default::default()
    };
    let error = predict_sliding_window(&network, &data, &options).unwrap_err();
    assert!(matches!(error, InferError::Network { tiles: 1, .. }));
}
