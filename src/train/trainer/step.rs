//! One training step and one validation step.

use tch::{Kind, Tensor};

use crate::train::data::Batch;
use crate::train::error::TrainError;
use crate::train::loss::DeepSupervisionLoss;
use crate::train::network::SegmentationNetwork;
use crate::train::optim::{clip_grad_norm, Optimizer};
use crate::train::precision::{with_autocast, GradScaler, Precision};

/// Result of a training step.
#[derive(Debug, Clone, Copy)]
pub enum StepOutcome {
    /// The parameters were updated (or, with fp16, the scaler skipped the update because of
    /// non-finite gradients); the loss value.
    Trained(f64),
    /// The loss was non-finite, so no backward pass or update ran.
    SkippedNonFinite,
}

/// Everything a training step needs besides the batch.
pub struct StepContext<'a> {
    /// The network.
    pub net: &'a dyn SegmentationNetwork,
    /// Its parameters, sorted by name.
    pub params: &'a [(String, Tensor)],
    /// The loss.
    pub loss: &'a DeepSupervisionLoss,
    /// Forward precision actually used.
    pub precision: Precision,
    /// Maximum gradient norm.
    pub grad_clip_norm: f64,
}

/// Runs forward, loss, backward, gradient clipping and the optimiser update, as
/// `nnUNetTrainer.train_step` does.
pub fn train_step(
    ctx: &StepContext,
    optimizer: &mut Optimizer,
    scaler: Option<&mut GradScaler>,
    batch: &Batch,
    lr: f64,
) -> Result<StepOutcome, TrainError> {
    for (_, p) in ctx.params {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    let loss = with_autocast(ctx.precision, || -> Result<Tensor, TrainError> {
        let outputs = ctx.net.forward_heads(&batch.data, true);
        ctx.loss.forward(&outputs, &batch.targets)
    })?;
    let value = f64::try_from(&loss)?;
    if !value.is_finite() {
        return Ok(StepOutcome::SkippedNonFinite);
    }
    match scaler {
        Some(scaler) => {
            scaler.scale_loss(&loss).f_backward()?;
            let found_inf = scaler.unscale(ctx.params)?;
            clip_grad_norm(ctx.params, ctx.grad_clip_norm)?;
            if !found_inf {
                optimizer.step(ctx.params, lr)?;
            }
            scaler.update(found_inf);
        }
        None => {
            loss.f_backward()?;
            clip_grad_norm(ctx.params, ctx.grad_clip_norm)?;
            optimizer.step(ctx.params, lr)?;
        }
    }
    Ok(StepOutcome::Trained(value))
}

/// Loss and hard true-positive, false-positive and false-negative counts per foreground class
/// of one validation batch.
#[derive(Debug, Clone)]
pub struct ValidationOutcome {
    /// Loss value.
    pub loss: f64,
    /// Per foreground class (class 1 first).
    pub tp: Vec<f64>,
    /// Per foreground class.
    pub fp: Vec<f64>,
    /// Per foreground class.
    pub fn_: Vec<f64>,
}

/// Runs the network without gradients and counts the pseudo-Dice statistics of the highest
/// resolution head, as `nnUNetTrainer.validation_step` does: argmax prediction, pixels with
/// the ignore label excluded, background dropped.
pub fn validation_step(
    ctx: &StepContext,
    batch: &Batch,
    ignore_label: Option<i64>,
) -> Result<ValidationOutcome, TrainError> {
    tch::no_grad(|| {
        let outputs = with_autocast(ctx.precision, || ctx.net.forward_heads(&batch.data, false));
        let loss = f64::try_from(&ctx.loss.forward(&outputs, &batch.targets)?)?;
        let output = outputs[0].to_kind(Kind::Float);
        let classes = output.size()[1];
        let target = batch.targets[0].to_kind(Kind::Int64);
        let (mask, target) = match ignore_label {
            Some(ignore) => {
                let mask = target.ne(ignore).to_kind(Kind::Float);
                let zeros = target.zeros_like();
                (Some(mask), target.where_self(&target.ne(ignore), &zeros))
            }
            None => (None, target),
        };
        let predicted = output.argmax(1, true);
        let pred_onehot = output.zeros_like().scatter_value(1, &predicted, 1.0);
        let gt_onehot = output.zeros_like().scatter_value(1, &target, 1.0);
        let (pred_onehot, gt_onehot) = match &mask {
            Some(m) => (pred_onehot * m, gt_onehot * m),
            None => (pred_onehot, gt_onehot),
        };
        let axes: &[i64] = &[0, 2, 3];
        let tp = (&pred_onehot * &gt_onehot).sum_dim_intlist(axes, false, Kind::Double);
        let fp = &pred_onehot.sum_dim_intlist(axes, false, Kind::Double) - &tp;
        let fn_ = &gt_onehot.sum_dim_intlist(axes, false, Kind::Double) - &tp;
        let foreground = |t: &Tensor| -> Result<Vec<f64>, TrainError> {
            Ok(Vec::<f64>::try_from(t.narrow(0, 1, classes - 1))?)
        };
        Ok(ValidationOutcome {
            loss,
            tp: foreground(&tp)?,
            fp: foreground(&fp)?,
            fn_: foreground(&fn_)?,
        })
    })
}
