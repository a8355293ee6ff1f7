//! The Gaussian importance map that weights each tile: `compute_gaussian` of nnU-Net v2.

use tch::{Device, Kind, Tensor};

use super::official;

/// Returns the 1D kernel of `scipy.ndimage.gaussian_filter`: exp(-x^2 / (2 sigma^2)) for
/// |x| <= int(truncate * sigma + 0.5), normalised to sum 1.
fn scipy_kernel(sigma: f64) -> Vec<f64> {
    let radius = (official::GAUSSIAN_TRUNCATE * sigma + 0.5) as i64;
    let sigma2 = sigma * sigma;
    let values: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / sigma2 * (x * x) as f64).exp())
        .collect();
    let sum: f64 = values.iter().sum();
    values.into_iter().map(|v| v / sum).collect()
}

/// Returns the importance map of a 2D tile (height, width) in `kind` on `device`.
///
/// As nnU-Net: a unit impulse at `size / 2` is filtered with a Gaussian of sigma
/// `size * sigma_scale` per axis (zero outside the kernel) and scaled so its maximum is
/// `value_scaling`. After the cast to `kind`, entries that became 0 are set to the
/// smallest non-zero entry, so no pixel has zero weight.
pub fn importance_map(
    tile: [i64; 2],
    sigma_scale: f64,
    value_scaling: f64,
    kind: Kind,
    device: Device,
) -> Tensor {
    let profiles: Vec<Vec<f64>> = tile
        .iter()
        .map(|&size| {
            let kernel = scipy_kernel(size as f64 * sigma_scale);
            let radius = (kernel.len() / 2) as i64;
            let center = size / 2;
            (0..size)
                .map(|i| {
                    let offset = i - center + radius;
                    if offset >= 0 && offset < kernel.len() as i64 {
                        kernel[offset as usize]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut values = Vec::with_capacity((tile[0] * tile[1]) as usize);
    for a in &profiles[0] {
        for b in &profiles[1] {
            values.push(a * b);
        }
    }
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    let divisor = max / value_scaling;
    let map = Tensor::from_slice(&values)
        .view([tile[0], tile[1]])
        .f_div_scalar(divisor)
        .expect("dividing a CPU tensor by a scalar cannot fail")
        .to_kind(kind);
    let zero = map.eq(0.0);
    let smallest = map
        .masked_select(&zero.logical_not())
        .min()
        .double_value(&[]);
    map.masked_fill(&zero, smallest).to_device(device)
}

/// Returns nnU-Net's default map: sigma 1/8 of the tile, maximum 10, half precision.
pub fn default_importance_map(tile: [i64; 2], device: Device) -> Tensor {
    importance_map(
        tile,
        official::GAUSSIAN_SIGMA_SCALE,
        official::GAUSSIAN_VALUE_SCALING,
        Kind::Half,
        device,
    )
}
