//! Multiplicative brightness, as batchgeneratorsv2's `MultiplicativeBrightnessTransform` with
//! nnU-Net's settings: one factor per channel, drawn by the `BGContrast` rule.

use rand::Rng;

use super::random::{bg_contrast, chance};
use super::{pick_channels, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct MultiplicativeBrightness {
    pub apply_probability: f64,
    pub multiplier: (f64, f64),
    pub p_per_channel: f64,
}

/// (channel, factor) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct BrightnessParams(pub Vec<(usize, f64)>);

impl MultiplicativeBrightness {
    pub fn sample<R: Rng>(&self, rng: &mut R, channels: usize) -> Option<BrightnessParams> {
        if !chance(rng, self.apply_probability) {
            return None;
        }
        let picked = pick_channels(rng, channels, self.p_per_channel);
        Some(BrightnessParams(
            picked
                .into_iter()
                .map(|c| (c, bg_contrast(rng, self.multiplier)))
                .collect(),
        ))
    }

    pub fn apply(&self, params: &BrightnessParams, sample: &mut Sample) {
        for &(c, m) in &params.0 {
            let m = m as f32;
            sample.channel_mut(c).iter_mut().for_each(|v| *v *= m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_only_chosen_channel() {
        let t = MultiplicativeBrightness {
            apply_probability: 1.0,
            multiplier: (0.75, 1.25),
            p_per_channel: 1.0,
        };
        let mut s = Sample::new(vec![2.0, -1.0, 3.0, 4.0], vec![0, 1], 2, 1, 2);
        t.apply(&BrightnessParams(vec![(1, 0.5)]), &mut s);
        assert_eq!(s.image, vec![2.0, -1.0, 1.5, 2.0]);
        assert_eq!(s.seg, vec![0, 1]);
    }
}
