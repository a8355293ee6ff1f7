//! Statistical agreement of the sampled augmentation parameters with nnU-Net's settings.
//!
//! The expected probabilities and ranges are written out here from
//! `nnUNetTrainer.get_training_transforms` (nnunetv2 2.8.1) and batchgeneratorsv2 0.3.6,
//! not read from the Rust configuration. Fractions must lie within 4.5 binomial standard
//! deviations; distributions must pass a Kolmogorov-Smirnov test at significance 1e-4.

mod loader_support;

use swin_umamba::train::augment::patch_size::rotation_range_2d;
use swin_umamba::train::augment::pipeline::TrainingTransforms;
use swin_umamba::train::augment::random::stream_rng;
use swin_umamba::train::augment::Sample;

const DRAWS: usize = 20_000;
const PATCH: [usize; 2] = [640, 640];

fn check_fraction(name: &str, hits: usize, total: usize, p: f64) {
    let observed = hits as f64 / total as f64;
    let tolerance = 4.5 * (p * (1.0 - p) / total as f64).sqrt();
    println!("{name}: {observed:.4} (nnU-Net {p}, tolerance {tolerance:.4}, n = {total})");
    assert!(
        (observed - p).abs() <= tolerance,
        "{name}: {observed} is not {p}"
    );
}

/// Kolmogorov-Smirnov distance of `samples` to the distribution function `cdf`.
fn check_distribution(name: &str, samples: &mut [f64], cdf: impl Fn(f64) -> f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = samples.len() as f64;
    let distance = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max);
    // Critical value sqrt(-ln(alpha / 2) / 2) / sqrt(n) with alpha = 1e-4.
    let critical = (-(1e-4f64 / 2.0).ln() / 2.0).sqrt() / n.sqrt();
    let mean = samples.iter().sum::<f64>() / n;
    println!("{name}: n = {n}, mean {mean:.4}, KS distance {distance:.4} (critical {critical:.4})");
    assert!(
        distance < critical,
        "{name}: KS distance {distance} >= {critical}"
    );
}

fn uniform_cdf(lo: f64, hi: f64) -> impl Fn(f64) -> f64 {
    move |x| ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// batchgeneratorsv2's BGContrast(lo, hi) with lo < 1 < hi: half of the draws uniform in
/// [lo, 1), half uniform in [1, hi).
fn bg_contrast_cdf(lo: f64, hi: f64) -> impl Fn(f64) -> f64 {
    move |x| {
        if x < 1.0 {
            0.5 * ((x - lo) / (1.0 - lo)).clamp(0.0, 1.0)
        } else {
            0.5 + 0.5 * ((x - 1.0) / (hi - 1.0)).clamp(0.0, 1.0)
        }
    }
}

fn transforms() -> TrainingTransforms {
    TrainingTransforms::nnunet_2d(PATCH, rotation_range_2d(PATCH))
}

#[test]
fn rotation_and_scale_match_nnunet() {
    let t = transforms();
    let mut rng = stream_rng(&[2024]);
    let (mut angles, mut scales, mut both) = (Vec::new(), Vec::new(), 0);
    for _ in 0..DRAWS {
        let p = t.spatial.sample(&mut rng);
        angles.extend(p.angle);
        scales.extend(p.scale);
        both += (p.angle.is_some() && p.scale.is_some()) as usize;
    }
    // p_rotation = 0.2, p_scaling = 0.2, drawn independently.
    check_fraction("rotated", angles.len(), DRAWS, 0.2);
    check_fraction("scaled", scales.len(), DRAWS, 0.2);
    check_fraction("rotated and scaled", both, DRAWS, 0.04);
    // A square patch gets rotations uniform in (-180, 180) degrees; scales uniform in (0.7, 1.4).
    let pi = std::f64::consts::PI;
    check_distribution("rotation angle", &mut angles, uniform_cdf(-pi, pi));
    check_distribution("scale", &mut scales, uniform_cdf(0.7, 1.4));

    // An elongated patch (ratio above 1.5) gets +-15 degrees.
    let narrow = TrainingTransforms::nnunet_2d([128, 320], rotation_range_2d([128, 320]));
    let mut narrow_angles: Vec<f64> = (0..DRAWS)
        .filter_map(|_| narrow.spatial.sample(&mut rng).angle)
        .map(f64::to_degrees)
        .collect();
    check_distribution(
        "rotation angle, 128 x 320 patch",
        &mut narrow_angles,
        uniform_cdf(-15.0, 15.0),
    );
}

#[test]
fn intensity_parameters_match_nnunet() {
    let t = transforms();
    let mut rng = stream_rng(&[77]);
    let channels = 3;

    let noise: Vec<_> = (0..DRAWS)
        .filter_map(|_| t.noise.sample(&mut rng, channels))
        .collect();
    check_fraction("gaussian noise applied", noise.len(), DRAWS, 0.1);
    assert!(
        noise.iter().all(|p| p.channels == vec![0, 1, 2]),
        "noise reaches every channel"
    );
    check_distribution(
        "noise sigma",
        &mut noise.iter().map(|p| p.sigma).collect::<Vec<_>>(),
        uniform_cdf(0.0, 0.1),
    );

    let blur: Vec<_> = (0..DRAWS)
        .filter_map(|_| t.blur.sample(&mut rng, channels))
        .collect();
    check_fraction("gaussian blur applied", blur.len(), DRAWS, 0.2);
    let blurred_channels: usize = blur.iter().map(|p| p.0.len()).sum();
    check_fraction(
        "blurred channel",
        blurred_channels,
        blur.len() * channels,
        0.5,
    );
    let mut sigmas: Vec<f64> = blur
        .iter()
        .flat_map(|p| p.0.iter().flat_map(|(_, s)| *s))
        .collect();
    check_distribution("blur sigma", &mut sigmas, uniform_cdf(0.5, 1.0));

    let brightness: Vec<_> = (0..DRAWS)
        .filter_map(|_| t.brightness.sample(&mut rng, channels))
        .collect();
    check_fraction("brightness applied", brightness.len(), DRAWS, 0.15);
    let mut factors: Vec<f64> = brightness
        .iter()
        .flat_map(|p| p.0.iter().map(|(_, m)| *m))
        .collect();
    assert_eq!(
        factors.len(),
        brightness.len() * channels,
        "brightness reaches every channel"
    );
    check_distribution(
        "brightness factor",
        &mut factors,
        bg_contrast_cdf(0.75, 1.25),
    );

    let contrast: Vec<_> = (0..DRAWS)
        .filter_map(|_| t.contrast.sample(&mut rng, channels))
        .collect();
    check_fraction("contrast applied", contrast.len(), DRAWS, 0.15);
    let mut factors: Vec<f64> = contrast
        .iter()
        .flat_map(|p| p.0.iter().map(|(_, m)| *m))
        .collect();
    check_distribution("contrast factor", &mut factors, bg_contrast_cdf(0.75, 1.25));

    let low: Vec<_> = (0..DRAWS)
        .filter_map(|_| t.low_resolution.sample(&mut rng, channels))
        .collect();
    check_fraction("low resolution applied", low.len(), DRAWS, 0.25);
    let low_channels: usize = low.iter().map(|p| p.0.len()).sum();
    check_fraction(
        "low-resolution channel",
        low_channels,
        low.len() * channels,
        0.5,
    );
    let mut scales: Vec<f64> = low
        .iter()
        .flat_map(|p| p.0.iter().map(|(_, s)| *s))
        .collect();
    check_distribution("low-resolution scale", &mut scales, uniform_cdf(0.5, 1.0));

    for (name, transform, p, inverted) in [
        ("inverted gamma", &t.gamma_inverted, 0.1, true),
        ("gamma", &t.gamma, 0.3, false),
    ] {
        let drawn: Vec<_> = (0..DRAWS)
            .filter_map(|_| transform.sample(&mut rng, channels))
            .collect();
        check_fraction(&format!("{name} applied"), drawn.len(), DRAWS, p);
        let per_channel: Vec<_> = drawn.iter().flat_map(|g| g.0.iter().copied()).collect();
        assert!(per_channel
            .iter()
            .all(|g| g.invert == inverted && g.retain_stats));
        let mut gammas: Vec<f64> = per_channel.iter().map(|g| g.gamma).collect();
        check_distribution(
            &format!("{name} exponent"),
            &mut gammas,
            bg_contrast_cdf(0.7, 1.5),
        );
    }

    let flips: Vec<_> = (0..DRAWS).map(|_| t.mirror.sample(&mut rng)).collect();
    check_fraction(
        "flip Y",
        flips.iter().filter(|f| f.0[0]).count(),
        DRAWS,
        0.5,
    );
    check_fraction(
        "flip X",
        flips.iter().filter(|f| f.0[1]).count(),
        DRAWS,
        0.5,
    );
}

#[test]
fn applied_intensity_changes_match_nnunet() {
    // Measures the change on a real image rather than reading the drawn parameters.
    let (image, seg) = loader_support::kvasir_sample(0);
    let seg: Vec<i16> = seg.iter().map(|&v| v as i16).collect();
    let input = Sample::new(image, seg, 3, loader_support::HEIGHT, loader_support::WIDTH);
    let t = transforms();
    let mut rng = stream_rng(&[5]);
    let draws = 3000;

    let (mut applied, mut ratios) = (0, Vec::new());
    for _ in 0..draws {
        let mut s = input.clone();
        if let Some(p) = t.brightness.sample(&mut rng, 3) {
            t.brightness.apply(&p, &mut s);
            applied += 1;
            // The image is z-scored, so compare a channel's sum of squares.
            for c in 0..3 {
                let before: f64 = input.channel(c).iter().map(|&v| (v as f64).powi(2)).sum();
                let after: f64 = s.channel(c).iter().map(|&v| (v as f64).powi(2)).sum();
                ratios.push((after / before).sqrt());
            }
        }
    }
    check_fraction("brightness changed the image", applied, draws, 0.15);
    check_distribution(
        "measured brightness factor",
        &mut ratios,
        bg_contrast_cdf(0.75, 1.25),
    );

    let (mut applied, mut stds) = (0, Vec::new());
    for _ in 0..draws {
        let mut s = input.clone();
        if let Some(p) = t.noise.sample(&mut rng, 3) {
            t.noise.apply(&p, &mut s, &mut rng);
            applied += 1;
            let diff: Vec<f64> = s
                .image
                .iter()
                .zip(&input.image)
                .map(|(a, b)| (a - b) as f64)
                .collect();
            let n = diff.len() as f64;
            stds.push((diff.iter().map(|d| d * d).sum::<f64>() / n).sqrt());
        }
    }
    check_fraction("noise changed the image", applied, draws, 0.1);
    check_distribution("measured noise std", &mut stds, uniform_cdf(0.0, 0.1));
}
