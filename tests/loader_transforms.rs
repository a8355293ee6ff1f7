//! The transforms on a real Kvasir-SEG image: labels stay in the label set, spatial
//! transforms move image and label alike, intensity transforms leave labels untouched.

mod loader_support;

use loader_support::{kvasir_sample, HEIGHT, WIDTH};
use swin_umamba::train::augment::blur::BlurParams;
use swin_umamba::train::augment::brightness::BrightnessParams;
use swin_umamba::train::augment::contrast::ContrastParams;
use swin_umamba::train::augment::gamma::{ChannelGamma, GammaParams};
use swin_umamba::train::augment::low_resolution::LowResolutionParams;
use swin_umamba::train::augment::mirror::MirrorParams;
use swin_umamba::train::augment::noise::NoiseParams;
use swin_umamba::train::augment::patch_size::rotation_range_2d;
use swin_umamba::train::augment::pipeline::TrainingTransforms;
use swin_umamba::train::augment::random::stream_rng;
use swin_umamba::train::augment::spatial::SpatialParams;
use swin_umamba::train::augment::{Sample, StageTimes, Transforms};

const PATCH: [usize; 2] = [64, 80];

fn real_sample(index: usize) -> Sample {
    let (image, seg) = kvasir_sample(index);
    Sample::new(
        image,
        seg.iter().map(|&v| v as i16).collect(),
        3,
        HEIGHT,
        WIDTH,
    )
}

/// nnU-Net's chain with every transform forced on, so each one runs on every draw.
fn always_on() -> TrainingTransforms {
    let mut t = TrainingTransforms::nnunet_2d(PATCH, rotation_range_2d(PATCH));
    t.spatial.p_rotation = 1.0;
    t.spatial.p_scaling = 1.0;
    t.noise.apply_probability = 1.0;
    t.blur.apply_probability = 1.0;
    t.brightness.apply_probability = 1.0;
    t.contrast.apply_probability = 1.0;
    t.low_resolution.apply_probability = 1.0;
    t.gamma_inverted.apply_probability = 1.0;
    t.gamma.apply_probability = 1.0;
    t
}

#[test]
fn full_chain_keeps_label_set() {
    let transforms = Transforms::Training(Box::new(always_on()));
    let scales = [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]];
    for k in 0..4 {
        let input = real_sample(k);
        for draw in 0..10u64 {
            let mut rng = stream_rng(&[k as u64, draw]);
            let out =
                transforms.apply(input.clone(), &scales, &mut rng, &mut StageTimes::default());
            assert_eq!((out.sample.height, out.sample.width), (PATCH[0], PATCH[1]));
            for target in &out.targets {
                let outside = target.data.iter().find(|v| ![0, 1, 2].contains(*v));
                assert_eq!(
                    outside, None,
                    "image {k}, draw {draw}: label outside {{0, 1, 2}}"
                );
            }
            assert!(out.sample.image.iter().all(|v| v.is_finite()));
        }
    }
}

/// Builds an image whose every channel is the indicator of label 1, with labels {0, 1}.
fn indicator_sample() -> Sample {
    let (_, seg) = kvasir_sample(1);
    let seg: Vec<i16> = seg.iter().map(|&v| (v == 1) as i16).collect();
    let image: Vec<f32> = seg.iter().map(|&v| v as f32).collect();
    assert!(seg.contains(&1), "the image has a polyp");
    assert!(seg.contains(&0), "the image has background");
    Sample::new([image.clone(), image].concat(), seg, 2, HEIGHT, WIDTH)
}

#[test]
fn spatial_moves_image_and_label_alike() {
    let t = TrainingTransforms::nnunet_2d(PATCH, rotation_range_2d(PATCH));
    let input = indicator_sample();
    let mut checked = 0;
    for (angle, scale) in [(0.5, 1.0), (-2.4, 0.75), (1.3, 1.35), (3.0, 1.1)] {
        let params = SpatialParams {
            angle: Some(angle),
            scale: Some(scale),
        };
        let out = t.spatial.apply(&params, &input);
        for (i, &label) in out.seg.iter().enumerate() {
            let value = out.image[i];
            // The image is the interpolated indicator w1. Label 1 wins only with the largest
            // share among at most three labels (0, 1 and the padding -1), so w1 >= 1/3;
            // label 0 wins only if w1 <= w0, so w1 <= 1/2.
            match label {
                1 => assert!(
                    value >= 1.0 / 3.0 - 1e-4,
                    "angle {angle}: label 1 with image {value}"
                ),
                0 => assert!(
                    value <= 0.5 + 1e-4,
                    "angle {angle}: label 0 with image {value}"
                ),
                -1 => continue,
                other => panic!("label {other} is not in the input"),
            }
            checked += 1;
            assert_eq!(
                out.image[out.plane() + i],
                value,
                "both channels move alike"
            );
        }
    }
    println!("checked {checked} pixels");
    assert!(checked > 4 * PATCH[0] * PATCH[1] / 2);
}

#[test]
fn mirror_moves_image_and_label_alike() {
    let t = TrainingTransforms::nnunet_2d(PATCH, rotation_range_2d(PATCH));
    for flips in [[true, false], [false, true], [true, true]] {
        let mut s = indicator_sample();
        t.mirror.apply(&MirrorParams(flips), &mut s);
        let as_image: Vec<f32> = s.seg.iter().map(|&v| v as f32).collect();
        assert_eq!(s.channel(0), as_image.as_slice(), "flips {flips:?}");
        assert_ne!(s, indicator_sample(), "flips {flips:?} changed nothing");
    }
}

#[test]
fn intensity_transforms_leave_labels() {
    let t = always_on();
    let input = real_sample(2);
    let per_channel = |v: f64| (0..3).map(move |c| (c, v)).collect::<Vec<_>>();
    let gamma = |invert| {
        GammaParams(
            (0..3)
                .map(|c| ChannelGamma {
                    channel: c,
                    gamma: 1.3,
                    invert,
                    retain_stats: true,
                })
                .collect(),
        )
    };
    let mut rng = stream_rng(&[11]);

    let mut cases: Vec<(&str, Sample)> = Vec::new();
    let mut s = input.clone();
    t.noise.apply(
        &NoiseParams {
            channels: vec![0, 1, 2],
            sigma: 0.1,
        },
        &mut s,
        &mut rng,
    );
    cases.push(("noise", s));
    let mut s = input.clone();
    t.blur.apply(
        &BlurParams((0..3).map(|c| (c, [0.9, 0.6])).collect()),
        &mut s,
    );
    cases.push(("blur", s));
    let mut s = input.clone();
    t.brightness
        .apply(&BrightnessParams(per_channel(1.2)), &mut s);
    cases.push(("brightness", s));
    let mut s = input.clone();
    t.contrast.apply(&ContrastParams(per_channel(0.8)), &mut s);
    cases.push(("contrast", s));
    let mut s = input.clone();
    t.low_resolution
        .apply(&LowResolutionParams(per_channel(0.5)), &mut s);
    cases.push(("low resolution", s));
    let mut s = input.clone();
    t.gamma_inverted.apply(&gamma(true), &mut s);
    cases.push(("inverted gamma", s));
    let mut s = input.clone();
    t.gamma.apply(&gamma(false), &mut s);
    cases.push(("gamma", s));

    for (name, out) in cases {
        assert_eq!(out.seg, input.seg, "{name} changed the labels");
        assert_ne!(out.image, input.image, "{name} did not change the image");
    }
}
