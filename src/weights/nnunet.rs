//! nnU-Net v2 result checkpoints (`checkpoint_final.pth`, `checkpoint_best.pth`).
//!
//! nnU-Net's trainer saves a dict with `network_weights` (the network's state dict),
//! `init_args` (plans, configuration, fold, dataset.json, device, ...), `trainer_name`,
//! `current_epoch`, `inference_allowed_mirroring_axes`, and optionally `optimizer_state`,
//! `grad_scaler_state` and `logging`. The official Swin-UMamba, Swin-UMamba†, U-Mamba and
//! nnU-Net trainers all use this layout.

use std::path::Path;

use serde_json::{json, Map};
use tch::Tensor;

use super::pickle::Value;
use super::pth::{read_pth, PthFile};
use super::WeightsError;

/// The parts of an nnU-Net checkpoint needed to rebuild and run the network.
#[derive(Debug)]
pub struct NnunetCheckpoint {
    /// The network's state dict in file order.
    pub network_weights: Vec<(String, Tensor)>,
    /// `init_args` as JSON; tensors appear as `"<tensor [shape] dtype>"` strings, devices as
    /// their name. `None` when the checkpoint has no `init_args`.
    pub init_args: Option<serde_json::Value>,
    pub trainer_name: Option<String>,
    pub current_epoch: Option<i64>,
    pub inference_allowed_mirroring_axes: Option<Vec<i64>>,
    /// The whole decoded file, for entries not listed above.
    pub file: PthFile,
}

/// Reads an nnU-Net checkpoint; the weights must be under `network_weights`.
pub fn read_nnunet_checkpoint(path: &Path) -> Result<NnunetCheckpoint, WeightsError> {
    let file = read_pth(path)?;
    let weights = file.root.get("network_weights").ok_or_else(|| {
        WeightsError::format(
            path,
            "no `network_weights` entry; this is not an nnU-Net result checkpoint \
             (use `weights inspect` to see its keys)",
        )
    })?;
    let network_weights = file.ordered_tensors(weights)?;
    let init_args = file.root.get("init_args").map(to_json);
    let trainer_name = match file.root.get("trainer_name") {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let current_epoch = match file.root.get("current_epoch") {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let inference_allowed_mirroring_axes = match file.root.get("inference_allowed_mirroring_axes") {
        Some(Value::Tuple(items) | Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    Ok(NnunetCheckpoint {
        network_weights,
        init_args,
        trainer_name,
        current_epoch,
        inference_allowed_mirroring_axes,
        file,
    })
}

/// Converts a pickle value to JSON. Dict keys that are not strings are written with their
/// JSON text; values JSON cannot hold (tensors, opaque objects) become descriptive strings.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::None => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Int(n) => json!(n),
        Value::BigInt(bytes) => json!(format!("<int of {} bytes>", bytes.len())),
        Value::Float(x) => json!(x),
        Value::Str(s) => json!(s),
        Value::Bytes(b) => json!(format!("<bytes of length {}>", b.len())),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect())
        }
        Value::Dict(items) => {
            let mut map = Map::new();
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(v));
            }
            serde_json::Value::Object(map)
        }
        Value::Global { module, name } => json!(format!("<global {module}.{name}>")),
        Value::Object { class, .. } => json!(format!("<object {class}>")),
        Value::Device(d) => json!(d),
        Value::Storage(s) => json!(format!("<storage {} {:?}>", s.key, s.dtype)),
        Value::Tensor(t) => json!(format!("<tensor {:?} {:?}>", t.size, t.storage.dtype)),
    }
}
