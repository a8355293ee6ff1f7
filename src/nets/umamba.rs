//! U-Mamba_Bot and U-Mamba_Enc (2D) from the official U-Mamba repository.
//!
//! TODO: not built yet. The configuration type exists so that the model names parse and
//! the registry is complete; building either model returns an error that says so.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use super::flops::FlopCounter;
use super::plain_unet::PlainUNetConfig;
use super::NetsError;

/// The plan's architecture block, as for `PlainConvUNet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UMambaConfig {
    #[serde(flatten)]
    pub plan: PlainUNetConfig,
}

/// Placeholder for the U-Mamba networks; [`UMamba::new`] always fails.
#[derive(Debug)]
pub struct UMamba {
    _private: (),
}

impl UMamba {
    pub fn new(
        _path: nn::Path,
        _in_channels: i64,
        _num_classes: i64,
        _config: &UMambaConfig,
        encoder_variant: bool,
        _patch: (i64, i64),
    ) -> Result<Self, NetsError> {
        let name = if encoder_variant {
            "umamba-enc"
        } else {
            "umamba-bot"
        };
        Err(NetsError::InvalidConfig {
            reason: format!("{name} is not implemented yet in this build"),
        })
    }

    pub fn divisor(&self) -> i64 {
        1
    }

    pub fn fixed_input_size(&self) -> Option<(i64, i64)> {
        None
    }

    pub fn forward(&self, _x: &Tensor) -> Vec<Tensor> {
        unreachable!("UMamba::new never returns a network")
    }

    pub fn flops(&self, _counter: &mut FlopCounter, _batch: i64, _hw: (i64, i64)) {}
}
