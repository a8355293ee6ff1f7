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

#[inline(always)]
fn mean_std(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = sum(x) / n;
    // torch.std is the unbiased (N - 1) estimate.
    let var = sum_squared_deviations(x, mean) / (n - 1.0).max(1.0);
    (mean as f32, var.sqrt() as f32)
}

fn apply_channel(x: &mut [f32], p: &ChannelGamma) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        return unsafe { apply_channel_avx2(x, p) };
    }
    apply_channel_portable(x, p);
}

/// Runs the same code compiled for AVX2, so the loops run eight lanes wide. Rust does not fuse
/// multiply-adds on its own, so the results equal the portable version's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_channel_avx2(x: &mut [f32], p: &ChannelGamma) {
    apply_channel_portable(x, p);
}

#[inline(always)]
fn apply_channel_portable(x: &mut [f32], p: &ChannelGamma) {
    if p.invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
    let stats = p.retain_stats.then(|| mean_std(x));
    let (lo, hi) = min_max(x);
    let range = hi - lo;
    let denominator = range.max(EPSILON);
    let gamma = p.gamma as f32;
    for v in x.iter_mut() {
        *v = pow_unit((*v - lo) / denominator, gamma) * range + lo;
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

/// Computes `x^g` for `x` in [0, 1] and `g > 0` as `2^(g · log2 x)` with branch-free
/// polynomials, so that the loop vectorises. The relative error is below 2e-6 (see the test).
/// libm's `powf` took a fifth of the loader's time in a profile of `bench loader`.
#[inline(always)]
fn pow_unit(x: f32, g: f32) -> f32 {
    // log2 x: x = m · 2^e with m in [sqrt(1/2), sqrt(2)), ln m from the atanh series.
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    let log2 = e as f32 + 2.0 * t * series * std::f32::consts::LOG2_E;

    // 2^y: y = n + f with n the nearest integer and f in [-1/2, 1/2].
    // Clamping also maps NaN to -126, so the unchecked conversions below stay in range.
    let y = (g * log2).clamp(-126.0, 0.0);
    let shifted = y + 0.5;
    // SAFETY: `shifted` is finite and in [-125.5, 0.5], so it fits in an i32.
    let truncated = unsafe { shifted.to_int_unchecked::<i32>() } as f32;
    let n = if truncated > shifted {
        truncated - 1.0
    } else {
        truncated
    };
    let f = (y - n) * std::f32::consts::LN_2;
    let poly = 1.0
        + f * (1.0
            + f * (1.0 / 2.0
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    // SAFETY: `n` is an integer in [-126, 0].
    let scale = f32::from_bits(((unsafe { n.to_int_unchecked::<i32>() } + 127) as u32) << 23);
    // Subnormal and zero inputs give 0, as x^g underflows for them.
    if bits < 0x0080_0000 {
        0.0
    } else {
        poly * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow_unit_matches_powf() {
        let mut max_rel = 0.0f64;
        for i in 0..=20_000 {
            let x = i as f32 / 20_000.0;
            for g in [0.7f32, 0.93, 1.0, 1.21, 1.5] {
                let exact = (x as f64).powf(g as f64);
                let rel = ((pow_unit(x, g) as f64 - exact).abs() / exact.max(1e-30)).min(1.0);
                if exact > 1e-30 {
                    max_rel = max_rel.max(rel);
                }
            }
        }
        println!("max relative error {max_rel:.2e}");
        assert!(max_rel < 2e-6);
        assert_eq!(pow_unit(0.0, 0.7), 0.0);
        assert_eq!(pow_unit(1.0, 1.3), 1.0);
    }

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
            assert!((lo + 2.0).abs() < 1e-5, "minimum {lo}");
            assert!((hi - 7.9).abs() < 1e-5, "maximum {hi}");
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
            assert!((m0 - m1).abs() < 1e-4, "mean {m0} -> {m1}");
            assert!((s0 - s1).abs() < 1e-4, "std {s0} -> {s1}");
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
