//! Our own checkpoint format: `<stem>.safetensors` for the tensors and `<stem>.json` next to
//! it for everything else (resolved config, epoch, trainer name, ...).
//!
//! The sidecar is an object with `format` set to [`CHECKPOINT_FORMAT`] and the caller's data
//! under `data`. Both files are written to temporary names first and renamed, tensors first,
//! so a reader that finds the sidecar also finds complete tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::safetensors_io::{read_safetensors, temporary_sibling, write_safetensors};
use super::{StateDict, WeightsError};

/// Format tag written into every sidecar.
pub const CHECKPOINT_FORMAT: &str = "swin-umamba-checkpoint-v1";

/// Returns the tensor file and sidecar paths for a checkpoint stem such as `fold_0/checkpoint_final`.
pub fn checkpoint_paths(stem: &Path) -> (PathBuf, PathBuf) {
    let name = stem
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        stem.with_file_name(format!("{name}.safetensors")),
        stem.with_file_name(format!("{name}.json")),
    )
}

/// Writes `tensors` and the JSON `data` as a checkpoint at `stem`.
pub fn save_checkpoint(
    stem: &Path,
    tensors: &StateDict,
    data: &serde_json::Value,
) -> Result<(), WeightsError> {
    let (tensor_path, sidecar_path) = checkpoint_paths(stem);
    let metadata = HashMap::from([("format".to_string(), CHECKPOINT_FORMAT.to_string())]);
    write_safetensors(&tensor_path, tensors, &metadata)?;
    let sidecar = json!({ "format": CHECKPOINT_FORMAT, "data": data });
    let text = serde_json::to_string_pretty(&sidecar).expect("JSON values always serialize");
    let tmp = temporary_sibling(&sidecar_path);
    std::fs::write(&tmp, text).map_err(|e| WeightsError::io(&tmp, e))?;
    std::fs::rename(&tmp, &sidecar_path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        WeightsError::io(&sidecar_path, e)
    })
}

/// Reads a checkpoint written by [`save_checkpoint`]: its tensors and the sidecar's `data`.
pub fn load_checkpoint(stem: &Path) -> Result<(StateDict, serde_json::Value), WeightsError> {
    let (tensor_path, sidecar_path) = checkpoint_paths(stem);
    let text =
        std::fs::read_to_string(&sidecar_path).map_err(|e| WeightsError::io(&sidecar_path, e))?;
    let sidecar: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        WeightsError::format(&sidecar_path, format!("sidecar is not valid JSON: {e}"))
    })?;
    if sidecar.get("format").and_then(|f| f.as_str()) != Some(CHECKPOINT_FORMAT) {
        return Err(WeightsError::format(
            &sidecar_path,
            format!(
                "sidecar `format` is {}, expected \"{CHECKPOINT_FORMAT}\"; this file was not \
                 written by this program's checkpoint writer",
                sidecar.get("format").unwrap_or(&serde_json::Value::Null)
            ),
        ));
    }
    let (tensors, _) = read_safetensors(&tensor_path)?;
    let data = sidecar
        .get("data")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    Ok((tensors, data))
}
