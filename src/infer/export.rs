//! From sliding-window logits to a label map: fold averaging, softmax, argmax, and
//! undoing nnU-Net's crop and transpose.
//!
//! Resampling back to the original spacing is done by [`super::predict::predict_image`].

use tch::{Device, Kind, Tensor};

use super::sliding::{predict_sliding_window, SlidingWindowOptions};
use super::{InferError, LogitsNetwork};

/// Predicts with every fold's network and averages the logits, as nnU-Net's
/// `predict_logits_from_preprocessed_data`: the sum is kept on the CPU in the
/// accumulator's precision and divided by the number of folds when there are several.
pub fn predict_folds(
    folds: &[&dyn LogitsNetwork],
    data: &Tensor,
    options: &SlidingWindowOptions,
) -> Result<Tensor, InferError> {
    let mut sum: Option<Tensor> = None;
    for network in folds {
        let logits = predict_sliding_window(*network, data, options)?.to_device(Device::Cpu);
        sum = Some(match sum {
            None => logits,
            Some(total) => total + logits,
        });
    }
    let sum = sum.expect("predict_folds needs at least one network");
    Ok(if folds.len() > 1 {
        sum / folds.len() as f64
    } else {
        sum
    })
}

/// Returns class probabilities: softmax over the class axis, computed in float32 as
/// nnU-Net's `apply_inference_nonlin` does for half-precision logits.
pub fn probabilities(logits: &Tensor) -> Tensor {
    logits.to_kind(Kind::Float).softmax(0, Kind::Float)
}

/// Returns the label map: the argmax over the class axis, as an 8-bit tensor.
pub fn segmentation(logits: &Tensor) -> Tensor {
    logits.argmax(0, false).to_kind(Kind::Uint8)
}

/// Places `crop` into zeros of `full_shape` at `bbox`, as `insert_crop_into_image` does.
/// `bbox` contains the `[start, end)` bounds per axis that cropping kept.
pub fn uncrop(crop: &Tensor, bbox: &[[i64; 2]], full_shape: &[i64]) -> Tensor {
    let full = Tensor::zeros(full_shape, (crop.kind(), crop.device()));
    let mut region = full.shallow_clone();
    for (axis, [start, end]) in bbox.iter().enumerate() {
        region = region.narrow(axis as i64, *start, end - start);
    }
    region.copy_(crop);
    full
}

/// Undoes the plans' `transpose_forward`: returns `tensor` permuted by `transpose_backward`.
pub fn transpose_back(tensor: &Tensor, transpose_backward: &[i64]) -> Tensor {
    tensor.permute(transpose_backward)
}
