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

/// Predicts logits (K, S, H, W) for `data` (C, S, H, W), tile by tile.
///
/// Each tile's (mirror-averaged) logits are multiplied by the importance map and added
/// into an accumulator, the weights into another, and the result is their quotient,
/// cropped back to the input size. Errors from the network are returned, and running
/// out of device memory is reported as [`InferError::OutOfMemory`] with no fall-back.
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
    let accumulate = if options.accumulate_in_float {
        Kind::Float
    } else {
        Kind::Half
    };
    let weight = if options.use_gaussian {
        default_importance_map(options.tile, options.device).to_kind(accumulate)
    } else {
        Tensor::ones(
            [options.tile[0], options.tile[1]],
            (accumulate, options.device),
        )
    };
    let run = |batch_positions: &[TilePosition],
               state: &mut Option<(Tensor, Tensor)>|
     -> Result<(), TchError> {
        let tiles: Vec<Tensor> = batch_positions
            .iter()
            .map(|p| {
                padded
                    .select(1, p.slice)
                    .narrow(1, p.y, options.tile[0])
                    .narrow(2, p.x, options.tile[1])
            })
            .collect();
        let batch = Tensor::f_stack(&tiles, 0)?;
        let logits = predict_with_mirroring(network, &batch, options.mirror_axes.as_deref())?;
        let (sum, count) = state.get_or_insert_with(|| {
            let classes = logits.size()[1];
            let sum = Tensor::zeros(
                [classes, slices, padded_size[0], padded_size[1]],
                (accumulate, options.device),
            );
            let count = Tensor::zeros(
                [slices, padded_size[0], padded_size[1]],
                (accumulate, options.device),
            );
            (sum, count)
        });
        for (index, p) in batch_positions.iter().enumerate() {
            let mut tile_logits = logits.get(index as i64);
            if options.use_gaussian {
                tile_logits = tile_logits.f_mul(&weight)?;
            }
            let mut target = sum
                .select(1, p.slice)
                .narrow(1, p.y, options.tile[0])
                .narrow(2, p.x, options.tile[1]);
            let _ = target.f_add_(&tile_logits)?;
            let mut weights = count
                .select(0, p.slice)
                .narrow(0, p.y, options.tile[0])
                .narrow(1, p.x, options.tile[1]);
            let _ = weights.f_add_(&weight)?;
        }
        Ok(())
    };
    let mut state = None;
    for chunk in positions.chunks(options.tile_batch.max(1)) {
        run(chunk, &mut state).map_err(|e| classify(e, options, chunk.len()))?;
    }
    let (sum, count) = state.expect("there is at least one tile");
    let logits = sum.f_div(&count).map_err(|e| classify(e, options, 0))?;
    if logits.isinf().any().int64_value(&[]) != 0 {
        return Err(InferError::InfiniteLogits);
    }
    Ok(logits
        .narrow(2, padding[0].0, height)
        .narrow(3, padding[1].0, width))
}
