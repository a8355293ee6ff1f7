//! The enlarged patch that nnU-Net reads before rotation and scaling, so that the rotated
//! network patch rarely reaches outside the read window.

/// nnU-Net's `get_patch_size` caps the rotation it accounts for at 90 degrees.
const MAX_ROTATION: f64 = std::f64::consts::FRAC_PI_2;

/// Returns the rotation range nnU-Net's trainer uses for 2D data
/// (`configure_rotation_dummyDA_mirroring_and_inital_patch_size`): ±15 degrees when one side
/// of the patch is more than 1.5 times the other, otherwise ±180 degrees.
pub fn rotation_range_2d(patch: [usize; 2]) -> (f64, f64) {
    let (hi, lo) = (patch[0].max(patch[1]) as f64, patch[0].min(patch[1]) as f64);
    let degrees: f64 = if hi / lo > 1.5 { 15.0 } else { 180.0 };
    (-degrees.to_radians(), degrees.to_radians())
}

/// nnU-Net's `get_patch_size` for 2D: the patch rotated by the largest angle of `rotation`
/// (capped at 90 degrees), the per-axis maximum with the unrotated patch, divided by the
/// smallest scale, truncated to integers. nnU-Net passes the scale range (0.85, 1.25) here,
/// not the (0.7, 1.4) its spatial transform uses.
pub fn initial_patch_size(patch: [usize; 2], rotation: (f64, f64), min_scale: f64) -> [usize; 2] {
    let angle = rotation.0.abs().max(rotation.1.abs()).min(MAX_ROTATION);
    let (a, b) = (patch[0] as f64, patch[1] as f64);
    // batchgenerators' rotate_coords_2d multiplies the row vector (a, b) by R(angle).
    let (sin, cos) = angle.sin_cos();
    let rotated = [(a * cos + b * sin).abs(), (-a * sin + b * cos).abs()];
    [
        (rotated[0].max(a) / min_scale) as usize,
        (rotated[1].max(b) / min_scale) as usize,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_patch_gets_full_rotation() {
        let rotation = rotation_range_2d([640, 640]);
        assert!((rotation.1 - std::f64::consts::PI).abs() < 1e-12);
        // Rotation capped at 90 degrees swaps the sides, so only the scale enlarges: 640 / 0.85.
        assert_eq!(initial_patch_size([640, 640], rotation, 0.85), [752, 752]);
    }

    #[test]
    fn elongated_patch_gets_fifteen_degrees() {
        let rotation = rotation_range_2d([128, 320]);
        assert!((rotation.1 - 15f64.to_radians()).abs() < 1e-12);
        // Values from nnunetv2 2.8.1 get_patch_size((128, 320), r, r, r, (0.85, 1.25)) with
        // r = (-15°, 15°): (128·cos15 + 320·sin15) / 0.85 = 242.9, 320 / 0.85 = 376.5 (the
        // rotated 320·cos15 - 128·sin15 = 276 is smaller than 320).
        assert_eq!(initial_patch_size([128, 320], rotation, 0.85), [242, 376]);
    }
}
