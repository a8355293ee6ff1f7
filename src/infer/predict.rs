//! Prediction of one raw image, as nnU-Net v2's `nnUNetPredictor` does it. The image is
//! preprocessed as in training and every fold predicts it with the sliding window. The
//! averaged logits are resampled to the cropped shape, turned into probabilities and a
//! label map, and put back into the uncropped, untransposed image grid.

use std::path::Path;

use tch::{Device, Kind, TchError, Tensor};

use super::export::{probabilities, segmentation};
use super::results::{ResultsFolder, TrainedFold};
use super::sliding::{predict_sliding_window, SlidingWindowOptions};
use super::tta::axis_combinations;
use super::{official, InferError, LogitsNetwork};
use crate::dataset::Image;
use crate::preprocess::{preprocess_case, resample::resize_linear, revert_to_raw_geometry};

/// Settings of `predict` that apply to every case.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Tile step as a fraction of the tile size, in (0, 1].
    pub step_size: f64,
    /// Average over mirrored copies (test-time augmentation).
    pub mirroring: bool,
    /// Tiles per network call.
    pub tile_batch: usize,
    /// Also return the class probabilities.
    pub keep_probabilities: bool,
    pub device: Device,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            step_size: official::TILE_STEP_SIZE,
            mirroring: true,
            tile_batch: 1,
            keep_probabilities: false,
            device: Device::Cpu,
        }
    }
}

/// The prediction of one case on the raw image's grid.
#[derive(Debug, Clone)]
pub struct CasePrediction {
    /// Label map (Z, Y, X) in C order.
    pub segmentation: Vec<u16>,
    /// Class probabilities (K, Z, Y, X), when requested. Outside the crop box the
    /// background has probability 1, as nnU-Net's `revert_cropping_on_probabilities`.
    pub probabilities: Option<Vec<f32>>,
    pub classes: usize,
    /// Raw image shape (Z, Y, X).
    pub shape: [usize; 3],
}

/// Predicts `image` (read from `source`, which only names it in errors) with the
/// networks of `folds`, averaging their logits.
///
/// Every fold uses the mirroring axes of the first one, as nnU-Net's predictor keeps the
/// axes of a single checkpoint.
pub fn predict_image(
    image: &Image,
    source: &Path,
    results: &ResultsFolder,
    folds: &[TrainedFold],
    options: &PredictOptions,
) -> Result<CasePrediction, InferError> {
    let Some(first) = folds.first() else {
        return Err(InferError::input(
            source,
            "no fold to predict with; pass -f",
        ));
    };
    let expected_channels = results.dataset_json.num_channels();
    if image.channels != expected_channels {
        return Err(InferError::input(
            source,
            format!(
                "{} channel(s), but dataset.json lists {expected_channels}; give every case \
                 all its channel files (_0000, _0001, ...)",
                image.channels
            ),
        ));
    }
    let case = preprocess_case(
        image,
        None,
        &results.plans,
        &results.configuration,
        &results.dataset_json,
    )
    .map_err(|message| InferError::input(source, message))?;
    let [z, y, x] = case.shape;
    let channels = case.channels as i64;
    let data = Tensor::from_slice(&case.data).view([channels, z as i64, y as i64, x as i64]);

    let mirror_axes = options.mirroring.then(|| first.mirror_axes.clone());
    // With one tile per call the mirrored copies run one by one, as in nnU-Net. With
    // batches, the copies of all tiles of a batch share one network call.
    let batch_mirrors = options.tile_batch > 1 && mirror_axes.is_some();
    let sliding = SlidingWindowOptions {
        tile: results.patch_size()?,
        step_size: options.step_size,
        use_gaussian: true,
        mirror_axes: if batch_mirrors {
            None
        } else {
            mirror_axes.clone()
        },
        tile_batch: options.tile_batch.max(1),
        accumulate_in_float: false,
        device: options.device,
    };
    let mirror_axes = if batch_mirrors { mirror_axes } else { None };
    let logits = average_fold_logits(folds, &data, &sliding, mirror_axes.as_deref())?;
    let classes = logits.size()[0] as usize;

    // Resample the logits back to the shape before resampling (in the crop box).
    let s = &case.properties.shape_after_cropping_and_before_resampling;
    let cropped_shape = [s[0], s[1], s[2]];
    let logits = if cropped_shape == case.shape {
        logits.to_kind(Kind::Float)
    } else {
        let values = tensor_to_vec(&logits)?;
        let resized = resize_linear(&values, classes, case.shape, cropped_shape);
        let dims: Vec<i64> = std::iter::once(classes as i64)
            .chain(cropped_shape.iter().map(|&d| d as i64))
            .collect();
        Tensor::from_slice(&resized).view(dims.as_slice())
    };
    let class_probabilities = probabilities(&logits);
    let labels = segmentation(&class_probabilities).to_kind(Kind::Float);
    let (labels, shape) = revert_to_raw_geometry(
        &tensor_to_vec(&labels)?,
        1,
        cropped_shape,
        &case.properties,
        &results.plans,
        0.0,
    );
    let probabilities = if options.keep_probabilities {
        Some(revert_probabilities(
            &class_probabilities,
            cropped_shape,
            &case.properties,
            results,
        )?)
    } else {
        None
    };
    Ok(CasePrediction {
        segmentation: labels.iter().map(|&v| v as u16).collect(),
        probabilities,
        classes,
        shape,
    })
}

/// Sums the sliding-window logits of every fold on the CPU and divides by the fold count,
/// as nnU-Net's `predict_logits_from_preprocessed_data`. `batched_mirror_axes` selects
/// [`MirrorBatchedNetwork`] for test-time augmentation.
fn average_fold_logits(
    folds: &[TrainedFold],
    data: &Tensor,
    options: &SlidingWindowOptions,
    batched_mirror_axes: Option<&[i64]>,
) -> Result<Tensor, InferError> {
    let mut sum: Option<Tensor> = None;
    for fold in folds {
        let logits = match batched_mirror_axes {
            Some(axes) => {
                let network = MirrorBatchedNetwork {
                    inner: &fold.network,
                    flips: axis_combinations(&axes.iter().map(|a| a + 2).collect::<Vec<_>>()),
                };
                predict_sliding_window(&network, data, options)?
            }
            None => predict_sliding_window(&fold.network, data, options)?,
        }
        .to_device(Device::Cpu);
        sum = Some(match sum {
            None => logits,
            Some(total) => total + logits,
        });
    }
    let sum = sum.expect("predict_image checks that there is a fold");
    Ok(if folds.len() > 1 {
        sum / folds.len() as f64
    } else {
        sum
    })
}

/// Mirroring test-time augmentation in one network call: the input batch and each of its
/// flipped copies are concatenated, and the outputs are flipped back and averaged in the
/// order of [`super::tta::predict_with_mirroring`]. Batching changes only how the
/// convolutions round, so the logits agree with the one-call-per-copy version to float32
/// rounding.
struct MirrorBatchedNetwork<'a> {
    inner: &'a dyn LogitsNetwork,
    /// Tensor axes of each flip combination (2 = H, 3 = W).
    flips: Vec<Vec<i64>>,
}

impl LogitsNetwork for MirrorBatchedNetwork<'_> {
    fn logits(&self, input: &Tensor) -> Result<Tensor, TchError> {
        let batch = input.size()[0];
        let mut copies = vec![input.shallow_clone()];
        for flip in &self.flips {
            copies.push(input.f_flip(flip.as_slice())?);
        }
        let outputs = self.inner.logits(&Tensor::f_cat(&copies, 0)?)?;
        let mut prediction = outputs.f_narrow(0, 0, batch)?;
        for (index, flip) in self.flips.iter().enumerate() {
            let output = outputs.f_narrow(0, (index as i64 + 1) * batch, batch)?;
            prediction = prediction.f_add(&output.f_flip(flip.as_slice())?)?;
        }
        prediction.f_div_scalar((self.flips.len() + 1) as f64)
    }
}

/// Maps probabilities (K, cropped shape) to the raw grid, one class at a time: the
/// background is 1 outside the crop box and every other class 0.
fn revert_probabilities(
    class_probabilities: &Tensor,
    cropped_shape: [usize; 3],
    properties: &crate::preprocess::CaseProperties,
    results: &ResultsFolder,
) -> Result<Vec<f32>, InferError> {
    let classes = class_probabilities.size()[0];
    let mut all = Vec::new();
    for class in 0..classes {
        let fill = if class == 0 { 1.0 } else { 0.0 };
        let values = tensor_to_vec(&class_probabilities.get(class))?;
        let (reverted, _) =
            revert_to_raw_geometry(&values, 1, cropped_shape, properties, &results.plans, fill);
        all.extend(reverted);
    }
    Ok(all)
}

fn tensor_to_vec(tensor: &Tensor) -> Result<Vec<f32>, InferError> {
    let flat = tensor
        .to_kind(Kind::Float)
        .to_device(Device::Cpu)
        .contiguous()
        .view([-1]);
    Ok(Vec::<f32>::try_from(&flat)?)
}
