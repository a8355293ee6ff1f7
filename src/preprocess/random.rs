//! NumPy's legacy `RandomState` (MT19937) for the draws nnU-Net makes with a fixed seed:
//! the K-fold shuffle of the splits, foreground-location sampling and the fingerprint's
//! intensity samples. Reproducing the generator bit for bit gives nnU-Net's exact splits
//! and locations. Follows numpy 2.x `_legacy_seeding`, `random_interval` and
//! `random_bounded_uint64_fill` (masked rejection sampling).

const N: usize = 624;
const M: usize = 397;

/// The MT19937 generator seeded as `numpy.random.RandomState(seed)` seeds it.
pub struct RandomState {
    mt: [u32; N],
    index: usize,
}

impl RandomState {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        RandomState { mt, index: N }
    }

    fn generate(&mut self) {
        let twist = |mt: &mut [u32; N], i: usize, next: usize, far: usize| {
            let y = (mt[i] & 0x8000_0000) | (mt[next] & 0x7fff_ffff);
            let mag = if y & 1 != 0 { 0x9908_b0df } else { 0 };
            mt[i] = mt[far] ^ (y >> 1) ^ mag;
        };
        for i in 0..N - M {
            twist(&mut self.mt, i, i + 1, i + M);
        }
        for i in N - M..N - 1 {
            twist(&mut self.mt, i, i + 1, i + M - N);
        }
        twist(&mut self.mt, N - 1, 0, M - 1);
        self.index = 0;
    }

    /// Returns the next 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.generate();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// Draws a uniform integer in `0..=max` by masked rejection, as numpy's `random_interval`.
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = mask_for(max);
        if max <= u32::MAX as u64 {
            loop {
                let v = (self.next_u32() as u64) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = self.next_u64() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// Shuffles in place as `RandomState.shuffle` does for a 1-D array.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }

    /// `RandomState.choice(n, size, replace=False)`: the first `size` of a permutation.
    pub fn choice_without_replacement(&mut self, n: usize, size: usize) -> Vec<usize> {
        let mut p = self.permutation(n);
        p.truncate(size);
        p
    }

    /// `RandomState.randint(0, n)` for one value (legacy masked sampling; n ≤ 2^32).
    pub fn randint(&mut self, n: u64) -> u64 {
        let rng = n - 1;
        if rng == 0 {
            return 0;
        }
        if rng == u32::MAX as u64 {
            return self.next_u32() as u64;
        }
        let mask = mask_for(rng);
        loop {
            let v = (self.next_u32() as u64) & mask;
            if v <= rng {
                return v;
            }
        }
    }
}

fn mask_for(max: u64) -> u64 {
    let mut mask = max;
    for shift in [1, 2, 4, 8, 16, 32] {
        mask |= mask >> shift;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First outputs of MT19937 seeded with 5489, from the reference implementation's
    /// published test vector (mt19937ar.out starts 3499211612, 581869302, 3890346734).
    #[test]
    fn mt19937_reference_outputs() {
        let mut rs = RandomState::new(5489);
        assert_eq!(rs.next_u32(), 3_499_211_612);
        assert_eq!(rs.next_u32(), 581_869_302);
        assert_eq!(rs.next_u32(), 3_890_346_734);
    }

    // Expected values below were printed by numpy 2.4.6:
    //   r = np.random.RandomState(12345); a = np.arange(20); r.shuffle(a)
    //   r = np.random.RandomState(1234); r.choice(1000, 8, replace=False); r.choice(37, 3, replace=False)
    //   r = np.random.RandomState(1234); r.choice(np.arange(777), 6, replace=True)

    #[test]
    fn shuffle_matches_numpy() {
        let mut a: Vec<usize> = (0..20).collect();
        RandomState::new(12345).shuffle(&mut a);
        assert_eq!(
            a,
            vec![13, 8, 16, 3, 15, 12, 0, 10, 7, 11, 6, 17, 19, 18, 14, 9, 4, 1, 5, 2]
        );
    }

    #[test]
    fn choice_without_replacement_matches_numpy() {
        let mut rs = RandomState::new(1234);
        assert_eq!(
            rs.choice_without_replacement(1000, 8),
            vec![681, 990, 155, 768, 438, 363, 688, 555]
        );
        assert_eq!(rs.choice_without_replacement(37, 3), vec![17, 20, 28]);
    }

    #[test]
    fn choice_with_replacement_matches_numpy() {
        let mut rs = RandomState::new(1234);
        let draws: Vec<u64> = (0..6).map(|_| rs.randint(777)).collect();
        assert_eq!(draws, vec![723, 294, 53, 204, 372, 664]);
    }
}
