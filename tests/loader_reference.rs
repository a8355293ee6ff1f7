//! The Rust transforms against batchgeneratorsv2 0.3.6 / nnunetv2 2.8.1 outputs on a fixed
//! input. tests/fixtures/loader/make_bgv2_reference.py wrote the expected values.

use serde_json::Value;
use swin_umamba::train::augment::blur::{BlurParams, GaussianBlur};
use swin_umamba::train::augment::contrast::{Contrast, ContrastParams};
use swin_umamba::train::augment::downsample_seg::downsample_for_deep_supervision;
use swin_umamba::train::augment::gamma::{ChannelGamma, Gamma, GammaParams};
use swin_umamba::train::augment::low_resolution::{LowResolutionParams, SimulateLowResolution};
use swin_umamba::train::augment::patch_size::initial_patch_size;
use swin_umamba::train::augment::spatial::{SpatialParams, SpatialTransform};
use swin_umamba::train::augment::Sample;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/loader/bgv2_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn labels(v: &Value) -> Vec<i16> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i16)
        .collect()
}

fn input(f: &Value) -> Sample {
    let shape: Vec<usize> = f["input"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    Sample::new(
        floats(&f["input"]["image"]),
        labels(&f["input"]["seg"]),
        shape[0],
        shape[1],
        shape[2],
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn spatial_matches_batchgenerators() {
    let f = fixture();
    let s = input(&f);
    for case in f["spatial"].as_array().unwrap() {
        let params = SpatialParams {
            angle: case["angle"].as_f64(),
            scale: case["scale"].as_f64(),
        };
        let t = SpatialTransform {
            patch_size: [17, 19],
            p_rotation: 1.0,
            rotation: (0.0, 0.0),
            p_scaling: 1.0,
            scaling: (1.0, 1.0),
        };
        let out = t.apply(&params, &s);
        let diff = max_abs_diff(&out.image, &floats(&case["image"]));
        let expected_seg = labels(&case["seg"]);
        let mismatched = out
            .seg
            .iter()
            .zip(&expected_seg)
            .filter(|(a, b)| a != b)
            .count();
        println!(
            "{params:?}: image max diff {diff:.2e}, {mismatched} of {} labels differ",
            expected_seg.len()
        );
        assert!(diff < 1e-4, "image differs for {params:?}");
        assert_eq!(mismatched, 0, "labels differ for {params:?}");
    }
}

#[test]
fn intensity_transforms_match_batchgenerators() {
    let f = fixture();
    let s = input(&f);

    let mut blurred = s.clone();
    let blur = GaussianBlur {
        apply_probability: 1.0,
        sigma: (0.8, 0.8),
        p_per_channel: 1.0,
    };
    blur.apply(
        &BlurParams(vec![(0, [0.8, 0.8]), (1, [0.8, 0.8])]),
        &mut blurred,
    );
    let diff = max_abs_diff(&blurred.image, &floats(&f["blur"]["image"]));
    println!("blur max diff {diff:.2e}");
    assert!(diff < 1e-5);

    let mut low = s.clone();
    let t = SimulateLowResolution {
        apply_probability: 1.0,
        scale: (0.6, 0.6),
        p_per_channel: 1.0,
    };
    t.apply(&LowResolutionParams(vec![(0, 0.6), (1, 0.6)]), &mut low);
    let diff = max_abs_diff(&low.image, &floats(&f["low_resolution"]["image"]));
    println!("low resolution max diff {diff:.2e}");
    assert!(diff < 1e-5);

    let mut contrasted = s.clone();
    let t = Contrast {
        apply_probability: 1.0,
        factor: (1.2, 1.2),
        preserve_range: true,
        p_per_channel: 1.0,
    };
    t.apply(&ContrastParams(vec![(0, 1.2), (1, 1.2)]), &mut contrasted);
    let diff = max_abs_diff(&contrasted.image, &floats(&f["contrast"]["image"]));
    println!("contrast max diff {diff:.2e}");
    assert!(diff < 1e-5);

    let mut gamma = s.clone();
    let t = Gamma {
        apply_probability: 1.0,
        gamma: (1.3, 1.3),
        p_invert_image: 1.0,
        p_per_channel: 1.0,
        p_retain_stats: 1.0,
    };
    let channel = |c| ChannelGamma {
        channel: c,
        gamma: 1.3,
        invert: true,
        retain_stats: true,
    };
    t.apply(&GammaParams(vec![channel(0), channel(1)]), &mut gamma);
    let diff = max_abs_diff(&gamma.image, &floats(&f["gamma_inverted"]["image"]));
    println!("inverted gamma max diff {diff:.2e}");
    assert!(diff < 1e-4);
}

#[test]
fn deep_supervision_and_window_match_nnunet() {
    let f = fixture();
    let s = input(&f);
    let maps = downsample_for_deep_supervision(
        &s.seg,
        s.height,
        s.width,
        &[[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]],
    );
    for (map, expected) in maps.iter().zip(f["deep_supervision"].as_array().unwrap()) {
        let shape: Vec<usize> = expected["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(vec![map.height, map.width], shape);
        assert_eq!(map.data, labels(&expected["seg"]));
    }
    for case in f["initial_patch_size"].as_array().unwrap() {
        let p: Vec<usize> = case["patch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let r: Vec<f64> = case["rotation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let expected: Vec<usize> = case["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let got = initial_patch_size([p[0], p[1]], (r[0], r[1]), 0.85);
        assert_eq!(got.to_vec(), expected, "patch {p:?}");
    }
}
