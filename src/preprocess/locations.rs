//! Foreground locations per class, sampled as nnU-Net v2.8.1's
//! `DefaultPreprocessor._sample_foreground_locations`: for each class, its voxels in C
//! order, of which `max(min(10000, n), ceil(0.01 n))` are drawn without replacement by one
//! `RandomState(1234)` shared by all classes of the case.

use std::collections::BTreeMap;

use super::random::RandomState;

/// Maximum locations per class, unless the coverage rule requires more.
pub const MAX_SAMPLES_PER_CLASS: usize = 10_000;
/// At least this fraction of a class's voxels is kept.
pub const MIN_PERCENT_COVERAGE: f64 = 0.01;
/// Seed nnU-Net uses for every case.
pub const FOREGROUND_SAMPLING_SEED: u32 = 1234;

/// Returns, per class value, the sampled voxels as [0, z, y, x] (channel index first, as
/// nnU-Net's (1, Z, Y, X) label array gives them). Absent classes get an empty list.
pub fn sample_foreground_locations(
    seg: &[i16],
    shape: [usize; 3],
    classes: &[i64],
) -> BTreeMap<String, Vec<[usize; 4]>> {
    let [_, ny, nx] = shape;
    let mut rs = RandomState::new(FOREGROUND_SAMPLING_SEED);
    let mut out = BTreeMap::new();
    for &class in classes {
        let voxels: Vec<usize> = seg
            .iter()
            .enumerate()
            .filter(|(_, &v)| v as i64 == class)
            .map(|(i, _)| i)
            .collect();
        if voxels.is_empty() {
            out.insert(class.to_string(), Vec::new());
            continue;
        }
        let total = voxels.len();
        let target = total
            .min(MAX_SAMPLES_PER_CLASS)
            .max((total as f64 * MIN_PERCENT_COVERAGE).ceil() as usize);
        let picked = rs.choice_without_replacement(total, target);
        let coords = picked
            .into_iter()
            .map(|k| {
                let i = voxels[k];
                [0, i / (ny * nx), (i / nx) % ny, i % nx]
            })
            .collect();
        out.insert(class.to_string(), coords);
    }
    out
}
