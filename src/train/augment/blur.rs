//! Gaussian blur, as batchgeneratorsv2's `GaussianBlurTransform` with nnU-Net's settings: each
//! chosen channel gets its own sigma per axis, and the separable kernel (truncated at 6 sigma)
//! runs over reflect-padded borders (torch's `reflect`, which does not repeat the edge pixel).

use rand::Rng;

use super::random::{chance, round_half_even, uniform};
use super::{pick_channels, Sample};

/// batchgeneratorsv2's `blur_dimension` truncates the kernel at this many sigmas.
const TRUNCATE: f64 = 6.0;

#[derive(Debug, Clone, PartialEq)]
pub struct GaussianBlur {
    pub apply_probability: f64,
    pub sigma: (f64, f64),
    pub p_per_channel: f64,
}

/// (channel, [sigma_y, sigma_x]) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct BlurParams(pub Vec<(usize, [f64; 2])>);

impl GaussianBlur {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<BlurParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let picked = pick_channels(rng, channels, self.p_per_channel);
        let params = picked
            .into_iter()
            .map(|c| (c, [uniform(rng, self.sigma), uniform(rng, self.sigma)]))
            .collect();
        Some(BlurParams(params))
    }

    pub fn apply(&self, params: &BlurParams, sample: &mut Sample) {
        let (h, w) = (sample.height, sample.width);
        let mut scratch = vec![0.0f32; h * w];
        for &(c, [sigma_y, sigma_x]) in &params.0 {
            let x = sample.channel_mut(c);
            blur_axis(x, &mut scratch, h, w, &kernel(sigma_y), true);
            blur_axis(&scratch, x, h, w, &kernel(sigma_x), false);
        }
    }
}

/// Builds the normalised kernel of odd size nearest to `6 sigma + 0.5`, as
/// batchgeneratorsv2's `_compute_kernel_size` and `_build_kernel` do.
pub fn kernel(sigma: f64) -> Vec<f32> {
    let target = sigma * TRUNCATE + 0.5;
    let rounded = round_half_even(target);
    let size = if rounded as i64 % 2 == 1 {
        rounded
    } else if target - rounded >= 0.0 {
        rounded + 1.0
    } else {
        rounded - 1.0
    } as usize;
    let half = (size as f64 - 1.0) / 2.0;
    let weights: Vec<f64> = (0..size)
        .map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|&v| (v / sum) as f32).collect()
}

/// Index into [0, n) for torch's `reflect` padding (mirror without repeating the edge).
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

fn blur_axis(src: &[f32], dst: &mut [f32], h: usize, w: usize, kernel: &[f32], along_y: bool) {
    let half = (kernel.len() / 2) as i64;
    if along_y {
        // Row by row: dst row y = sum over k of kernel[k] · src row reflect(y + k - half).
        for y in 0..h {
            let out = &mut dst[y * w..(y + 1) * w];
            out.fill(0.0);
            for (k, &weight) in kernel.iter().enumerate() {
                let row = reflect(y as i64 + k as i64 - half, h);
                let input = &src[row * w..(row + 1) * w];
                for (o, &v) in out.iter_mut().zip(input) {
                    *o += weight * v;
                }
            }
        }
        return;
    }
    let half_u = half as usize;
    for y in 0..h {
        let input = &src[y * w..(y + 1) * w];
        let out = &mut dst[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            let interior = x >= half_u && x + half_u < w;
            let mut acc = 0.0f32;
            if interior {
                let window = &input[x - half_u..x + half_u + 1];
                for (&weight, &v) in kernel.iter().zip(window) {
                    acc += weight * v;
                }
            } else {
                for (k, &weight) in kernel.iter().enumerate() {
                    acc += weight * input[reflect(x as i64 + k as i64 - half, w)];
                }
            }
            *o = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sizes_match_batchgenerators() {
        // Sigma 0.5: 3.5 rounds to 4, which is even and above 3.5, so the size is 3.
        // Sigma 1.0: 6.5 rounds to 6, which is even and below 6.5, so the size is 7.
        assert_eq!(kernel(0.5).len(), 3);
        assert_eq!(kernel(1.0).len(), 7);
        assert_eq!(kernel(0.75).len(), 5);
        let sum: f32 = kernel(0.8).iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn blur_keeps_constant_and_mean_of_impulse() {
        let t = GaussianBlur {
            apply_probability: 1.0,
            sigma: (0.5, 1.0),
            p_per_channel: 1.0,
        };
        let mut s = Sample::new(vec![3.0; 2 * 9 * 9], vec![2; 81], 2, 9, 9);
        t.apply(&BlurParams(vec![(0, [0.7, 1.0])]), &mut s);
        let max_diff = s
            .image
            .iter()
            .map(|v| (v - 3.0).abs())
            .fold(0.0f32, f32::max);
        println!("max diff from constant {max_diff}");
        assert!(max_diff < 1e-5);

        let mut impulse = vec![0.0; 81];
        impulse[40] = 1.0;
        let mut s = Sample::new(impulse, vec![2; 81], 1, 9, 9);
        t.apply(&BlurParams(vec![(0, [1.0, 1.0])]), &mut s);
        let sum: f32 = s.image.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
        assert!(s.image[40] < 0.2, "centre {}", s.image[40]);
        assert!(s.image[40] > s.image[41], "the centre stays the maximum");
        assert_eq!(s.seg, vec![2; 81]);
    }

    #[test]
    fn reflect_indices() {
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(-2, 5), 2);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(2, 5), 2);
    }
}
