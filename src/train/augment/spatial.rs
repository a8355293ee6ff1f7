//! Rotation and scaling with a centre crop to the network patch, as batchgeneratorsv2's
//! `SpatialTransform` configured by nnU-Net (elastic deformation off, no random crop).
//!
//! The output pixel (i, j) of a (h, w) patch samples the input (H, W) at
//! `A · (i - (h-1)/2, j - (w-1)/2) + ((H-1)/2, (W-1)/2)` with `A = R(angle) · scale`, which is
//! what `grid_sample(align_corners=False)` computes from batchgeneratorsv2's centred grid.
//! Images are interpolated bilinearly with zero padding (batchgeneratorsv2's
//! `mode_image='bilinear'`). Labels are never interpolated to new values. As in
//! batchgeneratorsv2 0.3.6, each label's indicator is interpolated bilinearly on the input
//! padded with label -1 (nnU-Net's `border_mode_seg='constant', padding_value_seg=-1`),
//! scaled by 1000 and rounded to float16. The largest score wins, and ties go to the nearest
//! pixel's label. So a point up to half a pixel outside the input keeps the edge label.

use rand::Rng;

use super::random::{chance, uniform};
use super::Sample;

/// Settings of the spatial transform.
#[derive(Debug, Clone, PartialEq)]
pub struct SpatialTransform {
    /// Output patch, [H, W].
    pub patch_size: [usize; 2],
    pub p_rotation: f64,
    /// Rotation range in radians.
    pub rotation: (f64, f64),
    pub p_scaling: f64,
    /// Scale range of the sampling grid: factors above 1 make objects smaller.
    pub scaling: (f64, f64),
}

/// Parameters drawn for one sample: `None` means the component is not applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialParams {
    pub angle: Option<f64>,
    pub scale: Option<f64>,
}

impl SpatialTransform {
    /// Draws whether to rotate (probability `p_rotation`) and scale (`p_scaling`, one factor
    /// for both axes) and the angle and factor.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> SpatialParams {
        let do_rotation = chance(rng, self.p_rotation);
        let do_scale = chance(rng, self.p_scaling);
        let angle = do_rotation.then(|| uniform(rng, self.rotation));
        let scale = do_scale.then(|| uniform(rng, self.scaling));
        SpatialParams { angle, scale }
    }

    /// Resamples `sample` (the enlarged patch) into the network patch.
    pub fn apply(&self, params: &SpatialParams, sample: &Sample) -> Sample {
        if params.angle.is_none() && params.scale.is_none() {
            return center_crop(sample, self.patch_size);
        }
        let angle = params.angle.unwrap_or(0.0);
        let scale = params.scale.unwrap_or(1.0);
        let (sin, cos) = angle.sin_cos();
        // A = R · S with R = [[cos, -sin], [sin, cos]] acting on (y, x).
        let a = [[cos * scale, -sin * scale], [sin * scale, cos * scale]];
        resample(sample, self.patch_size, a)
    }
}

/// Crops the centred `patch` out of `sample`, as batchgeneratorsv2's `crop_tensor` with centre
/// `floor(shape / 2)`; padding is 0 for the image and -1 for the label.
pub fn center_crop(sample: &Sample, patch: [usize; 2]) -> Sample {
    let [h, w] = patch;
    let y0 = (sample.height / 2) as i64 - (h / 2) as i64;
    let x0 = (sample.width / 2) as i64 - (w / 2) as i64;
    let mut image = vec![0.0f32; sample.channels * h * w];
    let mut seg = vec![-1i16; h * w];
    // Overlap of the crop with the input, in crop coordinates.
    let y_start = (-y0).max(0) as usize;
    let y_end = (sample.height as i64 - y0).clamp(0, h as i64) as usize;
    let x_start = (-x0).max(0) as usize;
    let x_end = (sample.width as i64 - x0).clamp(0, w as i64) as usize;
    if x_start < x_end {
        let run = x_end - x_start;
        for y in y_start..y_end {
            let src = (y0 + y as i64) as usize * sample.width + (x0 + x_start as i64) as usize;
            let dst = y * w + x_start;
            seg[dst..dst + run].copy_from_slice(&sample.seg[src..src + run]);
            for c in 0..sample.channels {
                let channel = sample.channel(c);
                image[c * h * w + dst..c * h * w + dst + run]
                    .copy_from_slice(&channel[src..src + run]);
            }
        }
    }
    Sample::new(image, seg, sample.channels, h, w)
}

/// Rounds a non-negative value to float16 precision (round to nearest even), the precision
/// batchgeneratorsv2 compares label scores in.
fn round_to_f16(v: f32) -> f32 {
    let bits = v.to_bits();
    let lsb = (bits >> 13) & 1;
    f32::from_bits((bits + 0x0FFF + lsb) & !0x1FFF)
}

/// batchgeneratorsv2 scales each label's indicator by this before interpolating, so that the
/// float16 scores have a spacing of 0.5 or less.
const SCORE_SCALE: f32 = 1000.0;

/// Maps output pixels to input pixel coordinates (y, x) in float32, in the order
/// batchgeneratorsv2 and `grid_sample` compute them, so that exact ties fall where they fall
/// there.
struct SourceGrid {
    a: [[f32; 2]; 2],
    half_out: [f32; 2],
    input: [f32; 2],
}

impl SourceGrid {
    fn new(patch: [usize; 2], input: [usize; 2], a: [[f64; 2]; 2]) -> SourceGrid {
        SourceGrid {
            a: [
                [a[0][0] as f32, a[0][1] as f32],
                [a[1][0] as f32, a[1][1] as f32],
            ],
            half_out: [(patch[0] as f32 - 1.0) / 2.0, (patch[1] as f32 - 1.0) / 2.0],
            input: [input[0] as f32, input[1] as f32],
        }
    }

    fn at(&self, i: usize, j: usize) -> [f32; 2] {
        // The centred identity grid contains exact (half-)integers.
        let gy = i as f32 - self.half_out[0];
        let gx = j as f32 - self.half_out[1];
        let [in_h, in_w] = self.input;
        // grid @ A^T, then divide by half the input size (normalised grid_sample coordinates).
        let ny = (gy * self.a[0][0] + gx * self.a[0][1]) / (in_h / 2.0);
        let nx = (gy * self.a[1][0] + gx * self.a[1][1]) / (in_w / 2.0);
        // grid_sample's unnormalisation with align_corners=False.
        [
            ((ny + 1.0) * in_h - 1.0) / 2.0,
            ((nx + 1.0) * in_w - 1.0) / 2.0,
        ]
    }

    /// Tests whether any sample point lies outside the pixel centres, with batchgeneratorsv2's
    /// `_may_reach_outside` bound (the tighter of the two axes, applied to both). The map is
    /// affine, so the patch corners give the extremes.
    fn may_reach_outside(&self, patch: [usize; 2]) -> bool {
        let [in_h, in_w] = [self.input[0] as f64, self.input[1] as f64];
        let bound = (1.0 - 1.0 / in_h).min(1.0 - 1.0 / in_w);
        let corners = [
            (0, 0),
            (0, patch[1] - 1),
            (patch[0] - 1, 0),
            (patch[0] - 1, patch[1] - 1),
        ];
        corners.iter().any(|&(i, j)| {
            let [y, x] = self.at(i, j);
            let ny = (2.0 * y as f64 + 1.0) / in_h - 1.0;
            let nx = (2.0 * x as f64 + 1.0) / in_w - 1.0;
            ny.abs() > bound || nx.abs() > bound
        })
    }
}

fn resample(sample: &Sample, patch: [usize; 2], a: [[f64; 2]; 2]) -> Sample {
    let [h, w] = patch;
    let (in_h, in_w) = (sample.height, sample.width);
    let plane = sample.plane();
    let grid = SourceGrid::new(patch, [in_h, in_w], a);

    // Labels taking part in the vote: those in the input, plus the padding label when a
    // sample point may reach outside the input.
    let mut present = [false; 1 << 16];
    for &v in &sample.seg {
        present[v as u16 as usize] = true;
    }
    if grid.may_reach_outside(patch) {
        present[PAD_LABEL as u16 as usize] = true;
    }
    let label_set: Vec<i16> = (i16::MIN..=i16::MAX)
        .filter(|&l| present[l as u16 as usize])
        .collect();

    let mut image = vec![0.0f32; sample.channels * h * w];
    let mut seg = vec![PAD_LABEL; h * w];
    let planes: Vec<&[f32]> = sample.image.chunks_exact(plane).collect();
    let mut outputs: Vec<&mut [f32]> = image.chunks_exact_mut(h * w).collect();
    let input = Input {
        planes: &planes,
        seg: &sample.seg,
        label_set: &label_set,
        size: [in_h, in_w],
    };
    // Square tiles of the output read a compact region of the input even when rotated, which
    // keeps the reads in cache. The result does not depend on the visiting order.
    for ti in (0..h).step_by(TILE) {
        for tj in (0..w).step_by(TILE) {
            for i in ti..(ti + TILE).min(h) {
                for j in tj..(tj + TILE).min(w) {
                    let out = i * w + j;
                    seg[out] = sample_pixel(&input, grid.at(i, j), &mut outputs, out);
                }
            }
        }
    }
    Sample::new(image, seg, sample.channels, h, w)
}

/// `f32::floor` without a libm call (the default x86-64 target lacks SSE4.1's `roundss`).
fn floor(v: f32) -> f32 {
    let t = v as i32 as f32;
    if t > v {
        t - 1.0
    } else {
        t
    }
}

/// The resampling input: image planes, labels, the labels taking part in the vote, and the
/// size (H, W).
struct Input<'a> {
    planes: &'a [&'a [f32]],
    seg: &'a [i16],
    label_set: &'a [i16],
    size: [usize; 2],
}

/// Writes the bilinear image values at input position `point` = (y, x) to `outputs` at
/// `out` and returns the label there.
#[inline(always)]
fn sample_pixel(input: &Input, point: [f32; 2], outputs: &mut [&mut [f32]], out: usize) -> i16 {
    let [in_h, in_w] = input.size;
    let [y, x] = point;
    let (y0, x0) = (floor(y), floor(x));
    let (y1, x1) = (y0 + 1.0, x0 + 1.0);
    // grid_sample's bilinear weights of the nw, ne, sw and se corners.
    let weights = [
        (x1 - x) * (y1 - y),
        (x - x0) * (y1 - y),
        (x1 - x) * (y - y0),
        (x - x0) * (y - y0),
    ];
    if y0 >= 0.0 && x0 >= 0.0 && y1 <= (in_h - 1) as f32 && x1 <= (in_w - 1) as f32 {
        // Fast path: all four corners inside the input.
        let o = y0 as usize * in_w + x0 as usize;
        let offsets = [o, o + 1, o + in_w, o + in_w + 1];
        for (src, dst) in input.planes.iter().zip(outputs.iter_mut()) {
            dst[out] = weights[0] * src[offsets[0]]
                + weights[1] * src[offsets[1]]
                + weights[2] * src[offsets[2]]
                + weights[3] * src[offsets[3]];
        }
        let l = input.seg[o];
        if input.seg[o + 1] == l && input.seg[o + in_w] == l && input.seg[o + in_w + 1] == l {
            return l;
        }
        let offsets = offsets.map(Some);
        return vote_label(
            input.seg,
            input.label_set,
            &offsets,
            &weights,
            point,
            input.size,
        );
    }
    let corners = [(y0, x0), (y0, x1), (y1, x0), (y1, x1)];
    let offsets = corners.map(|(cy, cx)| {
        let inside = cy >= 0.0 && cy < in_h as f32 && cx >= 0.0 && cx < in_w as f32;
        inside.then(|| cy as usize * in_w + cx as usize)
    });
    for (src, dst) in input.planes.iter().zip(outputs.iter_mut()) {
        let mut v = 0.0f32;
        for (offset, weight) in offsets.iter().zip(&weights) {
            if let Some(o) = offset {
                v += weight * src[*o];
            }
        }
        dst[out] = v;
    }
    vote_label(
        input.seg,
        input.label_set,
        &offsets,
        &weights,
        point,
        input.size,
    )
}

/// Edge of the output tiles the resampling visits in turn.
const TILE: usize = 32;

/// The padding label outside the input (nnU-Net's `padding_value_seg=-1`).
const PAD_LABEL: i16 = -1;

/// Picks the label with the largest interpolated indicator. Corners outside the input count
/// as the padding label. Ties go to the nearest pixel's label when it is among the tied ones
/// (batchgeneratorsv2's default `seg_tiebreak='nearest'`), otherwise to the smallest label.
fn vote_label(
    seg: &[i16],
    label_set: &[i16],
    offsets: &[Option<usize>; 4],
    weights: &[f32; 4],
    point: [f32; 2],
    input: [usize; 2],
) -> i16 {
    if label_set.len() == 1 {
        return label_set[0];
    }
    let mut scores = [0.0f32; 4];
    let mut labels = [0i16; 4];
    let mut n = 0;
    for (offset, weight) in offsets.iter().zip(weights) {
        let label = offset.map_or(PAD_LABEL, |o| seg[o]);
        match labels[..n].iter().position(|&l| l == label) {
            Some(p) => scores[p] += weight * SCORE_SCALE,
            None => {
                labels[n] = label;
                scores[n] = weight * SCORE_SCALE;
                n += 1;
            }
        }
    }
    let score_of = |label: i16| {
        labels[..n]
            .iter()
            .position(|&l| l == label)
            .map_or(0.0, |p| round_to_f16(scores[p]))
    };
    let nearest = || {
        let (ny, nx) = (point[0].round_ties_even(), point[1].round_ties_even());
        let inside = ny >= 0.0 && ny < input[0] as f32 && nx >= 0.0 && nx < input[1] as f32;
        if inside {
            seg[ny as usize * input[1] + nx as usize]
        } else {
            PAD_LABEL
        }
    };

    if label_set.len() == 2 {
        // batchgeneratorsv2's two-label shortcut: the larger label wins above half the scale.
        let high = score_of(label_set[1]);
        return match high.partial_cmp(&(SCORE_SCALE / 2.0)) {
            Some(std::cmp::Ordering::Greater) => label_set[1],
            Some(std::cmp::Ordering::Less) => label_set[0],
            _ => nearest(),
        };
    }
    let mut best = (f32::NEG_INFINITY, PAD_LABEL);
    for &label in label_set {
        let score = score_of(label);
        if score > best.0 {
            best = (score, label);
        }
    }
    let nearest_label = nearest();
    if score_of(nearest_label) == best.0 && label_set.contains(&nearest_label) {
        return nearest_label;
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, h: usize, w: usize) -> Sample {
        let image = (0..channels * h * w).map(|v| v as f32).collect();
        let seg = (0..h * w).map(|v| ((v / w + v % w) % 3) as i16).collect();
        Sample::new(image, seg, channels, h, w)
    }

    fn transform(patch: [usize; 2]) -> SpatialTransform {
        SpatialTransform {
            patch_size: patch,
            p_rotation: 1.0,
            rotation: (0.0, 0.0),
            p_scaling: 1.0,
            scaling: (1.0, 1.0),
        }
    }

    #[test]
    fn identity_grid_matches_crop_when_centres_align() {
        // (H - h) even: the grid lands on pixel centres, so resampling equals the crop.
        let s = ramp(2, 10, 12);
        let t = transform([6, 8]);
        let params = SpatialParams {
            angle: Some(0.0),
            scale: Some(1.0),
        };
        let resampled = t.apply(&params, &s);
        let cropped = center_crop(&s, [6, 8]);
        let max_diff = resampled
            .image
            .iter()
            .zip(&cropped.image)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("max diff {max_diff}");
        assert!(max_diff < 1e-4);
        assert_eq!(resampled.seg, cropped.seg);
    }

    #[test]
    fn quarter_turn_moves_image_and_label_alike() {
        let s = ramp(1, 8, 8);
        let t = transform([8, 8]);
        let params = SpatialParams {
            angle: Some(std::f64::consts::FRAC_PI_2),
            scale: None,
        };
        let out = t.apply(&params, &s);
        // Sampling at A·p with A = R(90°): output (i, j) reads input (7 - j, i).
        for i in 0..8 {
            for j in 0..8 {
                let src = (7 - j) * 8 + i;
                assert!(
                    (out.image[i * 8 + j] - s.image[src]).abs() < 1e-3,
                    "pixel ({i}, {j})"
                );
                assert_eq!(out.seg[i * 8 + j], s.seg[src], "label ({i}, {j})");
            }
        }
    }

    #[test]
    fn labels_in_set_outside_minus_one() {
        let s = ramp(1, 20, 20);
        let t = transform([24, 24]);
        let params = SpatialParams {
            angle: Some(0.4),
            scale: Some(1.3),
        };
        let out = t.apply(&params, &s);
        assert!(out.seg.iter().all(|v| [-1, 0, 1, 2].contains(v)));
        assert_eq!(out.seg[0], -1, "a corner maps outside the input");
        assert_eq!(out.image[0], 0.0);
    }

    #[test]
    fn f16_rounding() {
        assert_eq!(round_to_f16(1000.0), 1000.0);
        assert_eq!(round_to_f16(999.7), 999.5);
        assert_eq!(round_to_f16(600.2), 600.0);
        assert_eq!(round_to_f16(0.5), 0.5);
    }
}
