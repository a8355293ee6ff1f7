//! Contrast, as batchgeneratorsv2's `ContrastTransform` with nnU-Net's settings: per channel,
//! `(x - mean) · factor + mean`, clipped to the channel's original range (`preserve_range`).

use rand::Rng;

use super::random::{bg_contrast, chance};
use super::{pick_channels, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct Contrast {
    pub apply_probability: f64,
    pub factor: (f64, f64),
    pub preserve_range: bool,
    pub p_per_channel: f64,
}

/// (channel, factor) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastParams(pub Vec<(usize, f64)>);

impl Contrast {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<ContrastParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let picked = pick_channels(rng, channels, self.p_per_channel);
        Some(ContrastParams(
            picked
                .into_iter()
                .map(|c| (c, bg_contrast(rng, self.factor)))
                .collect(),
        ))
    }

    pub fn apply(&self, params: &ContrastParams, sample: &mut Sample) {
        for &(c, factor) in &params.0 {
            let x = sample.channel_mut(c);
            let mean = (sum(x) / x.len() as f64) as f32;
            let (lo, hi) = min_max(x);
            let factor = factor as f32;
            for v in x.iter_mut() {
                *v = (*v - mean) * factor + mean;
                if self.preserve_range {
                    *v = v.clamp(lo, hi);
                }
            }
        }
    }
}

/// Lanes of the reductions below: independent accumulators let the compiler vectorise.
const LANES: usize = 8;

#[inline(always)]
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            lo[k] = if chunk[k] < lo[k] { chunk[k] } else { lo[k] };
            hi[k] = if chunk[k] > hi[k] { chunk[k] } else { hi[k] };
        }
    }
    let lo = lo.iter().chain(rest).fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = hi
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (lo, hi)
}

/// Sum in f64, accumulated in lanes.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += chunk[k] as f64;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Sum of squared deviations from `mean` in f64, accumulated in lanes.
#[inline(always)]
pub(crate) fn sum_squared_deviations(x: &[f32], mean: f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum();
    for chunk in chunks {
        for k in 0..LANES {
            let d = chunk[k] as f64 - mean;
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretches_around_mean_within_range() {
        let t = Contrast {
            apply_probability: 1.0,
            factor: (0.75, 1.25),
            preserve_range: true,
            p_per_channel: 1.0,
        };
        let mut s = Sample::new(vec![0.0, 1.0, 2.0, 5.0], vec![3; 4], 1, 2, 2);
        t.apply(&ContrastParams(vec![(0, 2.0)]), &mut s);
        // mean 2: 0 -> -2 clipped to 0, 1 -> 0, 2 -> 2, 5 -> 8 clipped to 5.
        assert_eq!(s.image, vec![0.0, 0.0, 2.0, 5.0]);
        assert_eq!(s.seg, vec![3; 4]);
    }
}
