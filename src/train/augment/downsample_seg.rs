//! nnU-Net's `DownsampleSegForDSTransform`: one label map per deep-supervision output, resized
//! with `nearest-exact` to `round(size · scale)`, so no label value is invented.

use super::low_resolution::resize_nearest_exact;
use super::random::round_half_even;
use super::LabelMap;

/// Resizes `seg` (h, w) for every [scale_y, scale_x]; a scale of 1 keeps the map as it is.
pub fn downsample_for_deep_supervision(
    seg: &[i16],
    h: usize,
    w: usize,
    scales: &[[f64; 2]],
) -> Vec<LabelMap> {
    scales
        .iter()
        .map(|&[sy, sx]| {
            if sy == 1.0 && sx == 1.0 {
                return LabelMap {
                    data: seg.to_vec(),
                    height: h,
                    width: w,
                };
            }
            let out_h = round_half_even(h as f64 * sy) as usize;
            let out_w = round_half_even(w as f64 * sx) as usize;
            LabelMap {
                data: resize_nearest_exact(seg, h, w, out_h, out_w),
                height: out_h,
                width: out_w,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_with_nearest_exact() {
        let seg: Vec<i16> = (0..16).collect();
        let maps =
            downsample_for_deep_supervision(&seg, 4, 4, &[[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]);
        assert_eq!(maps[0].data, seg);
        assert_eq!((maps[1].height, maps[1].width), (2, 2));
        // nearest-exact picks source rows/cols 1 and 3.
        assert_eq!(maps[1].data, vec![5, 7, 13, 15]);
        assert_eq!(maps[2].data, vec![10]);
    }
}
