//! Mirroring, as batchgeneratorsv2's `MirrorTransform`: each allowed axis flips with
//! probability 0.5, image and label alike.

use rand::Rng;

use super::random::chance;
use super::Sample;

/// batchgeneratorsv2 flips each allowed axis with this probability.
const P_FLIP: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Spatial axes allowed to flip: 0 is Y, 1 is X.
    pub axes: Vec<usize>,
}

/// Flip flags of the axes, [Y, X].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MirrorParams(pub [bool; 2]);

impl Mirror {
    pub fn sample<R: Rng>(&self, rng: &mut R) -> MirrorParams {
        let mut flip = [false; 2];
        for &axis in &self.axes {
            flip[axis] = chance(rng, P_FLIP);
        }
        MirrorParams(flip)
    }

    pub fn apply(&self, params: &MirrorParams, sample: &mut Sample) {
        let [flip_y, flip_x] = params.0;
        let (h, w) = (sample.height, sample.width);
        for c in 0..sample.channels {
            flip_plane(sample.channel_mut(c), h, w, flip_y, flip_x);
        }
        flip_plane(&mut sample.seg, h, w, flip_y, flip_x);
    }
}

fn flip_plane<T>(x: &mut [T], h: usize, w: usize, flip_y: bool, flip_x: bool) {
    if flip_x {
        x.chunks_exact_mut(w).for_each(|row| row.reverse());
    }
    if flip_y {
        for y in 0..h / 2 {
            let (top, bottom) = x.split_at_mut((h - 1 - y) * w);
            top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_image_and_label_alike() {
        let image: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let seg: Vec<i16> = (0..6).collect();
        let t = Mirror { axes: vec![0, 1] };
        let mut s = Sample::new(image, seg, 2, 2, 3);
        t.apply(&MirrorParams([true, false]), &mut s);
        assert_eq!(s.seg, vec![3, 4, 5, 0, 1, 2]);
        assert_eq!(&s.image[..6], &[3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
        t.apply(&MirrorParams([false, true]), &mut s);
        assert_eq!(s.seg, vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(&s.image[6..], &[11.0, 10.0, 9.0, 8.0, 7.0, 6.0]);
    }
}
