//! Per-channel intensity normalisation, nnU-Net v2's schemes in
//! `default_normalization_schemes.py`.

use crate::plan::IntensityProperties;

/// Smallest standard deviation divided by (nnU-Net's eps for float32 targets).
pub const NORMALIZATION_EPS: f64 = 1e-8;

/// Normalises one channel in place. `seg` is the cropped label (negative outside the
/// nonzero mask); `use_mask` restricts z-scoring to `seg >= 0` and leaves other voxels as
/// they are, as nnU-Net does.
pub fn normalize_channel(
    image: &mut [f32],
    seg: &[i16],
    scheme: &str,
    use_mask: bool,
    props: Option<&IntensityProperties>,
) -> Result<(), String> {
    match scheme {
        "ZScoreNormalization" => {
            let selected = |i: usize| !use_mask || seg[i] >= 0;
            let (mut sum, mut count) = (0f64, 0usize);
            for (i, v) in image.iter().enumerate() {
                if selected(i) {
                    sum += *v as f64;
                    count += 1;
                }
            }
            let mean = sum / count.max(1) as f64;
            let mut sq = 0f64;
            for (i, v) in image.iter().enumerate() {
                if selected(i) {
                    sq += (*v as f64 - mean).powi(2);
                }
            }
            let std = (sq / count.max(1) as f64).sqrt().max(NORMALIZATION_EPS);
            for (i, v) in image.iter_mut().enumerate() {
                if selected(i) {
                    *v = ((*v as f64 - mean) / std) as f32;
                }
            }
        }
        "CTNormalization" => {
            let p = props.ok_or("CTNormalization needs the fingerprint's intensity properties")?;
            let (lo, hi) = (p.percentile_00_5 as f32, p.percentile_99_5 as f32);
            let std = p.std.max(NORMALIZATION_EPS);
            for v in image.iter_mut() {
                *v = ((v.clamp(lo, hi) as f64 - p.mean) / std) as f32;
            }
        }
        "NoNormalization" => {}
        "RescaleTo01Normalization" => {
            let min = image.iter().copied().fold(f32::INFINITY, f32::min);
            let max = image.iter().copied().fold(f32::NEG_INFINITY, f32::max) - min;
            let max = (max as f64).max(NORMALIZATION_EPS) as f32;
            for v in image.iter_mut() {
                *v = (*v - min) / max;
            }
        }
        "RGBTo01Normalization" => {
            if image.iter().any(|&v| !(0.0..=255.0).contains(&v)) {
                return Err("RGBTo01Normalization needs values in 0..=255".into());
            }
            for v in image.iter_mut() {
                *v /= 255.0;
            }
        }
        other => return Err(format!("unknown normalization scheme {other:?}")),
    }
    Ok(())
}
