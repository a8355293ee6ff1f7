//! Rotation and scaling with a centre crop to the network patch, as batchgeneratorsv2's
//! `SpatialTransform` configured by nnU-Net (elastic deformation off, no random crop).
//!
//! The output pixel (i, j) of a (h, w) patch samples the input (H, W) at
//! `A · (i - (h-1)/2, j - (w-1)/2) + ((H-1)/2, (W-1)/2)` with `A = R(angle) · scale`, which is
//! what `grid_sample(align_corners=False)` computes from batchgeneratorsv2's centred grid.
//! Images are interpolated bilinearly with zero padding (batchgeneratorsv2's
//! `mode_image='bilinear'`). Labels are never interpolated to new values: each label's
//! indicator is interpolated bilinearly, scaled by 1000 and rounded to float16, and the
//! largest wins (ties to the smallest label), as batchgeneratorsv2 does. Positions outside the
//! input get label -1 (nnU-Net's `border_mode_seg='constant', padding_value_seg=-1`).

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
    for y in 0..h {
        let sy = y0 + y as i64;
        if sy < 0 || sy >= sample.height as i64 {
            continue;
        }
        for x in 0..w {
            let sx = x0 + x as i64;
            if sx < 0 || sx >= sample.width as i64 {
                continue;
            }
            let src = sy as usize * sample.width + sx as usize;
            seg[y * w + x] = sample.seg[src];
            for c in 0..sample.channels {
                image[(c * h + y) * w + x] = sample.image[c * sample.plane() + src];
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

fn resample(sample: &Sample, patch: [usize; 2], a: [[f64; 2]; 2]) -> Sample {
    let [h, w] = patch;
    let (in_h, in_w) = (sample.height, sample.width);
    let plane = sample.plane();
    let mut image = vec![0.0f32; sample.channels * h * w];
    let mut seg = vec![-1i16; h * w];
    let cy_out = (h as f64 - 1.0) / 2.0;
    let cx_out = (w as f64 - 1.0) / 2.0;
    let cy_in = (in_h as f64 - 1.0) / 2.0;
    let cx_in = (in_w as f64 - 1.0) / 2.0;
    let max_y = (in_h - 1) as f64;
    let max_x = (in_w - 1) as f64;

    for i in 0..h {
        let py = i as f64 - cy_out;
        for j in 0..w {
            let px = j as f64 - cx_out;
            let y = a[0][0] * py + a[0][1] * px + cy_in;
            let x = a[1][0] * py + a[1][1] * px + cx_in;
            let out = i * w + j;

            let y0f = y.floor();
            let x0f = x.floor();
            let (y0, x0) = (y0f as i64, x0f as i64);
            let (fy, fx) = ((y - y0f) as f32, (x - x0f) as f32);
            // Corners in order (y0,x0), (y0,x1), (y1,x0), (y1,x1) with bilinear weights.
            let corners = [
                (y0, x0, (1.0 - fy) * (1.0 - fx)),
                (y0, x0 + 1, (1.0 - fy) * fx),
                (y0 + 1, x0, fy * (1.0 - fx)),
                (y0 + 1, x0 + 1, fy * fx),
            ];
            let mut offsets = [usize::MAX; 4];
            for (k, &(cy, cx, _)) in corners.iter().enumerate() {
                if cy >= 0 && cy < in_h as i64 && cx >= 0 && cx < in_w as i64 {
                    offsets[k] = cy as usize * in_w + cx as usize;
                }
            }
            for c in 0..sample.channels {
                let src = &sample.image[c * plane..(c + 1) * plane];
                let mut v = 0.0f32;
                for k in 0..4 {
                    if offsets[k] != usize::MAX {
                        v += corners[k].2 * src[offsets[k]];
                    }
                }
                image[c * h * w + out] = v;
            }

            // Outside the pixel centres of the input the label is -1 (already filled).
            if y < 0.0 || y > max_y || x < 0.0 || x > max_x {
                continue;
            }
            seg[out] = vote_label(&sample.seg, &offsets, &corners);
        }
    }
    Sample::new(image, seg, sample.channels, h, w)
}

/// The label with the largest interpolated indicator among the in-bounds corners.
fn vote_label(seg: &[i16], offsets: &[usize; 4], corners: &[(i64, i64, f32); 4]) -> i16 {
    let mut labels = [0i16; 4];
    let mut scores = [0.0f32; 4];
    let mut n = 0;
    for k in 0..4 {
        if offsets[k] == usize::MAX {
            continue;
        }
        let label = seg[offsets[k]];
        match labels[..n].iter().position(|&l| l == label) {
            Some(p) => scores[p] += corners[k].2,
            None => {
                labels[n] = label;
                scores[n] = corners[k].2;
                n += 1;
            }
        }
    }
    let mut best = (f32::NEG_INFINITY, i16::MAX);
    for k in 0..n {
        let score = round_to_f16(scores[k] * 1000.0);
        if score > best.0 || (score == best.0 && labels[k] < best.1) {
            best = (score, labels[k]);
        }
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
    fn labels_stay_in_set_and_border_is_minus_one() {
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
