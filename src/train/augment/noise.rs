//! Additive Gaussian noise, as batchgeneratorsv2's `GaussianNoiseTransform` with nnU-Net's
//! settings: one standard deviation drawn per sample and shared by all channels.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::random::{chance, uniform};
use super::{pick_channels, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct GaussianNoise {
    pub apply_probability: f64,
    /// Range of the noise's standard deviation. batchgeneratorsv2 calls it `noise_variance`
    /// but passes the drawn value to `normal_` as the standard deviation.
    pub sigma: (f64, f64),
    pub p_per_channel: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NoiseParams {
    pub channels: Vec<usize>,
    pub sigma: f64,
}

impl GaussianNoise {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<NoiseParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let channels = pick_channels(rng, channels, self.p_per_channel);
        let sigma = uniform(rng, self.sigma);
        Some(NoiseParams { channels, sigma })
    }

    /// Adds the noise; it draws from `rng`, which must be the sample's stream.
    pub fn apply<R: Rng>(&self, params: &NoiseParams, sample: &mut Sample, rng: &mut R) {
        let sigma = params.sigma as f32;
        for &c in &params.channels {
            for v in sample.channel_mut(c) {
                let n: f32 = StandardNormal.sample(rng);
                *v += sigma * n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::augment::random::stream_rng;

    #[test]
    fn noise_has_drawn_std_and_keeps_labels() {
        let t = GaussianNoise {
            apply_probability: 1.0,
            sigma: (0.05, 0.05),
            p_per_channel: 1.0,
        };
        let mut rng = stream_rng(&[3]);
        let mut s = Sample::new(vec![1.0; 2 * 64 * 64], vec![1; 64 * 64], 2, 64, 64);
        let params = t.sample(&mut rng, 2).unwrap();
        assert_eq!(params.channels, vec![0, 1]);
        t.apply(&params, &mut s, &mut rng);
        let n = s.image.len() as f64;
        let mean = s.image.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (s
            .image
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        println!("mean {mean} std {std}");
        assert!((mean - 1.0).abs() < 0.005);
        assert!((std - 0.05).abs() < 0.003);
        assert!(s.seg.iter().all(|&v| v == 1));
    }
}
