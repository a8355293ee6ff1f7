//! Simulated low resolution, as batchgeneratorsv2's `SimulateLowResolutionTransform` with
//! nnU-Net's settings: per chosen channel, downsample by one factor for both axes with
//! `nearest-exact`, then upsample back with bilinear interpolation (`align_corners=False`).

use rand::Rng;

use super::random::{chance, round_half_even, uniform};
use super::{pick_channels, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct SimulateLowResolution {
    pub apply_probability: f64,
    pub scale: (f64, f64),
    pub p_per_channel: f64,
}

/// (channel, scale) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct LowResolutionParams(pub Vec<(usize, f64)>);

impl SimulateLowResolution {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<LowResolutionParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let picked = pick_channels(rng, channels, self.p_per_channel);
        Some(LowResolutionParams(
            picked
                .into_iter()
                .map(|c| (c, uniform(rng, self.scale)))
                .collect(),
        ))
    }

    pub fn apply(&self, params: &LowResolutionParams, sample: &mut Sample) {
        let (h, w) = (sample.height, sample.width);
        for &(c, scale) in &params.0 {
            let small_h = (round_half_even(h as f64 * scale) as usize).max(1);
            let small_w = (round_half_even(w as f64 * scale) as usize).max(1);
            let x = sample.channel_mut(c);
            let small = resize_nearest_exact(x, h, w, small_h, small_w);
            let up = resize_bilinear(&small, small_h, small_w, h, w);
            x.copy_from_slice(&up);
        }
    }
}

/// Source index of torch's `nearest-exact`: `floor((dst + 0.5) · in / out)`, clamped.
pub fn nearest_exact_index(dst: usize, in_size: usize, out_size: usize) -> usize {
    let scale = in_size as f64 / out_size as f64;
    (((dst as f64 + 0.5) * scale).floor() as usize).min(in_size - 1)
}

/// Resizes an (h, w) plane with torch's `nearest-exact` rule.
pub fn resize_nearest_exact<T: Copy>(
    x: &[T],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<T> {
    let cols: Vec<usize> = (0..out_w)
        .map(|j| nearest_exact_index(j, w, out_w))
        .collect();
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        let row = nearest_exact_index(i, h, out_h) * w;
        out.extend(cols.iter().map(|&j| x[row + j]));
    }
    out
}

/// Source position and weight of torch's bilinear upsampling with `align_corners=False`.
fn linear_source(dst: usize, in_size: usize, out_size: usize) -> (usize, usize, f32) {
    let scale = in_size as f64 / out_size as f64;
    let src = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(in_size - 1);
    let i1 = (i0 + 1).min(in_size - 1);
    (i0, i1, (src - i0 as f64) as f32)
}

/// Resizes an (h, w) plane with torch's bilinear interpolation (`align_corners=False`).
pub fn resize_bilinear(x: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let cols: Vec<(usize, usize, f32)> = (0..out_w).map(|j| linear_source(j, w, out_w)).collect();
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        let (y0, y1, fy) = linear_source(i, h, out_h);
        let (r0, r1) = (&x[y0 * w..(y0 + 1) * w], &x[y1 * w..(y1 + 1) * w]);
        for &(x0, x1, fx) in &cols {
            let top = r0[x0] + fx * (r0[x1] - r0[x0]);
            let bottom = r1[x0] + fx * (r1[x1] - r1[x0]);
            out.push(top + fy * (bottom - top));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_exact_matches_torch_rule() {
        // torch.nn.functional.interpolate(arange(5), size=2, mode='nearest-exact') picks 1 and 3.
        assert_eq!(
            resize_nearest_exact(&[0, 1, 2, 3, 4], 1, 5, 1, 2),
            vec![1, 3]
        );
        assert_eq!(
            resize_nearest_exact(&[0, 1, 2], 1, 3, 1, 6),
            vec![0, 0, 1, 1, 2, 2]
        );
    }

    #[test]
    fn bilinear_upsample_of_two_pixels() {
        // interpolate([[0, 1]], size=4, mode='linear') = [0, 0.25, 0.75, 1].
        assert_eq!(
            resize_bilinear(&[0.0, 1.0], 1, 2, 1, 4),
            vec![0.0, 0.25, 0.75, 1.0]
        );
    }

    #[test]
    fn low_resolution_keeps_shape_and_labels() {
        let t = SimulateLowResolution {
            apply_probability: 1.0,
            scale: (0.5, 1.0),
            p_per_channel: 1.0,
        };
        let image: Vec<f32> = (0..2 * 16 * 16).map(|v| (v % 7) as f32).collect();
        let mut s = Sample::new(image.clone(), vec![1; 256], 2, 16, 16);
        t.apply(&LowResolutionParams(vec![(1, 0.5)]), &mut s);
        assert_eq!(&s.image[..256], &image[..256], "channel 0 untouched");
        assert_ne!(&s.image[256..], &image[256..]);
        assert_eq!(s.seg, vec![1; 256]);
    }
}
