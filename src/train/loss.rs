//! nnU-Net v2's segmentation loss: cross-entropy plus soft Dice, summed over the
//! deep-supervision outputs.
//!
//! Mirrors `DC_and_CE_loss` with `MemoryEfficientSoftDiceLoss` and `DeepSupervisionWrapper`
//! of nnunetv2 2.8.1 (`nnunetv2/training/loss/`), configured as `nnUNetTrainer._build_loss`
//! configures them for label (not region) datasets.

use tch::{Kind, Reduction, Tensor};

use super::error::TrainError;

/// Smoothing term of the soft Dice, in numerator and denominator (`_build_loss`, nnunetv2).
pub const DICE_SMOOTH: f64 = 1e-5;

/// Lower clamp of the soft Dice denominator (`MemoryEfficientSoftDiceLoss.forward`, nnunetv2).
const DICE_DENOMINATOR_MIN: f64 = 1e-8;

/// PyTorch's default `ignore_index` of `CrossEntropyLoss`, used when no ignore label is set.
const TORCH_DEFAULT_IGNORE_INDEX: i64 = -100;

/// Cross-entropy plus soft Dice on one output, as nnU-Net's `DC_and_CE_loss`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DiceCeLoss {
    /// Weight of the cross-entropy term (nnU-Net: 1).
    pub weight_ce: f64,
    /// Weight of the soft Dice term (nnU-Net: 1).
    pub weight_dice: f64,
    /// Sum the Dice statistics over the batch before dividing (the plan's `batch_dice`).
    pub batch_dice: bool,
    /// Include the background class in the Dice (nnU-Net: false for label datasets).
    pub do_bg: bool,
    /// Dice smoothing term.
    pub smooth: f64,
    /// Label value excluded from both terms, if the dataset has one.
    pub ignore_label: Option<i64>,
}

impl Default for DiceCeLoss {
    fn default() -> Self {
        DiceCeLoss {
            weight_ce: 1.0,
            weight_dice: 1.0,
            batch_dice: true,
            do_bg: false,
            smooth: DICE_SMOOTH,
            ignore_label: None,
        }
    }
}

impl DiceCeLoss {
    /// Computes the loss of `logits` (B, C, H, W) against the label map `target` (B, 1, H, W).
    ///
    /// The target may be float or integer. Logits are upcast to f32 first, as autocast does
    /// for the softmax and cross-entropy in PyTorch.
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor, TrainError> {
        let (b, c, h, w) = logits.size4()?;
        let expected = [b, 1, h, w];
        if target.size() != expected {
            return Err(TrainError::Shape(format!(
                "target shape {:?} does not match logits {:?}; expected {:?}",
                target.size(),
                logits.size(),
                expected
            )));
        }
        let logits = logits.to_kind(Kind::Float);
        let target = target.to_kind(Kind::Int64);

        let (mask, target_dice) = match self.ignore_label {
            Some(ignore) => {
                let mask = target.ne(ignore);
                let zeros = target.zeros_like();
                let target_dice = target.where_self(&mask, &zeros);
                (Some(mask.to_kind(Kind::Float)), target_dice)
            }
            None => (None, target.shallow_clone()),
        };

        let dice = if self.weight_dice != 0.0 {
            self.soft_dice(&logits, &target_dice, mask.as_ref(), c)?
        } else {
            Tensor::zeros([], (Kind::Float, logits.device()))
        };

        let any_labelled = match &mask {
            Some(m) => f64::try_from(m.sum(Kind::Float))? > 0.0,
            None => true,
        };
        let ce = if self.weight_ce != 0.0 && any_labelled {
            let ignore_index = self.ignore_label.unwrap_or(TORCH_DEFAULT_IGNORE_INDEX);
            logits.f_cross_entropy_loss::<Tensor>(
                &target.squeeze_dim(1),
                None,
                Reduction::Mean,
                ignore_index,
                0.0,
            )?
        } else {
            Tensor::zeros([], (Kind::Float, logits.device()))
        };

        Ok(ce * self.weight_ce + dice * self.weight_dice)
    }

    /// Returns the negative mean soft Dice over the foreground classes (background too when
    /// `do_bg`), the value `MemoryEfficientSoftDiceLoss` returns.
    fn soft_dice(
        &self,
        logits: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        classes: i64,
    ) -> Result<Tensor, TrainError> {
        let probs = logits.softmax(1, Kind::Float);
        let onehot = tch::no_grad(|| probs.zeros_like().scatter_value(1, target, 1.0));
        let first = if self.do_bg { 0 } else { 1 };
        let probs = probs.narrow(1, first, classes - first);
        let onehot = onehot.narrow(1, first, classes - first);
        let axes: &[i64] = &[2, 3];

        let (intersect, sum_pred, sum_gt) = match mask {
            Some(m) => (
                (&probs * &onehot * m).sum_dim_intlist(axes, false, Kind::Float),
                (&probs * m).sum_dim_intlist(axes, false, Kind::Float),
                (&onehot * m).sum_dim_intlist(axes, false, Kind::Float),
            ),
            None => (
                (&probs * &onehot).sum_dim_intlist(axes, false, Kind::Float),
                probs.sum_dim_intlist(axes, false, Kind::Float),
                onehot.sum_dim_intlist(axes, false, Kind::Float),
            ),
        };
        let (intersect, sum_pred, sum_gt) = if self.batch_dice {
            (
                intersect.sum_dim_intlist(0, false, Kind::Float),
                sum_pred.sum_dim_intlist(0, false, Kind::Float),
                sum_gt.sum_dim_intlist(0, false, Kind::Float),
            )
        } else {
            (intersect, sum_pred, sum_gt)
        };
        let numerator = intersect * 2.0 + self.smooth;
        let denominator = (sum_gt + sum_pred + self.smooth).clamp_min(DICE_DENOMINATOR_MIN);
        Ok(-(numerator / denominator).mean(Kind::Float))
    }
}

/// nnU-Net's deep-supervision weights for `outputs` heads: 1/2^i, the lowest resolution set
/// to 0, normalised to sum 1 (`nnUNetTrainer._build_loss`). One head gets weight 1.
pub fn nnunet_deep_supervision_weights(outputs: usize) -> Vec<f64> {
    if outputs <= 1 {
        return vec![1.0; outputs];
    }
    let mut weights: Vec<f64> = (0..outputs).map(|i| 1.0 / 2f64.powi(i as i32)).collect();
    weights[outputs - 1] = 0.0;
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The loss over all deep-supervision heads, highest resolution first, as nnU-Net's
/// `DeepSupervisionWrapper`: heads with weight 0 are not evaluated.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DeepSupervisionLoss {
    /// The per-head loss.
    pub inner: DiceCeLoss,
    /// One weight per head; at least one must be non-zero.
    pub weights: Vec<f64>,
}

impl DeepSupervisionLoss {
    /// Computes the weighted sum of the per-head losses.
    pub fn forward(&self, outputs: &[Tensor], targets: &[Tensor]) -> Result<Tensor, TrainError> {
        if outputs.len() != targets.len() || outputs.len() != self.weights.len() {
            return Err(TrainError::Shape(format!(
                "{} network outputs, {} targets and {} loss weights do not match; the batch \
                 source must produce one target per deep-supervision head",
                outputs.len(),
                targets.len(),
                self.weights.len()
            )));
        }
        let mut total: Option<Tensor> = None;
        for ((output, target), weight) in outputs.iter().zip(targets).zip(&self.weights) {
            if *weight == 0.0 {
                continue;
            }
            let term = self.inner.forward(output, target)? * *weight;
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total.ok_or_else(|| {
            TrainError::Shape("every deep-supervision weight is zero; set at least one".into())
        })
    }
}
