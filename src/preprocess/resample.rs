//! Resampling to the target spacing. Images use linear interpolation; labels are resampled
//! one class at a time (linear, threshold 0.5), as nnU-Net's `resize_segmentation`.
//! A 2d configuration keeps the z spacing, so only the in-plane axes change.
//!
//! NOTE: nnU-Net resamples images with third-order splines (`order: 3`, SciPy's zoom with
//! edge mode). This port uses linear interpolation, so images that need resampling differ
//! slightly from nnU-Net's. Datasets already at the target spacing are not resampled.

/// Resizes `channels` volumes of `shape` to `new_shape` with linear interpolation along
/// each axis, pixel centres aligned (`grid_mode=True`), edges clamped.
pub fn resize_linear(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
) -> Vec<f32> {
    let mut current = data.to_vec();
    let mut cur_shape = shape;
    for axis in 0..3 {
        if cur_shape[axis] == new_shape[axis] {
            continue;
        }
        let mut next_shape = cur_shape;
        next_shape[axis] = new_shape[axis];
        current = resize_axis(&current, channels, cur_shape, next_shape, axis);
        cur_shape = next_shape;
    }
    current
}

fn resize_axis(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    axis: usize,
) -> Vec<f32> {
    let (old_n, new_n) = (shape[axis], new_shape[axis]);
    let scale = old_n as f64 / new_n as f64;
    let taps: Vec<(usize, usize, f32)> = (0..new_n)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (old_n - 1) as f64);
            let lo = x.floor() as usize;
            let hi = (lo + 1).min(old_n - 1);
            (lo, hi, (x - lo as f64) as f32)
        })
        .collect();
    let strides = [shape[1] * shape[2], shape[2], 1];
    let new_strides = [new_shape[1] * new_shape[2], new_shape[2], 1];
    let old_total: usize = shape.iter().product();
    let new_total: usize = new_shape.iter().product();
    let mut out = vec![0f32; channels * new_total];
    for c in 0..channels {
        for i in 0..new_total {
            let coords = [
                i / new_strides[0],
                (i / new_strides[1]) % new_shape[1],
                i % new_shape[2],
            ];
            let (lo, hi, w) = taps[coords[axis]];
            let mut base = 0;
            for a in 0..3 {
                if a != axis {
                    base += coords[a] * strides[a];
                }
            }
            let a = data[c * old_total + base + lo * strides[axis]];
            let b = data[c * old_total + base + hi * strides[axis]];
            out[c * new_total + i] = a + (b - a) * w;
        }
    }
    out
}

/// Resizes a label map: each label value is resized as a 0/1 mask and written where the
/// result is at least 0.5, in increasing label order.
pub fn resize_segmentation(seg: &[i16], shape: [usize; 3], new_shape: [usize; 3]) -> Vec<i16> {
    if shape == new_shape {
        return seg.to_vec();
    }
    let mut labels: Vec<i16> = seg.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let n: usize = new_shape.iter().product();
    let mut out = vec![0i16; n];
    for &label in &labels {
        let mask: Vec<f32> = seg
            .iter()
            .map(|&v| if v == label { 1.0 } else { 0.0 })
            .collect();
        let resized = resize_linear(&mask, 1, shape, new_shape);
        for (o, r) in out.iter_mut().zip(resized) {
            if r >= 0.5 {
                *o = label;
            }
        }
    }
    out
}
