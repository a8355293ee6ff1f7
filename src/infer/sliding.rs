//! Sliding-window prediction of 2D tiles over (channels, slices, height, width) data:
//! `predict_sliding_window_return_logits` of nnU-Net v2, with tiles batched.

use tch::{Device, Kind, TchError, Tensor};

use super::gaussian::default_importance_map;
use super::steps::compute_steps;
use super::tta::predict_with_mirroring;
use super::{official, InferError, LogitsNetwork};

/// Settings of one sliding-window prediction.
#[derive(Debug, Clone)]
pub struct SlidingWindowOptions {
    /// Tile (patch) size, (height, width).
    pub tile: [i64; 2],
    /// Tile step as a fraction of the tile size, in (0, 1].
    pub step_size: f64,
    /// Weight tiles by the Gaussian importance map (otherwise uniformly).
    pub use_gaussian: bool,
    /// Spatial axes to mirror for test-time augmentation; `None` disables it.
    pub mirror_axes: Option<Vec<i64>>,
    /// Tiles per network call. nnU-Net predicts one at a time.
    pub tile_batch: usize,
    /// Accumulate logits in float32. nnU-Net accumulates in float16 (false).
    pub accumulate_in_float: bool,
    pub device: Device,
}

impl Default for SlidingWindowOptions {
    fn default() -> Self {
        SlidingWindowOptions {
            tile: [512, 512],
            step_size: official::TILE_STEP_SIZE,
            use_gaussian: true,
            mirror_axes: Some(vec![0, 1]),
            tile_batch: 1,
            accumulate_in_float: false,
            device: Device::Cpu,
        }
    }
}

/// A tile: its slice index and its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePosition {
    pub slice: i64,
    pub y: i64,
    pub x: i64,
}

/// Returns the zero padding (before, after) per spatial axis that brings `size` up to
/// `tile`: half below, the odd remainder above, as `acvl_utils`' `pad_nd_image`.
pub fn padding_for(size: [i64; 2], tile: [i64; 2]) -> [(i64, i64); 2] {
    let pad = |s: i64, t: i64| {
        let difference = (t - s).max(0);
        (difference / 2, difference / 2 + difference % 2)
    };
    [pad(size[0], tile[0]), pad(size[1], tile[1])]
}

/// Lists the tiles in nnU-Net's order: slice, then row start, then column start.
pub fn tile_positions(
    slices: i64,
    padded: [i64; 2],
    options: &SlidingWindowOptions,
) -> Result<Vec<TilePosition>, InferError> {
    let steps = compute_steps(&padded, &options.tile, options.step_size)?;
    let mut positions = Vec::new();
    for slice in 0..slices {
        for &y in &steps[0] {
            for &x in &steps[1] {
                positions.push(TilePosition { slice, y, x });
            }
        }
    }
    Ok(positions)
}

fn classify(error: TchError, options: &SlidingWindowOptions, tiles: usize) -> InferError {
    let message = error.to_string();
    if message.contains("out of memory") || message.contains("OutOfMemory") {
        InferError::OutOfMemory {
            device: format!("{:?}", options.device),
            tiles,
            message,
        }
    } else {
        InferError::Network {
            tiles,
            source: error,
        }
    }
}

/// Weighted sums of tile logits and of tile weights over the padded data.
struct Accumulator {
    sum: Option<Tensor>,
    count: Tensor,
    weight: Tensor,
    shape: [i64; 3],
    kind: Kind,
    device: Device,
}

impl Accumulator {
    fn new(shape: [i64; 3], options: &SlidingWindowOptions) -> Self {
        let kind = if options.accumulate_in_float {
            Kind::Float
        } else {
            Kind::Half
        };
        let weight = if options.use_gaussian {
            default_importance_map(options.tile, options.device).to_kind(kind)
        } else {
            Tensor::ones([options.tile[0], options.tile[1]], (kind, options.device))
        };
        let count = Tensor::zeros(shape, (kind, options.device));
        Accumulator {
            sum: None,
            count,
            weight,
            shape,
            kind,
            device: options.device,
        }
    }

    /// Adds the logits (B, K, h, w) of the tiles at `positions`, in order.
    fn add(
        &mut self,
        logits: &Tensor,
        positions: &[TilePosition],
        options: &SlidingWindowOptions,
    ) -> Result<(), TchError> {
        let [slices, height, width] = self.shape;
        let classes = logits.size()[1];
        let (kind, device) = (self.kind, self.device);
        let sum = self
            .sum
            .get_or_insert_with(|| Tensor::zeros([classes, slices, height, width], (kind, device)));
        let [tile_height, tile_width] = options.tile;
        for (index, p) in positions.iter().enumerate() {
            let mut tile_logits = logits.get(index as i64);
            if options.use_gaussian {
                tile_logits = tile_logits.f_mul(&self.weight)?;
            }
            // In-place adds into float16 views round the float32 sum once, as nnU-Net's
            // `predicted_logits[sl] += prediction`.
            let mut target = sum
                .select(1, p.slice)
                .narrow(1, p.y, tile_height)
                .narrow(2, p.x, tile_width);
            let _ = target.f_add_(&tile_logits)?;
            let mut weights = self
                .count
                .select(0, p.slice)
                .narrow(0, p.y, tile_height)
                .narrow(1, p.x, tile_width);
            let _ = weights.f_add_(&self.weight)?;
        }
        Ok(())
    }
}

/// Returns the tiles at `positions` of `padded` (C, S, H, W), stacked to (B, C, h, w).
fn gather_tiles(
    padded: &Tensor,
    positions: &[TilePosition],
    tile: [i64; 2],
) -> Result<Tensor, TchError> {
    let tiles: Vec<Tensor> = positions
        .iter()
        .map(|p| {
            padded
                .select(1, p.slice)
                .narrow(1, p.y, tile[0])
                .narrow(2, p.x, tile[1])
        })
        .collect();
    Tensor::f_stack(&tiles, 0)
}

/// Predicts logits (K, S, H, W) for `data` (C, S, H, W), tile by tile.
///
/// Each tile's logits (averaged over mirrored copies) are multiplied by the importance map
/// and added into an accumulator, and the weights into another. The result is their
/// quotient, cropped back to the input size. Network errors are returned, and running out
/// of device memory is reported as [`InferError::OutOfMemory`] with no fall-back.
pub fn predict_sliding_window(
    network: &dyn LogitsNetwork,
    data: &Tensor,
    options: &SlidingWindowOptions,
) -> Result<Tensor, InferError> {
    let shape = data.size();
    let [_, slices, height, width] = shape[..] else {
        return Err(InferError::InvalidShape {
            shape,
            tile: options.tile.to_vec(),
        });
    };
    let padding = padding_for([height, width], options.tile);
    let padded = data
        .f_constant_pad_nd([padding[1].0, padding[1].1, padding[0].0, padding[0].1])
        .and_then(|t| t.f_to_device(options.device))
        .map_err(|e| classify(e, options, 0))?;
    let padded_size = [
        height + padding[0].0 + padding[0].1,
        width + padding[1].0 + padding[1].1,
    ];
    let positions = tile_positions(slices, padded_size, options)?;

    let mut accumulator = Accumulator::new([slices, padded_size[0], padded_size[1]], options);
    for chunk in positions.chunks(options.tile_batch.max(1)) {
        let mut step = || -> Result<(), TchError> {
            let batch = gather_tiles(&padded, chunk, options.tile)?;
            let logits = predict_with_mirroring(network, &batch, options.mirror_axes.as_deref())?;
            accumulator.add(&logits, chunk, options)
        };
        step().map_err(|e| classify(e, options, chunk.len()))?;
    }

    let sum = accumulator.sum.expect("there is at least one tile");
    let logits = sum
        .f_div(&accumulator.count)
        .map_err(|e| classify(e, options, 0))?;
    if logits.isinf().any().int64_value(&[]) != 0 {
        return Err(InferError::InfiniteLogits);
    }
    Ok(logits
        .narrow(2, padding[0].0, height)
        .narrow(3, padding[1].0, width))
}
