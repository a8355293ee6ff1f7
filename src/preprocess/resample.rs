//! Resampling to the target spacing, as nnU-Net's `resample_data_or_seg_to_shape` with
//! the default plans: images with third-order splines slice by slice (scikit-image's
//! `resize(order=3, mode="edge", anti_aliasing=False)`), labels one class at a time with
//! linear interpolation and the highest score winning (`resize_segmentation`). A 2d configuration
//! keeps the z spacing, so only the in-plane axes change.

/// Sample types [`resize_linear`] interpolates, in their own precision.
pub trait Sample: Copy {
    fn lerp(a: Self, b: Self, w: f64) -> Self;
}

impl Sample for f32 {
    fn lerp(a: f32, b: f32, w: f64) -> f32 {
        a + (b - a) * w as f32
    }
}

impl Sample for f64 {
    fn lerp(a: f64, b: f64, w: f64) -> f64 {
        a + (b - a) * w
    }
}

/// Resizes `channels` volumes of `shape` to `new_shape` with linear interpolation along
/// each axis, pixel centres aligned (`grid_mode=True`), edges clamped.
pub fn resize_linear<T: Sample>(
    data: &[T],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
) -> Vec<T> {
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

fn resize_axis<T: Sample>(
    data: &[T],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    axis: usize,
) -> Vec<T> {
    let (old_n, new_n) = (shape[axis], new_shape[axis]);
    let scale = old_n as f64 / new_n as f64;
    let taps: Vec<(usize, usize, f64)> = (0..new_n)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (old_n - 1) as f64);
            let lo = x.floor() as usize;
            let hi = (lo + 1).min(old_n - 1);
            (lo, hi, x - lo as f64)
        })
        .collect();
    let strides = [shape[1] * shape[2], shape[2], 1];
    let new_strides = [new_shape[1] * new_shape[2], new_shape[2], 1];
    let old_total: usize = shape.iter().product();
    let new_total: usize = new_shape.iter().product();
    let mut out = Vec::with_capacity(channels * new_total);
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
            out.push(T::lerp(a, b, w));
        }
    }
    out
}

/// Linear taps of SciPy's `zoom(order=1, mode="nearest", grid_mode=True)` for one axis:
/// the two source indices (clamped to the edge) and their weights.
fn linear_taps(n: usize, new_n: usize) -> Vec<([usize; 2], [f64; 2])> {
    let scale = n as f64 / new_n as f64;
    (0..new_n)
        .map(|o| {
            let x = (o as f64 + 0.5) * scale - 0.5;
            let base = x.floor();
            let t = x - base;
            let clamp = |i: f64| i.clamp(0.0, (n - 1) as f64) as usize;
            ([clamp(base), clamp(base + 1.0)], [1.0 - t, t])
        })
        .collect()
}

/// Resizes one 2D slice with bilinear weights, summing the four products in SciPy's order
/// (`value * w_y * w_x`, row by row) so that values of exactly 0.5 round as they do there.
fn resize_bilinear_2d(
    slice: &[f64],
    (h, w): (usize, usize),
    (new_h, new_w): (usize, usize),
) -> Vec<f64> {
    let (ty, tx) = (linear_taps(h, new_h), linear_taps(w, new_w));
    let mut out = Vec::with_capacity(new_h * new_w);
    for (ys, wy) in &ty {
        for (xs, wx) in &tx {
            let mut sum = 0.0;
            for i in 0..2 {
                for j in 0..2 {
                    sum += slice[ys[i] * w + xs[j]] * wy[i] * wx[j];
                }
            }
            out.push(sum);
        }
    }
    out
}

/// Nearest source index per output index along one axis, as SciPy's order-0 `zoom`
/// (`floor(x + 0.5)` at the `grid_mode=True` position, clamped to the edge).
fn nearest_taps(n: usize, new_n: usize) -> Vec<usize> {
    let scale = n as f64 / new_n as f64;
    (0..new_n)
        .map(|o| {
            ((o as f64 + 0.5) * scale - 0.5 + 0.5)
                .floor()
                .clamp(0.0, (n - 1) as f64) as usize
        })
        .collect()
}

/// Resizes a label map slice by slice (z keeps its size, as in the 2d configuration) as
/// nnU-Net's `resize_segmentation` from batchgenerators 0.25.5: each label's 0/1 mask is
/// resized bilinearly and every voxel takes the label with the highest score. Where the
/// nearest-neighbour label shares the top score it wins the tie, otherwise the smallest
/// tied label does.
pub fn resize_segmentation(seg: &[i16], shape: [usize; 3], new_shape: [usize; 3]) -> Vec<i16> {
    if shape == new_shape {
        return seg.to_vec();
    }
    let mut labels: Vec<i16> = seg.to_vec();
    labels.sort_unstable();
    labels.dedup();
    if shape[0] != new_shape[0] {
        return resize_segmentation_3d(seg, &labels, shape, new_shape);
    }
    let [nz, h, w] = shape;
    let (new_h, new_w) = (new_shape[1], new_shape[2]);
    let (ny, nx) = (nearest_taps(h, new_h), nearest_taps(w, new_w));
    let mut out = Vec::with_capacity(nz * new_h * new_w);
    for z in 0..nz {
        let slice = &seg[z * h * w..(z + 1) * h * w];
        let nearest: Vec<i16> = ny
            .iter()
            .flat_map(|&y| nx.iter().map(move |&x| slice[y * w + x]))
            .collect();
        let mut present: Vec<i16> = slice.to_vec();
        present.sort_unstable();
        present.dedup();
        let mut best = vec![f64::NEG_INFINITY; new_h * new_w];
        let mut winner = vec![present[0]; new_h * new_w];
        let mut nearest_score = vec![0f64; new_h * new_w];
        for &label in &present {
            let mask: Vec<f64> = slice
                .iter()
                .map(|&v| if v == label { 1.0 } else { 0.0 })
                .collect();
            let scores = resize_bilinear_2d(&mask, (h, w), (new_h, new_w));
            for (i, &score) in scores.iter().enumerate() {
                if score > best[i] {
                    best[i] = score;
                    winner[i] = label;
                }
                if nearest[i] == label {
                    nearest_score[i] = score;
                }
            }
        }
        for i in 0..new_h * new_w {
            let nearest_ties = nearest_score[i] > 0.0 && nearest_score[i] == best[i];
            out.push(if nearest_ties { nearest[i] } else { winner[i] });
        }
    }
    out
}

/// Resizes a label map whose z size changes, one label at a time in 3D.
fn resize_segmentation_3d(
    seg: &[i16],
    labels: &[i16],
    shape: [usize; 3],
    new_shape: [usize; 3],
) -> Vec<i16> {
    let mut out = vec![0i16; new_shape.iter().product()];
    for &label in labels {
        let mask: Vec<f64> = seg
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

/// Samples added on each side before the spline prefilter, as SciPy's `zoom` pads for its
/// `nearest` mode (`_prepad_for_spline_filter`, npad = 12).
const SPLINE_PAD: usize = 12;

/// Pole of the cubic B-spline prefilter, sqrt(3) - 2.
const CUBIC_POLE: f64 = -0.267_949_192_431_122_7;

/// Converts samples to cubic B-spline coefficients in place (SciPy's `spline_filter1d`,
/// order 3, mirror boundary).
fn cubic_prefilter(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = CUBIC_POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in c.iter_mut() {
        *v *= gain;
    }
    let z_n_1 = z.powi(n as i32 - 1);
    let mut first = c[0] + z_n_1 * c[n - 1];
    let mut z_i = z;
    for i in 1..n - 1 {
        first += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] = first / (1.0 - z_n_1 * z_n_1);
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Cubic B-spline weights of the four coefficients around a position with fraction `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [
        (1.0 - t).powi(3) / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    ]
}

/// Resizes one axis of a padded coefficient grid (`rows` lines of `n` samples, padded by
/// [`SPLINE_PAD`]) to `new_n` samples per line, evaluating the cubic spline at SciPy's
/// `grid_mode=True` positions `(o + 0.5) * n / new_n - 0.5`.
fn spline_resample_lines(coefficients: &[f64], n: usize, new_n: usize) -> Vec<f64> {
    let padded = n + 2 * SPLINE_PAD;
    let scale = n as f64 / new_n as f64;
    let taps: Vec<(usize, [f64; 4])> = (0..new_n)
        .map(|o| {
            let x = (o as f64 + 0.5) * scale - 0.5 + SPLINE_PAD as f64;
            let base = x.floor();
            let start = (base as i64 - 1).clamp(0, padded as i64 - 4) as usize;
            (start, cubic_weights(x - base))
        })
        .collect();
    let rows = coefficients.len() / padded;
    let mut out = Vec::with_capacity(rows * new_n);
    for line in coefficients.chunks_exact(padded) {
        for (start, w) in &taps {
            out.push((0..4).map(|k| w[k] * line[start + k]).sum());
        }
    }
    out
}

/// Pads a line with its edge values by [`SPLINE_PAD`] and prefilters it.
fn padded_coefficients(line: impl Iterator<Item = f64> + Clone, n: usize) -> Vec<f64> {
    let values: Vec<f64> = line.collect();
    let mut padded = Vec::with_capacity(n + 2 * SPLINE_PAD);
    padded.extend(std::iter::repeat_n(values[0], SPLINE_PAD));
    padded.extend_from_slice(&values);
    padded.extend(std::iter::repeat_n(values[n - 1], SPLINE_PAD));
    cubic_prefilter(&mut padded);
    padded
}

/// Resizes a 2D image of `height × width` to `new_h × new_w` as scikit-image's
/// `resize(order=3, mode="edge", anti_aliasing=False)` does (SciPy's `zoom` with a cubic
/// spline and edge padding), then clips to `[lo, hi]` as its default `clip=True` clips to
/// the input's range.
pub fn resize_cubic_2d(
    image: &[f32],
    (height, width): (usize, usize),
    (new_h, new_w): (usize, usize),
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    // Along x: prefilter each row, then sample.
    let mut rows = Vec::with_capacity(height * (width + 2 * SPLINE_PAD));
    for row in image.chunks_exact(width) {
        rows.extend(padded_coefficients(row.iter().map(|&v| v as f64), width));
    }
    // SciPy prefilters every axis before sampling any. The x pass above filtered only x,
    // so the y axis of the x-coefficients is filtered next, then y is sampled, then x.
    let padded_w = width + 2 * SPLINE_PAD;
    let mut columns = Vec::with_capacity(padded_w * (height + 2 * SPLINE_PAD));
    for x in 0..padded_w {
        let column = (0..height).map(|y| rows[y * padded_w + x]);
        columns.extend(padded_coefficients(column, height));
    }
    // columns: padded_w lines of (height + 2 pad) coefficients; sample along y.
    let sampled_y = spline_resample_lines(&columns, height, new_h);
    // sampled_y: padded_w lines of new_h values; transpose to new_h lines of padded_w.
    let mut lines = vec![0f64; new_h * padded_w];
    for x in 0..padded_w {
        for y in 0..new_h {
            lines[y * padded_w + x] = sampled_y[x * new_h + y];
        }
    }
    spline_resample_lines(&lines, width, new_w)
        .into_iter()
        .map(|v| (v as f32).clamp(lo, hi))
        .collect()
}

/// Spacing ratio above which nnU-Net resamples slice by slice (`ANISO_THRESHOLD`).
const SEPARATE_Z_THRESHOLD: f64 = 3.0;

/// Resamples image channels from `shape` to `new_shape` (same z) with cubic splines, slice
/// by slice. The output is clipped to each slice's input range when the spacing is
/// anisotropic (nnU-Net's separate-z path) and to the channel's range otherwise.
///
/// NOTE: a changed z size (3D configurations) falls back to linear interpolation.
pub fn resample_image(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    spacing: &[f64],
) -> Vec<f32> {
    if shape == new_shape {
        return data.to_vec();
    }
    if shape[0] != new_shape[0] {
        return resize_linear(data, channels, shape, new_shape);
    }
    let max = spacing.iter().copied().fold(f64::MIN, f64::max);
    let min = spacing.iter().copied().fold(f64::MAX, f64::min);
    let separate_z = max / min > SEPARATE_Z_THRESHOLD;
    let [nz, h, w] = shape;
    let (new_h, new_w) = (new_shape[1], new_shape[2]);
    let range = |values: &[f32]| {
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lo, hi)
    };
    let mut out = Vec::with_capacity(channels * nz * new_h * new_w);
    for channel in data.chunks_exact(nz * h * w) {
        let channel_range = range(channel);
        for slice in channel.chunks_exact(h * w) {
            let clip = if separate_z {
                range(slice)
            } else {
                channel_range
            };
            out.extend(resize_cubic_2d(slice, (h, w), (new_h, new_w), clip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-image 0.26.0: `resize(a, shape, order=3, mode="edge", anti_aliasing=False)`
    /// with `a[i][j] = (7i + 3j) % 11 + 0.5i`, i < 7, j < 9.
    const EXPECTED_11X5: [f64; 55] = [
        0.211502929,
        7.604562520,
        0.344807305,
        6.811323167,
        4.919053780,
        5.252635428,
        4.185719563,
        4.528286331,
        3.649729881,
        7.133896160,
        9.416425433,
        2.192957211,
        8.738745373,
        2.923987476,
        8.349649513,
        6.023803718,
        6.754410318,
        6.874347581,
        9.341283965,
        5.313554448,
        4.936752030,
        9.859054346,
        2.511597782,
        11.137468013,
        3.731380244,
        8.306389353,
        7.805080977,
        1.500000000,
        6.781142925,
        5.779051767,
        10.385556387,
        3.416065836,
        6.880516886,
        4.339990262,
        8.897719344,
        8.567387904,
        3.905322069,
        8.529345288,
        7.159751678,
        8.360819552,
        5.332811260,
        8.826476949,
        5.505696831,
        11.655760510,
        4.891928828,
        6.699872351,
        9.139587453,
        9.118845859,
        9.601601255,
        4.975531985,
        9.112986701,
        7.422868248,
        13.000000000,
        6.132506112,
        6.441742978,
    ];
    const EXPECTED_4X13: [f64; 52] = [
        2.849268955,
        4.902122881,
        5.479766272,
        4.030607378,
        6.934583354,
        7.637862200,
        3.806224288,
        1.974058505,
        2.695985532,
        5.539171183,
        8.982122330,
        7.554968444,
        4.424049617,
        4.415941295,
        4.679735318,
        7.494750213,
        10.473912361,
        5.643517331,
        1.940007600,
        4.096772099,
        6.589630391,
        10.196827769,
        11.004916155,
        5.102059277,
        3.410337899,
        5.392885319,
        8.620070631,
        10.642046742,
        8.819698031,
        2.928784192,
        4.633561031,
        7.690305080,
        8.584333674,
        11.456075605,
        8.495603516,
        3.511383338,
        6.502460348,
        9.247326127,
        9.382628810,
        9.612115374,
        6.280922409,
        5.309756485,
        8.713319807,
        7.799216431,
        7.965733562,
        9.892541392,
        6.697277697,
        6.758492818,
        10.088476482,
        9.202995497,
        5.855614901,
        3.520943781,
    ];

    fn input() -> Vec<f32> {
        (0..7)
            .flat_map(|i| (0..9).map(move |j| ((i * 7 + j * 3) % 11) as f32 + i as f32 * 0.5))
            .collect()
    }

    fn check(new: (usize, usize), expected: &[f64]) {
        let a = input();
        let (lo, hi) = (0.0f32, 13.0f32);
        let out = resize_cubic_2d(&a, (7, 9), new, (lo, hi));
        let max_diff = out
            .iter()
            .zip(expected)
            .map(|(o, e)| (*o as f64 - e).abs())
            .fold(0.0, f64::max);
        println!("resize to {new:?}: max difference from scikit-image {max_diff:e}");
        assert!(max_diff < 1e-5);
    }

    #[test]
    fn cubic_upsample_matches_skimage() {
        check((11, 5), &EXPECTED_11X5);
    }

    #[test]
    fn cubic_downsample_matches_skimage() {
        check((4, 13), &EXPECTED_4X13);
    }
}
