//! Mirroring test-time augmentation: `_internal_maybe_mirror_and_predict` of nnU-Net v2.

use tch::{TchError, Tensor};

use super::LogitsNetwork;

/// Returns every non-empty combination of `axes`, by size and then in order, as
/// `itertools.combinations` lists them: for [2, 3] that is [2], [3], [2, 3].
pub fn axis_combinations(axes: &[i64]) -> Vec<Vec<i64>> {
    let mut combinations = Vec::new();
    for size in 1..=axes.len() {
        let mut indices: Vec<usize> = (0..size).collect();
        loop {
            combinations.push(indices.iter().map(|&i| axes[i]).collect());
            // Advance to the next combination in lexicographic order.
            let Some(position) = (0..size)
                .rev()
                .find(|&p| indices[p] != p + axes.len() - size)
            else {
                break;
            };
            indices[position] += 1;
            for p in position + 1..size {
                indices[p] = indices[p - 1] + 1;
            }
        }
    }
    combinations
}

/// Runs the network on `input` (B, C, H, W) and, when `mirror_axes` is given (spatial
/// axes, 0 = H and 1 = W), on every mirrored copy, flipping each output back; returns the
/// mean of all outputs.
pub fn predict_with_mirroring(
    network: &dyn LogitsNetwork,
    input: &Tensor,
    mirror_axes: Option<&[i64]>,
) -> Result<Tensor, TchError> {
    let mut prediction = network.logits(input)?;
    let Some(axes) = mirror_axes else {
        return Ok(prediction);
    };
    let tensor_axes: Vec<i64> = axes.iter().map(|a| a + 2).collect();
    let combinations = axis_combinations(&tensor_axes);
    for flip in &combinations {
        let output = network.logits(&input.f_flip(flip.as_slice())?)?;
        prediction = prediction.f_add(&output.f_flip(flip.as_slice())?)?;
    }
    prediction.f_div_scalar((combinations.len() + 1) as f64)
}
