//! Surface distances and the surface Dice (NSD) at a tolerance, as the `SurfaceDice.py`
//! module of the Swin-UMamba evaluation scripts computes them (itself a copy of DeepMind's
//! surface-distance library).
//!
//! Surfels are the 2x2x2 neighbourhoods that are neither empty nor full, placed on the
//! corners of the voxel grid of the masks' joint bounding box (one more point per axis
//! than voxels). Each surfel carries the marching-cubes area of its configuration and its
//! Euclidean distance, in the units of `spacing`, to the nearest surfel of the other mask.

use super::surfel_table::SURFEL_NORMALS_X8;

/// Distances from each surfel of one mask to the other mask's surface, with the surfels'
/// areas.
#[derive(Debug, Clone, Default)]
pub struct SurfaceDistances {
    pub distances_gt_to_pred: Vec<f64>,
    pub areas_gt: Vec<f64>,
    pub distances_pred_to_gt: Vec<f64>,
    pub areas_pred: Vec<f64>,
}

/// Returns the surfel area of each of the 256 neighbour codes for a voxel spacing.
fn surfel_areas(spacing: [f64; 3]) -> [f64; 256] {
    let mut areas = [0.0; 256];
    for (code, normals) in SURFEL_NORMALS_X8.iter().enumerate() {
        let mut sum = 0.0;
        for normal in normals.iter() {
            let n = [
                f64::from(normal[0]) / 8.0 * spacing[1] * spacing[2],
                f64::from(normal[1]) / 8.0 * spacing[0] * spacing[2],
                f64::from(normal[2]) / 8.0 * spacing[0] * spacing[1],
            ];
            sum += (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        }
        areas[code] = sum;
    }
    areas
}

/// Returns the inclusive voxel-index box `[min, max]` of the mask, or None when it is empty.
fn bounding_box(
    mask: impl Fn(usize) -> bool,
    shape: [usize; 3],
) -> Option<([usize; 3], [usize; 3])> {
    let mut lo = shape;
    let mut hi = [0usize; 3];
    let mut any = false;
    for x in 0..shape[0] {
        for y in 0..shape[1] {
            for z in 0..shape[2] {
                if mask((x * shape[1] + y) * shape[2] + z) {
                    any = true;
                    let p = [x, y, z];
                    for axis in 0..3 {
                        lo[axis] = lo[axis].min(p[axis]);
                        hi[axis] = hi[axis].max(p[axis]);
                    }
                }
            }
        }
    }
    any.then_some((lo, hi))
}

/// Computes the neighbour code of every corner of the cropped grid.
///
/// Corner (p, q, r) covers voxels p-1..=p, q-1..=q, r-1..=r of the crop; the voxel at
/// offset (a, b, c) contributes bit 7 - (4a + 2b + c), the 2x2x2 kernel
/// [[[128, 64], [32, 16]], [[8, 4], [2, 1]]] correlated with the mask.
fn neighbour_codes(mask: &[bool], shape: [usize; 3], lo: [usize; 3], grid: [usize; 3]) -> Vec<u8> {
    let voxel = |x: isize, y: isize, z: isize| -> bool {
        let extent = [
            grid[0] as isize - 1,
            grid[1] as isize - 1,
            grid[2] as isize - 1,
        ];
        if x < 0 || y < 0 || z < 0 || x >= extent[0] || y >= extent[1] || z >= extent[2] {
            return false;
        }
        let (gx, gy, gz) = (x as usize + lo[0], y as usize + lo[1], z as usize + lo[2]);
        mask[(gx * shape[1] + gy) * shape[2] + gz]
    };
    let mut codes = vec![0u8; grid[0] * grid[1] * grid[2]];
    for p in 0..grid[0] {
        for q in 0..grid[1] {
            for r in 0..grid[2] {
                let mut code = 0u8;
                for a in 0..2isize {
                    for b in 0..2isize {
                        for c in 0..2isize {
                            let (x, y, z) =
                                (p as isize - 1 + a, q as isize - 1 + b, r as isize - 1 + c);
                            if voxel(x, y, z) {
                                code |= 1 << (7 - (4 * a + 2 * b + c));
                            }
                        }
                    }
                }
                codes[(p * grid[1] + q) * grid[2] + r] = code;
            }
        }
    }
    codes
}

const NO_FEATURE: [i32; 3] = [i32::MIN, i32::MIN, i32::MIN];

/// Computes, for every grid point, the Euclidean distance to the nearest `true` point of
/// `sites`, with `spacing` per axis; infinity when there are no sites.
///
/// The nearest site comes from separable lower envelopes of parabolas (Felzenszwalb and
/// Huttenlocher, 2012). The distance is then recomputed from the integer offset as
/// `sqrt((dx*sx)^2 + (dy*sy)^2 + (dz*sz)^2)`, the expression that `scipy.ndimage`'s
/// `distance_transform_edt` evaluates, so distances equal to a tolerance compare alike.
pub fn euclidean_distance_map(sites: &[bool], grid: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let total = grid[0] * grid[1] * grid[2];
    if !sites.iter().any(|&s| s) {
        return vec![f64::INFINITY; total];
    }
    let mut feature: Vec<[i32; 3]> = vec![NO_FEATURE; total];
    let mut dist2: Vec<f64> = vec![f64::INFINITY; total];
    for (index, &site) in sites.iter().enumerate() {
        if site {
            let z = index % grid[2];
            let y = (index / grid[2]) % grid[1];
            let x = index / (grid[1] * grid[2]);
            feature[index] = [x as i32, y as i32, z as i32];
            dist2[index] = 0.0;
        }
    }
    let strides = [grid[1] * grid[2], grid[2], 1];
    for axis in [2usize, 1, 0] {
        let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
        let n = grid[axis];
        let mut line_f = vec![0.0f64; n];
        let mut line_feature = vec![NO_FEATURE; n];
        let mut envelope = LowerEnvelope::new(n);
        for i in 0..grid[others[0]] {
            for j in 0..grid[others[1]] {
                let base = i * strides[others[0]] + j * strides[others[1]];
                for k in 0..n {
                    line_f[k] = dist2[base + k * strides[axis]];
                    line_feature[k] = feature[base + k * strides[axis]];
                }
                envelope.transform(&line_f, spacing[axis], |k, site, value| {
                    dist2[base + k * strides[axis]] = value;
                    feature[base + k * strides[axis]] = line_feature[site];
                });
            }
        }
    }
    let mut distances = vec![f64::INFINITY; total];
    for (index, nearest) in feature.iter().enumerate() {
        let z = (index % grid[2]) as i64;
        let y = ((index / grid[2]) % grid[1]) as i64;
        let x = (index / (grid[1] * grid[2])) as i64;
        let offsets = [
            i64::from(nearest[0]) - x,
            i64::from(nearest[1]) - y,
            i64::from(nearest[2]) - z,
        ];
        let scaled: Vec<f64> = (0..3).map(|a| offsets[a] as f64 * spacing[a]).collect();
        distances[index] =
            (scaled[0] * scaled[0] + scaled[1] * scaled[1] + scaled[2] * scaled[2]).sqrt();
    }
    distances
}

/// Work buffers of the 1D squared-distance transform along one grid line.
struct LowerEnvelope {
    vertices: Vec<usize>,
    boundaries: Vec<f64>,
}

impl LowerEnvelope {
    fn new(n: usize) -> Self {
        LowerEnvelope {
            vertices: vec![0; n],
            boundaries: vec![0.0; n + 1],
        }
    }

    /// Computes min_j f[j] + ((k - j) * step)^2 for every k and calls `emit(k, j, value)`
    /// with the minimising j. Points with infinite `f` are not sites.
    fn transform(&mut self, f: &[f64], step: f64, mut emit: impl FnMut(usize, usize, f64)) {
        let n = f.len();
        let position = |k: usize| k as f64 * step;
        let mut count = 0usize;
        for q in 0..n {
            if !f[q].is_finite() {
                continue;
            }
            loop {
                if count == 0 {
                    self.vertices[0] = q;
                    self.boundaries[0] = f64::NEG_INFINITY;
                    self.boundaries[1] = f64::INFINITY;
                    count = 1;
                    break;
                }
                let v = self.vertices[count - 1];
                let (xq, xv) = (position(q), position(v));
                let s = ((f[q] + xq * xq) - (f[v] + xv * xv)) / (2.0 * (xq - xv));
                if s <= self.boundaries[count - 1] {
                    count -= 1;
                    continue;
                }
                self.vertices[count] = q;
                self.boundaries[count] = s;
                self.boundaries[count + 1] = f64::INFINITY;
                count += 1;
                break;
            }
        }
        if count == 0 {
            return;
        }
        let mut segment = 0usize;
        for k in 0..n {
            let xk = position(k);
            while self.boundaries[segment + 1] < xk {
                segment += 1;
            }
            let v = self.vertices[segment];
            let d = xk - position(v);
            emit(k, v, f[v] + d * d);
        }
    }
}

/// Computes the surface distances between two boolean masks of `shape` (C order).
///
/// Both lists are empty when both masks are empty; when one mask is empty, the other's
/// distances are all infinite.
pub fn surface_distances(
    mask_gt: &[bool],
    mask_pred: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
) -> SurfaceDistances {
    let Some((lo, hi)) = bounding_box(|i| mask_gt[i] || mask_pred[i], shape) else {
        return SurfaceDistances::default();
    };
    let grid = [hi[0] - lo[0] + 2, hi[1] - lo[1] + 2, hi[2] - lo[2] + 2];
    let codes_gt = neighbour_codes(mask_gt, shape, lo, grid);
    let codes_pred = neighbour_codes(mask_pred, shape, lo, grid);
    let is_border = |code: &u8| *code != 0 && *code != 255;
    let borders_gt: Vec<bool> = codes_gt.iter().map(is_border).collect();
    let borders_pred: Vec<bool> = codes_pred.iter().map(is_border).collect();
    let distance_map_gt = euclidean_distance_map(&borders_gt, grid, spacing);
    let distance_map_pred = euclidean_distance_map(&borders_pred, grid, spacing);
    let areas = surfel_areas(spacing);

    let mut result = SurfaceDistances::default();
    for index in 0..borders_gt.len() {
        if borders_gt[index] {
            result.distances_gt_to_pred.push(distance_map_pred[index]);
            result.areas_gt.push(areas[codes_gt[index] as usize]);
        }
        if borders_pred[index] {
            result.distances_pred_to_gt.push(distance_map_gt[index]);
            result.areas_pred.push(areas[codes_pred[index] as usize]);
        }
    }
    result
}

/// Computes the surface Dice at `tolerance` (same unit as the spacing): the area of both
/// surfaces within the tolerance of the other, over the total area. NaN when both
/// surfaces are empty, as numpy's 0/0.
pub fn surface_dice_at_tolerance(distances: &SurfaceDistances, tolerance: f64) -> f64 {
    let within = |d: &[f64], a: &[f64]| -> f64 {
        // A fold from +0.0: `Sum` of an empty f64 iterator gives -0.0.
        d.iter()
            .zip(a)
            .filter(|(&d, _)| d <= tolerance)
            .fold(0.0, |sum, (_, &a)| sum + a)
    };
    let overlap_gt = within(&distances.distances_gt_to_pred, &distances.areas_gt);
    let overlap_pred = within(&distances.distances_pred_to_gt, &distances.areas_pred);
    let total = distances
        .areas_gt
        .iter()
        .chain(&distances.areas_pred)
        .fold(0.0, |s, a| s + a);
    (overlap_gt + overlap_pred) / total
}

/// Computes the Dice coefficient 2|A∩B| / (|A| + |B|); NaN when both masks are empty,
/// as `SurfaceDice.compute_dice_coefficient` returns.
pub fn dice_coefficient(mask_gt: &[bool], mask_pred: &[bool]) -> f64 {
    let mut sizes = 0u64;
    let mut intersection = 0u64;
    for (&g, &p) in mask_gt.iter().zip(mask_pred) {
        sizes += u64::from(g) + u64::from(p);
        intersection += u64::from(g && p);
    }
    if sizes == 0 {
        return f64::NAN;
    }
    2.0 * intersection as f64 / sizes as f64
}
