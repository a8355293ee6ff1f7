//! Mixed precision on CUDA: autocast to bf16 (default) or fp16, and a gradient scaler for fp16.
//!
//! NOTE: the CUDA path is untested here because the development machine has no GPU; only the
//! fp32 path and the scaler arithmetic run in the tests. The networks area must keep the
//! selective scan in fp32 under autocast.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::error::TrainError;

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in fp32 (the only choice on CPU).
    Fp32,
    /// CUDA autocast to bfloat16, no gradient scaling needed.
    Bf16,
    /// CUDA autocast to float16 with a gradient scaler, as the official nnU-Net trainers do.
    Fp16,
}

impl Precision {
    /// Returns the precision used on `device`, which is fp32 except on CUDA.
    pub fn effective(self, device: Device) -> Precision {
        if device.is_cuda() {
            self
        } else {
            Precision::Fp32
        }
    }
}

// c10::DeviceType::CUDA and c10::ScalarType::{Half, BFloat16} (c10/core, PyTorch 2.x).
const C10_DEVICE_CUDA: i8 = 1;
const C10_SCALAR_HALF: i8 = 5;
const C10_SCALAR_BFLOAT16: i8 = 15;

extern "C" {
    // at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType), exported by
    // libtorch_cpu; tch 0.26 exposes autocast on/off but not its dtype.
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device_type: i8, scalar_type: i8);
}

/// Runs `f` under CUDA autocast with the dtype of `precision`, or plainly for fp32.
pub fn with_autocast<T>(precision: Precision, f: impl FnOnce() -> T) -> T {
    let dtype = match precision {
        Precision::Fp32 => return f(),
        Precision::Bf16 => C10_SCALAR_BFLOAT16,
        Precision::Fp16 => C10_SCALAR_HALF,
    };
    // SAFETY: the call only stores the dtype in a thread-local autocast setting; both
    // arguments are valid enumerators of the signed 8-bit enums the function takes.
    unsafe { at_set_autocast_dtype(C10_DEVICE_CUDA, dtype) };
    tch::autocast(true, f)
}

/// PyTorch's `torch.amp.GradScaler` defaults.
const INIT_SCALE: f64 = 65536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: u64 = 2000;

/// Dynamic loss scaling for fp16, with PyTorch's `GradScaler` rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GradScaler {
    /// Current scale factor.
    pub scale: f64,
    /// Consecutive steps without non-finite gradients since the last change of scale.
    pub growth_tracker: u64,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler {
            scale: INIT_SCALE,
            growth_tracker: 0,
        }
    }
}

impl GradScaler {
    /// Multiplies the loss by the scale before backward.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides the gradients by the scale and returns whether any of them is non-finite.
    pub fn unscale(&self, params: &[(String, Tensor)]) -> Result<bool, TrainError> {
        tch::no_grad(|| {
            let mut found_inf = false;
            for (_, p) in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = g.f_mul_scalar_(1.0 / self.scale)?;
                if !found_inf {
                    found_inf = !bool::try_from(g.isfinite().all())?;
                }
            }
            Ok(found_inf)
        })
    }

    /// Adjusts the scale after a step: back off on non-finite gradients, grow after
    /// `GROWTH_INTERVAL` clean steps.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == GROWTH_INTERVAL {
                self.scale *= GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}
