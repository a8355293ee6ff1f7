//! SGD with Nesterov momentum and AdamW written in tch tensor ops, so that their state can be
//! saved to a checkpoint and restored exactly (tch's `nn::Optimizer` does not expose it).
//!
//! The update rules are those of PyTorch 2.x `torch.optim.SGD` and `torch.optim.AdamW`
//! (single-tensor, non-foreach, `maximize=False`, `amsgrad=False`): AdamW decays the weights
//! by `lr * weight_decay` before the Adam update, `eps` is added to the bias-corrected
//! `sqrt(v)`, and every parameter keeps its own step count. A parameter whose gradient is
//! undefined or which does not require grad is skipped entirely, as PyTorch skips parameters
//! whose `.grad` is `None` after `zero_grad(set_to_none=True)`. Frozen encoder parameters
//! therefore get neither weight decay nor moment updates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::error::TrainError;

/// Optimiser choice and hyper-parameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// `torch.optim.SGD` with `dampening = 0`.
    Sgd {
        /// Momentum factor.
        momentum: f64,
        /// Use Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.AdamW`.
    AdamW {
        /// Coefficients of the running averages of the gradient and its square.
        betas: (f64, f64),
        /// Term added to the denominator.
        eps: f64,
        /// Decoupled weight decay factor.
        weight_decay: f64,
    },
}

/// Per-parameter optimiser state.
#[derive(Debug, Default)]
struct ParamState {
    /// Number of updates applied to this parameter (AdamW bias correction).
    step: u64,
    /// SGD momentum buffer.
    momentum_buffer: Option<Tensor>,
    /// AdamW first moment.
    exp_avg: Option<Tensor>,
    /// AdamW second moment.
    exp_avg_sq: Option<Tensor>,
}

/// An optimiser over named parameters with serialisable state.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: BTreeMap<String, ParamState>,
}

impl Optimizer {
    /// Creates an optimiser with empty state.
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            state: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Applies one update with learning rate `lr` to every parameter that has a gradient.
    pub fn step(&mut self, params: &[(String, Tensor)], lr: f64) -> Result<(), TrainError> {
        tch::no_grad(|| -> Result<(), TrainError> {
            for (name, param) in params {
                if !param.requires_grad() {
                    continue;
                }
                let grad = param.grad();
                if !grad.defined() {
                    continue;
                }
                let state = self.state.entry(name.clone()).or_default();
                let mut param = param.shallow_clone();
                match &self.config {
                    OptimizerConfig::Sgd {
                        momentum,
                        nesterov,
                        weight_decay,
                    } => sgd_update(
                        &mut param,
                        &grad,
                        state,
                        lr,
                        *momentum,
                        *nesterov,
                        *weight_decay,
                    )?,
                    OptimizerConfig::AdamW {
                        betas,
                        eps,
                        weight_decay,
                    } => adamw_update(&mut param, &grad, state, lr, *betas, *eps, *weight_decay)?,
                }
            }
            Ok(())
        })
    }

    /// Exports the moment tensors as `(name, tensor)` pairs, named
    /// `<kind>.<parameter>` with kind `momentum_buffer`, `exp_avg` or `exp_avg_sq`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, state) in &self.state {
            let slots = [
                ("momentum_buffer", &state.momentum_buffer),
                ("exp_avg", &state.exp_avg),
                ("exp_avg_sq", &state.exp_avg_sq),
            ];
            for (kind, tensor) in slots {
                if let Some(t) = tensor {
                    out.push((format!("{kind}.{name}"), t.shallow_clone()));
                }
            }
        }
        out
    }

    /// Per-parameter step counts, for the checkpoint sidecar.
    pub fn step_counts(&self) -> BTreeMap<String, u64> {
        self.state
            .iter()
            .map(|(k, s)| (k.clone(), s.step))
            .collect()
    }

    /// Restores the state written by [`Optimizer::state_tensors`] and
    /// [`Optimizer::step_counts`]. Tensors are moved to `device`.
    pub fn load_state(
        &mut self,
        steps: &BTreeMap<String, u64>,
        tensors: Vec<(String, Tensor)>,
        device: tch::Device,
    ) -> Result<(), TrainError> {
        let mut state: BTreeMap<String, ParamState> = steps
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    ParamState {
                        step: *s,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (key, tensor) in tensors {
            let (kind, name) = key.split_once('.').ok_or_else(|| {
                TrainError::Shape(format!("optimiser state tensor {key:?} has no kind prefix"))
            })?;
            let entry = state.entry(name.to_string()).or_default();
            let tensor = tensor.to_device(device);
            match kind {
                "momentum_buffer" => entry.momentum_buffer = Some(tensor),
                "exp_avg" => entry.exp_avg = Some(tensor),
                "exp_avg_sq" => entry.exp_avg_sq = Some(tensor),
                other => {
                    return Err(TrainError::Shape(format!(
                        "unknown optimiser state kind {other:?} in {key:?}"
                    )))
                }
            }
        }
        self.state = state;
        Ok(())
    }
}

fn sgd_update(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
) -> Result<(), TrainError> {
    let mut d_p = if weight_decay != 0.0 {
        grad + &*param * weight_decay
    } else {
        grad.copy()
    };
    if momentum != 0.0 {
        let buffer = match state.momentum_buffer.take() {
            // First step: PyTorch initialises the buffer with a detached copy of d_p.
            None => d_p.copy(),
            Some(mut b) => {
                let _ = b.f_mul_scalar_(momentum)?.f_add_(&d_p)?;
                b
            }
        };
        d_p = if nesterov {
            d_p + &buffer * momentum
        } else {
            buffer.copy()
        };
        state.momentum_buffer = Some(buffer);
    }
    state.step += 1;
    let _ = param.f_sub_(&(d_p * lr))?;
    Ok(())
}

fn adamw_update(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    lr: f64,
    (beta1, beta2): (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<(), TrainError> {
    state.step += 1;
    let _ = param.f_mul_scalar_(1.0 - lr * weight_decay)?;

    let mut exp_avg = state.exp_avg.take().unwrap_or_else(|| grad.zeros_like());
    let mut exp_avg_sq = state.exp_avg_sq.take().unwrap_or_else(|| grad.zeros_like());
    let _ = exp_avg.f_lerp_(grad, 1.0 - beta1)?;
    let _ = exp_avg_sq
        .f_mul_scalar_(beta2)?
        .f_addcmul_(grad, &(grad * (1.0 - beta2)))?;

    let step = state.step as i32;
    let bias_correction1 = 1.0 - beta1.powi(step);
    let bias_correction2 = 1.0 - beta2.powi(step);
    let step_size = lr / bias_correction1;
    let denom = exp_avg_sq.sqrt() / bias_correction2.sqrt() + eps;
    // PyTorch: param.addcdiv_(exp_avg, denom, value=-step_size).
    let _ = param.f_sub_(&((&exp_avg / &denom) * step_size))?;

    state.exp_avg = Some(exp_avg);
    state.exp_avg_sq = Some(exp_avg_sq);
    Ok(())
}

/// Scales the gradients of `params` so that their joint L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` (norm type 2, `error_if_nonfinite=False`). Returns the
/// norm before clipping.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> Result<f64, TrainError> {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return Ok(0.0);
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let total_value = f64::try_from(&total)?;
        // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1.
        let coef = (max_norm / (total_value + 1e-6)).min(1.0);
        for mut g in grads {
            let _ = g.f_mul_scalar_(coef)?;
        }
        Ok(total_value)
    })
}
