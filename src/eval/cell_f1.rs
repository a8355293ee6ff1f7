//! Instance F1 for cell segmentation, as the NeurIPS 2022 Cell Segmentation challenge's
//! `compute_metric.py` computes it, with the prediction-side conversion of Swin-UMamba's
//! `evaluation/compute_cell_metric.py`: predicted instances are the 8-connected
//! components of the interior class of a semantic label map.
//!
//! Per image: cells touching a 2-pixel frame along the image border are removed from both
//! sides, reference and predicted instances are matched one-to-one, a pair counts as a
//! true positive when its IoU is at least the threshold, and F1 = 2PR / (P + R), set to 0
//! when nothing matches. Images of 25 million pixels or more are scored in 2000x2000
//! tiles, each with its own border frame, and the counts are summed.

use std::collections::HashMap;

/// Constants of the challenge script.
pub mod official {
    /// IoU at or above which a matched pair is a true positive.
    pub const IOU_THRESHOLD: f64 = 0.5;
    /// Width in pixels of the image frame whose cells are removed before scoring.
    pub const BORDER_WIDTH: usize = 2;
    /// Images with at least this many pixels are scored in tiles.
    pub const TILED_MIN_PIXELS: usize = 25_000_000;
    /// Side of the square tiles of large images.
    pub const TILE_SIZE: usize = 2000;
    /// Semantic class whose connected components are the predicted cells.
    pub const INTERIOR_CLASS: i32 = 1;
    /// Decimals of the reported precision, recall, Dice and F1 (`np.round`).
    pub const ROUND_DECIMALS: i32 = 4;
}

/// Options of the cell F1.
#[derive(Debug, Clone, Copy)]
pub struct CellF1Options {
    pub iou_threshold: f64,
    /// Keep cells touching the border frame (the script's `--count_bd_cells`).
    pub count_border_cells: bool,
    pub tiled_min_pixels: usize,
    pub tile_size: usize,
    /// Round the reported ratios as the script does.
    pub round: bool,
}

impl Default for CellF1Options {
    fn default() -> Self {
        CellF1Options {
            iou_threshold: official::IOU_THRESHOLD,
            count_border_cells: false,
            tiled_min_pixels: official::TILED_MIN_PIXELS,
            tile_size: official::TILE_SIZE,
            round: true,
        }
    }
}

/// Scores of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellScores {
    pub true_count: usize,
    pub pred_count: usize,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    /// Pixel Dice of foreground (any instance) before border removal.
    pub dice: f64,
    pub f1: f64,
}

/// Labels the 8-connected components of the pixels equal to `class`, numbered from 1 in
/// raster order of their first pixel. `shape` is (rows, columns).
pub fn connected_components(labels: &[i32], shape: [usize; 2], class: i32) -> Vec<i32> {
    let [rows, cols] = shape;
    let mut components = vec![0i32; labels.len()];
    let mut next = 0i32;
    let mut stack = Vec::new();
    for start in 0..labels.len() {
        if labels[start] != class || components[start] != 0 {
            continue;
        }
        next += 1;
        components[start] = next;
        stack.push(start);
        while let Some(index) = stack.pop() {
            let (r, c) = ((index / cols) as isize, (index % cols) as isize);
            for dr in -1isize..=1 {
                for dc in -1isize..=1 {
                    let (nr, nc) = (r + dr, c + dc);
                    if nr < 0 || nc < 0 || nr >= rows as isize || nc >= cols as isize {
                        continue;
                    }
                    let neighbour = nr as usize * cols + nc as usize;
                    if labels[neighbour] == class && components[neighbour] == 0 {
                        components[neighbour] = next;
                        stack.push(neighbour);
                    }
                }
            }
        }
    }
    components
}

/// Sets to 0 every instance with a pixel in the `width`-pixel frame of the image.
fn remove_border_instances(instances: &mut [i32], shape: [usize; 2], width: usize) {
    let [rows, cols] = shape;
    let mut on_border = std::collections::HashSet::new();
    for r in 0..rows {
        for c in 0..cols {
            let inside = r >= width && c >= width && r + width < rows && c + width < cols;
            let value = instances[r * cols + c];
            if !inside && value != 0 {
                on_border.insert(value);
            }
        }
    }
    for value in instances.iter_mut() {
        if on_border.contains(value) {
            *value = 0;
        }
    }
}

/// Instance counts of one image or tile.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    true_count: usize,
    pred_count: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.true_count += other.true_count;
        self.pred_count += other.pred_count;
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
}

/// Counts the instances of one image or tile.
///
/// TP is the size of a maximum matching among pairs with IoU at or above the threshold.
/// The script's `linear_sum_assignment` finds the same number, because its cost rewards
/// each such pair by 1 and adds less than 1/2 in total for the IoUs.
///
/// As the script's `eval_tp_fp_fn`, FP and FN are 0, not the instance counts, when there
/// is no predicted instance.
fn match_instances(reference: &[i32], prediction: &[i32], threshold: f64) -> Counts {
    let mut size_ref: HashMap<i32, u64> = HashMap::new();
    let mut size_pred: HashMap<i32, u64> = HashMap::new();
    let mut overlap: HashMap<(i32, i32), u64> = HashMap::new();
    for (&r, &p) in reference.iter().zip(prediction) {
        if r != 0 {
            *size_ref.entry(r).or_default() += 1;
        }
        if p != 0 {
            *size_pred.entry(p).or_default() += 1;
        }
        if r != 0 && p != 0 {
            *overlap.entry((r, p)).or_default() += 1;
        }
    }
    let (true_count, pred_count) = (size_ref.len(), size_pred.len());
    if pred_count == 0 {
        return Counts {
            true_count,
            pred_count,
            ..Counts::default()
        };
    }
    let mut edges: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&(r, p), &both) in &overlap {
        let union = size_ref[&r] + size_pred[&p] - both;
        if both as f64 / union as f64 >= threshold {
            edges.entry(r).or_default().push(p);
        }
    }
    let tp = maximum_matching(&edges);
    Counts {
        true_count,
        pred_count,
        tp,
        fp: pred_count - tp,
        fn_: true_count - tp,
    }
}

/// Returns the size of a maximum bipartite matching (augmenting paths, Kuhn's algorithm).
fn maximum_matching(edges: &HashMap<i32, Vec<i32>>) -> usize {
    fn augment(
        r: i32,
        edges: &HashMap<i32, Vec<i32>>,
        visited: &mut std::collections::HashSet<i32>,
        matched_to: &mut HashMap<i32, i32>,
    ) -> bool {
        for &p in &edges[&r] {
            if !visited.insert(p) {
                continue;
            }
            let free = match matched_to.get(&p) {
                None => true,
                Some(&other) => augment(other, edges, visited, matched_to),
            };
            if free {
                matched_to.insert(p, r);
                return true;
            }
        }
        false
    }
    let mut matched_to = HashMap::new();
    let mut keys: Vec<i32> = edges.keys().copied().collect();
    keys.sort_unstable();
    let mut count = 0;
    for r in keys {
        let mut visited = std::collections::HashSet::new();
        if augment(r, edges, &mut visited, &mut matched_to) {
            count += 1;
        }
    }
    count
}

fn round_if(value: f64, round: bool) -> f64 {
    if round {
        super::paper::numpy_round(value, official::ROUND_DECIMALS)
    } else {
        value
    }
}

/// Scores one image: `reference` contains instance ids (0 background), `prediction` is a
/// semantic map whose interior class gives the predicted cells. `shape` is (rows, cols).
pub fn score_image(
    reference: &[i32],
    prediction: &[i32],
    shape: [usize; 2],
    options: &CellF1Options,
) -> CellScores {
    let predicted = connected_components(prediction, shape, official::INTERIOR_CLASS);
    let dice = foreground_dice(reference, &predicted);
    let counts = if shape[0] * shape[1] < options.tiled_min_pixels {
        let mut gt = reference.to_vec();
        let mut seg = predicted;
        if !options.count_border_cells {
            remove_border_instances(&mut gt, shape, official::BORDER_WIDTH);
            remove_border_instances(&mut seg, shape, official::BORDER_WIDTH);
        }
        match_instances(&gt, &seg, options.iou_threshold)
    } else {
        score_tiles(reference, &predicted, shape, options)
    };
    let Counts {
        true_count,
        pred_count,
        tp,
        fp,
        fn_,
    } = counts;
    let (precision, recall, f1) = if tp == 0 {
        (0.0, 0.0, 0.0)
    } else {
        let precision = tp as f64 / pred_count as f64;
        let recall = tp as f64 / true_count as f64;
        (
            precision,
            recall,
            2.0 * (precision * recall) / (precision + recall),
        )
    };
    CellScores {
        true_count,
        pred_count,
        tp,
        fp,
        fn_,
        precision: round_if(precision, options.round),
        recall: round_if(recall, options.round),
        dice: round_if(dice, options.round),
        f1: round_if(f1, options.round),
    }
}

/// Sums the counts over zero-padded `tile_size` tiles, each with its own border frame.
fn score_tiles(
    reference: &[i32],
    predicted: &[i32],
    shape: [usize; 2],
    options: &CellF1Options,
) -> Counts {
    let [rows, cols] = shape;
    let size = options.tile_size;
    let (tiles_r, tiles_c) = (rows.div_ceil(size), cols.div_ceil(size));
    let mut total = Counts::default();
    for tr in 0..tiles_r {
        for tc in 0..tiles_c {
            let mut gt = vec![0i32; size * size];
            let mut seg = vec![0i32; size * size];
            for r in 0..size {
                let source_r = tr * size + r;
                if source_r >= rows {
                    break;
                }
                for c in 0..size.min(cols.saturating_sub(tc * size)) {
                    gt[r * size + c] = reference[source_r * cols + tc * size + c];
                    seg[r * size + c] = predicted[source_r * cols + tc * size + c];
                }
            }
            if !options.count_border_cells {
                remove_border_instances(&mut gt, [size, size], official::BORDER_WIDTH);
                remove_border_instances(&mut seg, [size, size], official::BORDER_WIDTH);
            }
            total += match_instances(&gt, &seg, options.iou_threshold);
        }
    }
    total
}

/// Dice of the foregrounds (positive values): 1 when both are empty, 0 when only the
/// reference is, as the script's `dice`.
fn foreground_dice(reference: &[i32], prediction: &[i32]) -> f64 {
    let (mut n_ref, mut n_pred, mut both) = (0u64, 0u64, 0u64);
    for (&r, &p) in reference.iter().zip(prediction) {
        n_ref += u64::from(r > 0);
        n_pred += u64::from(p > 0);
        both += u64::from(r > 0 && p > 0);
    }
    match (n_ref, n_pred) {
        (0, 0) => 1.0,
        (0, _) => 0.0,
        _ => 2.0 * both as f64 / (n_ref + n_pred) as f64,
    }
}
