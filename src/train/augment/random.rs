//! Random draws shared by the transforms, matching the sampling rules of batchgeneratorsv2.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Draws uniformly from [lo, hi), or returns `lo` when the range is empty, as batchgeneratorsv2's
/// `sample_scalar` does for a (lo, hi) tuple.
pub fn uniform<R: Rng>(rng: &mut R, range: (f64, f64)) -> f64 {
    let (lo, hi) = range;
    if lo >= hi {
        return lo;
    }
    rng.gen_range(lo..hi)
}

/// True with probability `p`.
pub fn chance<R: Rng>(rng: &mut R, p: f64) -> bool {
    rng.gen::<f64>() < p
}

/// Draws a factor the way batchgeneratorsv2's `BGContrast` does: with probability 0.5 (and
/// only if the range reaches below 1) uniform in [lo, 1), otherwise uniform in [max(lo, 1), hi).
/// Factors below and above 1 are therefore equally likely, whatever the range's asymmetry.
pub fn bg_contrast<R: Rng>(rng: &mut R, range: (f64, f64)) -> f64 {
    let (lo, hi) = range;
    if rng.gen::<f64>() < 0.5 && lo < 1.0 {
        uniform(rng, (lo, 1.0))
    } else {
        uniform(rng, (lo.max(1.0), hi))
    }
}

/// Python's `round` on floats: halves go to the even neighbour.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes the parts into one 64-bit seed, so that every (seed, epoch, batch, sample) tuple
/// gets its own independent stream.
pub fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_1234_ABCD_0001, |acc, &p| {
        splitmix64(acc ^ splitmix64(p))
    })
}

/// Creates the generator of one stream, e.g. `stream_rng(&[seed, epoch, batch, sample])`.
pub fn stream_rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bg_contrast_halves() {
        let mut rng = stream_rng(&[1]);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| bg_contrast(&mut rng, (0.7, 1.5))).collect();
        let below = draws.iter().filter(|&&v| v < 1.0).count() as f64 / n as f64;
        println!("fraction below 1: {below}");
        assert!((below - 0.5).abs() < 0.02);
        assert!(draws.iter().all(|&v| (0.7..1.5).contains(&v)));
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(8.04), 8.0);
    }

    #[test]
    fn streams_differ() {
        assert_ne!(derive_seed(&[1, 0, 0]), derive_seed(&[1, 0, 1]));
        assert_ne!(derive_seed(&[1, 0, 1]), derive_seed(&[1, 1, 0]));
        assert_eq!(derive_seed(&[7, 3]), derive_seed(&[7, 3]));
    }
}
