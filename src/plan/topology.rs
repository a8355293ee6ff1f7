//! Network topology from spacing and patch size, and the feature-map size estimate that
//! nnU-Net uses as a proxy for GPU memory. Both follow nnU-Net v2 2.8.1 (`get_pool_and_conv_props` in
//! `network_topology.py`, `compute_conv_feature_map_size` of dynamic_network_architectures
//! 0.4.4's `PlainConvUNet`), including their floating-point patch sizes.

/// Result of [`get_pool_and_conv_props`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConvProps {
    pub num_pool_per_axis: Vec<u32>,
    /// Stride of each stage; the first stage has stride 1.
    pub pool_op_kernel_sizes: Vec<Vec<i64>>,
    /// Kernel size of each stage; the bottleneck always uses 3.
    pub conv_kernel_sizes: Vec<Vec<i64>>,
    /// Patch size padded up to a multiple of `must_be_divisible_by`.
    pub patch_size: Vec<i64>,
    pub must_be_divisible_by: Vec<i64>,
}

/// Pools every axis whose spacing is within a factor 2 of the smallest and whose size
/// stays at least `2 * min_feature_map_size` (or `3 *` when only one axis is left), until
/// no axis can be pooled. Kernel sizes switch from 1 to 3 once an axis' spacing comes
/// within a factor 2 of the smallest.
pub fn get_pool_and_conv_props(
    spacing: &[f64],
    patch_size: &[f64],
    min_feature_map_size: f64,
    max_numpool: u32,
) -> PoolConvProps {
    let dim = spacing.len();
    let mut current_spacing = spacing.to_vec();
    let mut current_size = patch_size.to_vec();
    let mut pool_op_kernel_sizes = vec![vec![1i64; dim]];
    let mut conv_kernel_sizes = Vec::new();
    let mut num_pool_per_axis = vec![0u32; dim];
    let mut kernel_size = vec![1i64; dim];
    loop {
        let valid: Vec<usize> = (0..dim)
            .filter(|&i| current_size[i] >= 2.0 * min_feature_map_size)
            .collect();
        if valid.is_empty() {
            break;
        }
        let spacings_of_axes: Vec<f64> = valid.iter().map(|&i| current_spacing[i]).collect();
        let min_spacing_of_valid = spacings_of_axes
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let valid: Vec<usize> = valid
            .into_iter()
            .filter(|&i| current_spacing[i] / min_spacing_of_valid < 2.0)
            .filter(|&i| num_pool_per_axis[i] < max_numpool)
            .collect();
        if valid.len() == 1 && current_size[valid[0]] < 3.0 * min_feature_map_size {
            break;
        }
        if valid.is_empty() {
            break;
        }
        let min_current = current_spacing
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        for d in 0..dim {
            // NOTE: nnU-Net indexes the valid axes' spacings by the axis number d here.
            // With fewer valid axes than dimensions Python raises IndexError, but this
            // port leaves the kernel size unchanged instead.
            if kernel_size[d] != 3
                && d < spacings_of_axes.len()
                && spacings_of_axes[d] / min_current < 2.0
            {
                kernel_size[d] = 3;
            }
        }
        let mut pool = vec![1i64; dim];
        for &v in &valid {
            pool[v] = 2;
            num_pool_per_axis[v] += 1;
            current_spacing[v] *= 2.0;
            current_size[v] = (current_size[v] / 2.0).ceil();
        }
        pool_op_kernel_sizes.push(pool);
        conv_kernel_sizes.push(kernel_size.clone());
    }
    let must_be_divisible_by: Vec<i64> = num_pool_per_axis.iter().map(|&n| 1i64 << n).collect();
    let patch_size = pad_shape(patch_size, &must_be_divisible_by);
    conv_kernel_sizes.push(vec![3; dim]);
    PoolConvProps {
        num_pool_per_axis,
        pool_op_kernel_sizes,
        conv_kernel_sizes,
        patch_size,
        must_be_divisible_by,
    }
}

/// Rounds each size up to a multiple of its divisor (Python's float modulo, then int()).
fn pad_shape(shape: &[f64], divisible_by: &[i64]) -> Vec<i64> {
    shape
        .iter()
        .zip(divisible_by)
        .map(|(&s, &d)| {
            let d = d as f64;
            let rem = s.rem_euclid(d);
            let padded = if rem == 0.0 { s } else { s + d - rem };
            padded.trunc() as i64
        })
        .collect()
}

/// nnU-Net's memory proxy for a `PlainConvUNet` without deep supervision: the number of
/// output values of every convolution, transposed convolution and the final segmentation
/// layer, for one sample of `patch_size`.
pub fn estimate_feature_map_size(
    patch_size: &[i64],
    features_per_stage: &[i64],
    strides: &[Vec<i64>],
    n_conv_per_stage: &[i64],
    n_conv_per_stage_decoder: &[i64],
    num_classes: i64,
) -> i64 {
    let n_stages = features_per_stage.len();
    let prod = |s: &[i64]| s.iter().product::<i64>();
    let mut total = 0i64;
    let mut size = patch_size.to_vec();
    let mut stage_sizes = Vec::with_capacity(n_stages);
    for s in 0..n_stages {
        size = size.iter().zip(&strides[s]).map(|(a, b)| a / b).collect();
        total += n_conv_per_stage[s] * features_per_stage[s] * prod(&size);
        stage_sizes.push(size.clone());
    }
    // Decoder stage s works at the resolution of encoder stage n_stages - 2 - s.
    for (s, &n_conv) in n_conv_per_stage_decoder
        .iter()
        .enumerate()
        .take(n_stages - 1)
    {
        let k = n_stages - 2 - s;
        let skip = prod(&stage_sizes[k]);
        total += n_conv * features_per_stage[k] * skip;
        total += features_per_stage[k] * skip;
        if s == n_stages - 2 {
            total += num_classes * skip;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_shape_rounds_up_to_divisor() {
        assert_eq!(pad_shape(&[531.5, 512.0], &[64, 64]), vec![576, 512]);
    }

    #[test]
    fn isotropic_512_gets_seven_stages() {
        let p = get_pool_and_conv_props(&[1.0, 1.0], &[512.0, 512.0], 4.0, 999_999);
        assert_eq!(p.pool_op_kernel_sizes.len(), 8);
        assert_eq!(p.patch_size, vec![512, 512]);
    }
}
