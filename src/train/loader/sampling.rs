//! Case and patch-position sampling, as nnU-Net's `nnUNetDataLoader` (`get_indices`,
//! `_oversample_last_XX_percent`, `get_bbox`) does for 2D configurations.
//!
//! Positions are (z, y, x): the 2D loader reads a window of one slice, so z picks the slice.

use rand::Rng;

use crate::train::augment::random::round_half_even;

use super::case::Locations;

/// nnU-Net's `oversample_foreground_percent` (nnUNetTrainer.__init__, nnunetv2 2.8.1): the last
/// third of every batch is centred on a foreground location.
pub const OVERSAMPLE_FOREGROUND_PERCENT: f64 = 0.33;

/// Whether sample `index` of a batch of `batch_size` must contain foreground: nnU-Net forces
/// the samples from `round(batch_size · (1 - percent))` on (Python rounding, halves to even).
pub fn force_foreground(index: usize, batch_size: usize, percent: f64) -> bool {
    (index as f64) >= round_half_even(batch_size as f64 * (1.0 - percent))
}

/// Number of forced-foreground samples in a batch of `batch_size`.
pub fn forced_per_batch(batch_size: usize, percent: f64) -> usize {
    (0..batch_size)
        .filter(|&i| force_foreground(i, batch_size, percent))
        .count()
}

/// Lower corner of the read window for a case of spatial `shape` (Z, Y, X).
///
/// `window` is the (enlarged) read size and `need_to_pad` the extra margin nnU-Net allows
/// around the image (window minus network patch), both (Z, Y, X). Random positions are
/// uniform over [-pad/2, shape + pad/2 - window] (floor and ceil halves as nnU-Net). Forced
/// positions pick a label with stored locations uniformly, then one of its locations
/// uniformly, and centre the window there, clamped only from below as nnU-Net does. A case
/// without foreground falls back to a random position.
pub fn window_lower_corner<R: Rng>(
    rng: &mut R,
    shape: [usize; 3],
    window: [usize; 3],
    need_to_pad: [usize; 3],
    force_fg: bool,
    class_locations: &[(i64, Locations)],
) -> [i64; 3] {
    let mut lower = [0i64; 3];
    let mut upper = [0i64; 3];
    for d in 0..3 {
        let mut pad = need_to_pad[d] as i64;
        if pad + (shape[d] as i64) < window[d] as i64 {
            pad = window[d] as i64 - shape[d] as i64;
        }
        lower[d] = (-pad).div_euclid(2);
        upper[d] = shape[d] as i64 + pad.div_euclid(2) + pad.rem_euclid(2) - window[d] as i64;
    }

    if force_fg {
        let eligible: Vec<&Locations> = class_locations
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(_, l)| l)
            .collect();
        if !eligible.is_empty() {
            let locations = eligible[rng.gen_range(0..eligible.len())];
            let voxel = locations[rng.gen_range(0..locations.len())];
            // voxel is [c, z, y, x].
            return std::array::from_fn(|d| lower[d].max(voxel[d + 1] - (window[d] / 2) as i64));
        }
    }
    std::array::from_fn(|d| rng.gen_range(lower[d]..=upper[d]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::augment::random::stream_rng;

    #[test]
    fn forced_samples_follow_nnunet_rounding() {
        // round(B · 0.67): B=2 -> 1 forced (index 1), B=3 -> 2.01 -> 2, so 1 forced,
        // B=12 -> 8.04 -> 8, so 4 forced.
        assert!(!force_foreground(0, 2, 0.33));
        assert!(force_foreground(1, 2, 0.33));
        assert_eq!(forced_per_batch(2, 0.33), 1);
        assert_eq!(forced_per_batch(3, 0.33), 1);
        assert_eq!(forced_per_batch(12, 0.33), 4);
        assert_eq!(forced_per_batch(1, 0.33), 0);
        assert_eq!(
            forced_per_batch(5, 0.5),
            3,
            "round(2.5) is 2, so indices 2, 3 and 4 are forced"
        );
    }

    #[test]
    fn random_window_range() {
        let mut rng = stream_rng(&[9]);
        let (mut lo, mut hi) = ([i64::MAX; 3], [i64::MIN; 3]);
        for _ in 0..4000 {
            let c =
                window_lower_corner(&mut rng, [1, 100, 50], [1, 60, 70], [0, 11, 10], false, &[]);
            for d in 0..3 {
                lo[d] = lo[d].min(c[d]);
                hi[d] = hi[d].max(c[d]);
            }
        }
        // y: pad 11, lower -6, upper 100 + 5 + 1 - 60 = 46. x: 70 > 50 + 10, so pad 20:
        // lower -10, upper 50 + 10 - 70 = -10.
        assert_eq!(lo, [0, -6, -10]);
        assert_eq!(hi, [0, 46, -10]);
    }

    #[test]
    fn forced_window_is_centred_on_location() {
        let mut rng = stream_rng(&[2]);
        let locations = vec![(1, vec![[0, 3, 40, 30]]), (2, vec![])];
        let c = window_lower_corner(
            &mut rng,
            [5, 100, 100],
            [1, 20, 30],
            [0, 4, 4],
            true,
            &locations,
        );
        assert_eq!(c, [3, 30, 15]);
        let c = window_lower_corner(
            &mut rng,
            [5, 100, 100],
            [1, 20, 30],
            [0, 4, 4],
            true,
            &[(1, vec![[0, 0, 2, 1]])],
        );
        assert_eq!(c, [0, -2, -2], "clamped to the lower bound");
    }
}
