//! Gamma, as batchgeneratorsv2's `GammaTransform`: per channel, optionally invert, rescale to
//! [0, 1], raise to `gamma`, rescale back, restore the mean and standard deviation, undo the
//! inversion. nnU-Net uses it twice: inverted (probability 0.1) and not (0.3).

use rand::Rng;

use super::contrast::{min_max, sum, sum_squared_deviations};
use super::random::{bg_contrast, chance};
use super::{pick_channels, Sample};

/// batchgeneratorsv2's guard against a zero intensity range or standard deviation.
const EPSILON: f32 = 1e-7;

#[derive(Debug, Clone, PartialEq)]
pub struct Gamma {
    pub apply_probability: f64,
    pub gamma: (f64, f64),
    pub p_invert_image: f64,
    pub p_per_channel: f64,
    pub p_retain_stats: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelGamma {
    pub channel: usize,
    pub gamma: f64,
    pub invert: bool,
    pub retain_stats: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GammaParams(pub Vec<ChannelGamma>);

impl Gamma {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<GammaParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let picked = pick_channels(rng, channels, self.p_per_channel);
        let params = picked
            .into_iter()
            .map(|channel| ChannelGamma {
                channel,
                retain_stats: chance(rng, self.p_retain_stats),
                invert: chance(rng, self.p_invert_image),
                gamma: bg_contrast(rng, self.gamma),
            })
            .collect();
        Some(GammaParams(params))
    }

    pub fn apply(&self, params: &GammaParams, sample: &mut Sample) {
        for p in &params.0 {
            apply_channel(sample.channel_mut(p.channel), p);
        }
    }
}

fn mean_std(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = sum(x) / n;
    // torch.std is the unbiased (N - 1) estimate.
    let var = sum_squared_deviations(x, mean) / (n - 1.0).max(1.0);
    (mean as f32, var.sqrt() as f32)
}

fn apply_channel(x: &mut [f32], p: &ChannelGamma) {
    if p.invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
    let stats = p.retain_stats.then(|| mean_std(x));
    let (lo, hi) = min_max(x);
    let range = hi - lo;
    let denominator = range.max(EPSILON);
    let gamma = p.gamma as f32;
    for v in x.iter_mut() {
        *v = ((*v - lo) / denominator).powf(gamma) * range + lo;
    }
    if let Some((mean, std)) = stats {
        let (mean_now, std_now) = mean_std(x);
        let factor = std / std_now.max(EPSILON);
        x.iter_mut()
            .for_each(|v| *v = (*v - mean_now) * factor + mean);
    }
    if p.invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_keeps_range_and_stats() {
        let x: Vec<f32> = (0..100).map(|v| v as f32 / 10.0 - 2.0).collect();
        for invert in [false, true] {
            let mut y = x.clone();
            let p = ChannelGamma {
                channel: 0,
                gamma: 1.4,
                invert,
                retain_stats: false,
            };
            apply_channel(&mut y, &p);
            let (lo, hi) = min_max(&y);
            println!("invert {invert}: range {lo}..{hi}");
            assert!((lo + 2.0).abs() < 1e-5 && (hi - 7.9).abs() < 1e-5);
            assert!(y != x, "values change inside the range");

            let mut z = x.clone();
            apply_channel(
                &mut z,
                &ChannelGamma {
                    retain_stats: true,
                    ..p
                },
            );
            let (m0, s0) = mean_std(&x);
            let (m1, s1) = mean_std(&z);
            println!("mean {m0} -> {m1}, std {s0} -> {s1}");
            assert!((m0 - m1).abs() < 1e-4 && (s0 - s1).abs() < 1e-4);
        }
    }

    #[test]
    fn gamma_one_is_identity() {
        let x: Vec<f32> = vec![0.5, -1.0, 3.0, 2.0];
        let mut y = x.clone();
        apply_channel(
            &mut y,
            &ChannelGamma {
                channel: 0,
                gamma: 1.0,
                invert: true,
                retain_stats: true,
            },
        );
        let max_diff = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("max diff {max_diff}");
        assert!(max_diff < 1e-5);
    }
}
