//! Cropping to the nonzero region, as nnU-Net v2's `crop_to_nonzero`.

/// Label value written outside the nonzero region (nnU-Net's `nonzero_label`).
pub const OUTSIDE_NONZERO_LABEL: i16 = -1;

/// Half-open bounding box `[[z0, z1], [y0, y1], [x0, x1]]`.
pub type BBox = [[usize; 2]; 3];

/// Union over channels of `value != 0`, with holes filled: background voxels that cannot
/// reach the array border through face-connected background become foreground (SciPy's
/// `binary_fill_holes` with its default cross structure). A 2D image stored as
/// (1, Y, X) has every voxel on the z border, so nothing is filled there, as in nnU-Net.
pub fn nonzero_mask(data: &[f32], channels: usize, shape: [usize; 3]) -> Vec<bool> {
    let n: usize = shape.iter().product();
    let mut mask = vec![false; n];
    for c in 0..channels {
        for (m, v) in mask.iter_mut().zip(&data[c * n..(c + 1) * n]) {
            *m |= *v != 0.0;
        }
    }
    fill_holes(&mut mask, shape);
    mask
}

fn fill_holes(mask: &mut [bool], [nz, ny, nx]: [usize; 3]) {
    let index = |z: usize, y: usize, x: usize| (z * ny + y) * nx + x;
    let mut outside = vec![false; mask.len()];
    let mut stack = Vec::new();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let border =
                    z == 0 || z + 1 == nz || y == 0 || y + 1 == ny || x == 0 || x + 1 == nx;
                let i = index(z, y, x);
                if border && !mask[i] {
                    outside[i] = true;
                    stack.push((z, y, x));
                }
            }
        }
    }
    while let Some((z, y, x)) = stack.pop() {
        let mut visit = |z: usize, y: usize, x: usize| {
            let i = index(z, y, x);
            if !mask[i] && !outside[i] {
                outside[i] = true;
                stack.push((z, y, x));
            }
        };
        if z > 0 {
            visit(z - 1, y, x);
        }
        if z + 1 < nz {
            visit(z + 1, y, x);
        }
        if y > 0 {
            visit(z, y - 1, x);
        }
        if y + 1 < ny {
            visit(z, y + 1, x);
        }
        if x > 0 {
            visit(z, y, x - 1);
        }
        if x + 1 < nx {
            visit(z, y, x + 1);
        }
    }
    for (m, o) in mask.iter_mut().zip(outside) {
        *m = !o;
    }
}

/// Bounding box of the true voxels; the whole array when none is true.
pub fn bbox_of(mask: &[bool], [nz, ny, nx]: [usize; 3]) -> BBox {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for z in 0..nz {
        for y in 0..ny {
            let row = &mask[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            let Some(first) = row.iter().position(|&m| m) else {
                continue;
            };
            let last = row.iter().rposition(|&m| m).expect("row has a true value");
            lo = [lo[0].min(z), lo[1].min(y), lo[2].min(first)];
            hi = [hi[0].max(z + 1), hi[1].max(y + 1), hi[2].max(last + 1)];
        }
    }
    if lo[0] == usize::MAX {
        return [[0, nz], [0, ny], [0, nx]];
    }
    [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]]
}

/// Copies the box out of each of `channels` volumes of `shape`.
pub fn crop_volume<T: Copy>(data: &[T], channels: usize, shape: [usize; 3], bbox: &BBox) -> Vec<T> {
    let [_, ny, nx] = shape;
    let n: usize = shape.iter().product();
    let mut out =
        Vec::with_capacity(channels * bbox.iter().map(|b| b[1] - b[0]).product::<usize>());
    for c in 0..channels {
        for z in bbox[0][0]..bbox[0][1] {
            for y in bbox[1][0]..bbox[1][1] {
                let start = c * n + (z * ny + y) * nx;
                out.extend_from_slice(&data[start + bbox[2][0]..start + bbox[2][1]]);
            }
        }
    }
    out
}

/// Result of [`crop_to_nonzero`]; shapes are (Z, Y, X) after cropping.
pub struct Cropped {
    pub data: Vec<f32>,
    /// Labels as integers, [`OUTSIDE_NONZERO_LABEL`] where the label is 0 outside the
    /// nonzero mask (everywhere outside it when the case has no label).
    pub seg: Vec<i16>,
    pub bbox: BBox,
    pub shape: [usize; 3],
}

/// Crops image channels and label to the bounding box of the nonzero mask.
pub fn crop_to_nonzero(
    data: &[f32],
    channels: usize,
    shape: [usize; 3],
    seg: Option<&[f32]>,
) -> Cropped {
    let mask = nonzero_mask(data, channels, shape);
    let bbox = bbox_of(&mask, shape);
    let cropped_shape = [
        bbox[0][1] - bbox[0][0],
        bbox[1][1] - bbox[1][0],
        bbox[2][1] - bbox[2][0],
    ];
    let data = crop_volume(data, channels, shape, &bbox);
    let mask = crop_volume(&mask, 1, shape, &bbox);
    let seg: Vec<i16> = match seg {
        Some(seg) => crop_volume(seg, 1, shape, &bbox)
            .into_iter()
            .zip(&mask)
            .map(|(v, &m)| {
                if v == 0.0 && !m {
                    OUTSIDE_NONZERO_LABEL
                } else {
                    v as i16
                }
            })
            .collect(),
        None => mask
            .iter()
            .map(|&m| if m { 0 } else { OUTSIDE_NONZERO_LABEL })
            .collect(),
    };
    Cropped {
        data,
        seg,
        bbox,
        shape: cropped_shape,
    }
}
