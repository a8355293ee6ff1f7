//! Tile placement: `compute_steps_for_sliding_window` of nnU-Net v2.

use super::InferError;

/// Returns, per axis, the start of every tile along it.
///
/// As nnU-Net: the number of tiles is the fewest that step by at most
/// `tile * step_size`, and the starts are spread evenly between 0 and `image - tile`,
/// rounded half to even. Every `image` entry must be at least its `tile` entry.
pub fn compute_steps(
    image: &[i64],
    tile: &[i64],
    step_size: f64,
) -> Result<Vec<Vec<i64>>, InferError> {
    if !(step_size > 0.0 && step_size <= 1.0) {
        return Err(InferError::InvalidStepSize { step: step_size });
    }
    if image.len() != tile.len() || image.iter().zip(tile).any(|(i, t)| i < t) {
        return Err(InferError::InvalidShape {
            shape: image.to_vec(),
            tile: tile.to_vec(),
        });
    }
    let mut steps = Vec::with_capacity(tile.len());
    for (&size, &tile_size) in image.iter().zip(tile) {
        let target_step = tile_size as f64 * step_size;
        let count = ((size - tile_size) as f64 / target_step).ceil() as i64 + 1;
        let max_start = (size - tile_size) as f64;
        let actual_step = if count > 1 {
            max_start / (count - 1) as f64
        } else {
            99_999_999_999.0
        };
        steps.push(
            (0..count)
                .map(|i| (actual_step * i as f64).round_ties_even() as i64)
                .collect(),
        );
    }
    Ok(steps)
}
