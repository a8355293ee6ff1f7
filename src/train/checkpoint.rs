//! Checkpoints: network weights and optimiser moments in safetensors files, everything else
//! in a JSON sidecar.
//!
//! A checkpoint named `checkpoint_latest` consists of `checkpoint_latest.json` and the two
//! files it names, `checkpoint_latest.e<EPOCH>.safetensors` (network weights under their
//! variable-store names) and `checkpoint_latest.e<EPOCH>.optim.safetensors` (optimiser
//! moments). Every file is written under a temporary name and renamed into place, and the
//! sidecar is renamed last, so a process killed at any moment leaves the previous complete
//! checkpoint or the new one, never a mix. The sidecar stores the CRC-32C of both tensor
//! files, and loading checks it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

use super::data::TrainPlan;
use super::error::TrainError;
use super::logging::history::History;
use super::optim::Optimizer;
use super::precision::GradScaler;
use super::trainer::TrainerConfig;

/// Version of the sidecar layout; bump it when fields change meaning.
pub const FORMAT_VERSION: u32 = 1;

/// Run identity: the command-line values that are not part of the trainer configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Dataset id or name.
    pub dataset: String,
    /// Configuration (`2d`).
    pub configuration: String,
    /// Fold (`0`..`4` or `all`).
    pub fold: String,
    /// Network name.
    pub model: String,
    /// Pretrained weights the run started from, if any.
    pub pretrained: Option<String>,
    /// Device the run trained on (`cpu`, `cuda`).
    pub device: String,
    /// Run seed; each epoch's random streams derive from (seed, epoch).
    pub seed: u64,
}

/// The sidecar of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Trainer configuration, with resolved loss weights.
    pub trainer: TrainerConfig,
    /// Plan values used by the trainer.
    pub plan: TrainPlan,
    /// Run identity and seed.
    pub run: RunInfo,
    /// Number of finished epochs, i.e. the epoch a continued run starts with.
    pub next_epoch: usize,
    /// Best moving-average pseudo-Dice so far.
    pub best_ema: Option<f64>,
    /// Per-epoch log values.
    pub history: History,
    /// Per-parameter optimiser step counts.
    pub optimizer_steps: BTreeMap<String, u64>,
    /// fp16 gradient-scaler state, if one is used.
    pub grad_scaler: Option<GradScaler>,
    /// Non-finite training losses over the whole run.
    pub nonfinite_steps_total: usize,
    /// Network weights file, relative to the sidecar.
    pub weights_file: String,
    /// Optimiser moments file, relative to the sidecar.
    pub optimizer_file: String,
    /// CRC-32C of the weights file.
    pub weights_crc32c: u32,
    /// CRC-32C of the optimiser file.
    pub optimizer_crc32c: u32,
}

/// A loaded checkpoint.
pub struct LoadedCheckpoint {
    /// The sidecar.
    pub state: CheckpointState,
    /// Network weights.
    pub weights: Vec<(String, Tensor)>,
    /// Optimiser moments.
    pub optimizer: Vec<(String, Tensor)>,
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = temp_path(path);
    let mut file = fs::File::create(&tmp).map_err(|e| TrainError::io("creating", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| TrainError::io("writing", &tmp, e))?;
    rename(&tmp, path)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn rename(from: &Path, to: &Path) -> Result<(), TrainError> {
    fs::rename(from, to).map_err(|e| TrainError::io("renaming", from, e))?;
    if let Some(dir) = to.parent() {
        // Persist the directory entry too; failure here only weakens durability.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<u32, TrainError> {
    let tmp = temp_path(path);
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp)?;
    let bytes = fs::read(&tmp).map_err(|e| TrainError::io("reading", &tmp, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io("syncing", &tmp, e))?;
    rename(&tmp, path)?;
    Ok(crc32c::crc32c(&bytes))
}

/// Path of the sidecar of checkpoint `name` in `dir`.
pub fn sidecar_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Saves checkpoint `name` into `dir` and removes the tensor files of the previous version.
/// The file names, CRCs and format version of `state` are filled in here.
pub fn save(
    dir: &Path,
    name: &str,
    weights: &[(String, Tensor)],
    optimizer: &Optimizer,
    mut state: CheckpointState,
) -> Result<PathBuf, TrainError> {
    let stem = format!("{name}.e{:04}", state.next_epoch);
    state.format_version = FORMAT_VERSION;
    state.weights_file = format!("{stem}.safetensors");
    state.optimizer_file = format!("{stem}.optim.safetensors");
    state.optimizer_steps = optimizer.step_counts();
    state.weights_crc32c = write_tensors(&dir.join(&state.weights_file), weights)?;
    state.optimizer_crc32c =
        write_tensors(&dir.join(&state.optimizer_file), &optimizer.state_tensors())?;

    let sidecar = sidecar_path(dir, name);
    let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Checkpoint {
        path: sidecar.clone(),
        reason: e.to_string(),
    })?;
    write_atomically(&sidecar, &json)?;
    remove_stale_files(dir, name, &[&state.weights_file, &state.optimizer_file]);
    Ok(sidecar)
}

/// Removes tensor files of checkpoint `name` that the sidecar no longer names, and temporary
/// files left by killed writers of this checkpoint.
fn remove_stale_files(dir: &Path, name: &str, keep: &[&str]) {
    let prefix = format!("{name}.e");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.contains(".safetensors") && !keep.contains(&&*file) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes checkpoint `name` (sidecar first, then its tensor files).
pub fn remove(dir: &Path, name: &str) -> Result<(), TrainError> {
    let sidecar = sidecar_path(dir, name);
    if sidecar.exists() {
        fs::remove_file(&sidecar).map_err(|e| TrainError::io("removing", &sidecar, e))?;
    }
    remove_stale_files(dir, name, &[]);
    Ok(())
}

/// Reads a sidecar without loading tensors.
pub fn read_state(sidecar: &Path) -> Result<CheckpointState, TrainError> {
    let bytes = fs::read(sidecar).map_err(|e| TrainError::io("reading", sidecar, e))?;
    let state: CheckpointState =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
            path: sidecar.to_path_buf(),
            reason: format!(
                "the sidecar is not valid checkpoint JSON ({e}); use another checkpoint"
            ),
        })?;
    if state.format_version != FORMAT_VERSION {
        return Err(TrainError::Checkpoint {
            path: sidecar.to_path_buf(),
            reason: format!(
                "format version {} is not the supported version {FORMAT_VERSION}",
                state.format_version
            ),
        });
    }
    Ok(state)
}

fn read_tensors(path: &Path, expected_crc: u32) -> Result<Vec<(String, Tensor)>, TrainError> {
    let bytes = fs::read(path).map_err(|e| TrainError::io("reading", path, e))?;
    let crc = crc32c::crc32c(&bytes);
    if crc != expected_crc {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "CRC-32C {crc:#010x} does not match {expected_crc:#010x} in the sidecar; the file \
                 is damaged, use checkpoint_best or checkpoint_final instead"
            ),
        });
    }
    let mut tensors = Tensor::read_safetensors(path)?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// Loads a checkpoint from its sidecar, checking both tensor files. Tensors come sorted by
/// name.
pub fn load(sidecar: &Path) -> Result<LoadedCheckpoint, TrainError> {
    let state = read_state(sidecar)?;
    let dir = sidecar.parent().unwrap_or(Path::new("."));
    let weights = read_tensors(&dir.join(&state.weights_file), state.weights_crc32c)?;
    let optimizer = read_tensors(&dir.join(&state.optimizer_file), state.optimizer_crc32c)?;
    Ok(LoadedCheckpoint {
        state,
        weights,
        optimizer,
    })
}

/// Names that [`load_weights`] copied and skipped.
#[derive(Debug, Default)]
pub struct WeightLoadReport {
    /// Variables that received a value.
    pub loaded: Vec<String>,
    /// Source tensors with no variable of that name.
    pub unexpected: Vec<String>,
    /// Source tensors whose shape differs from the variable's.
    pub shape_mismatch: Vec<String>,
    /// Variables that received no value.
    pub missing: Vec<String>,
}

/// Copies `tensors` into the variables of `vs` with the same name. With `strict`, any
/// unexpected, mismatched or missing name is an error naming `source`.
pub fn load_weights(
    vs: &VarStore,
    tensors: &[(String, Tensor)],
    strict: bool,
    source: &Path,
) -> Result<WeightLoadReport, TrainError> {
    let variables = vs.variables();
    let mut report = WeightLoadReport::default();
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, value) in tensors {
            match variables.get(name) {
                None => report.unexpected.push(name.clone()),
                Some(var) if var.size() != value.size() => report.shape_mismatch.push(name.clone()),
                Some(var) => {
                    let mut var = var.shallow_clone();
                    var.f_copy_(&value.to_device(var.device()).to_kind(var.kind()))?;
                    report.loaded.push(name.clone());
                }
            }
        }
        Ok(())
    })?;
    let mut missing: Vec<String> = variables
        .keys()
        .filter(|k| !report.loaded.contains(k))
        .cloned()
        .collect();
    missing.sort();
    report.missing = missing;
    let problems = report.unexpected.len() + report.shape_mismatch.len() + report.missing.len();
    if strict && problems > 0 {
        return Err(TrainError::Checkpoint {
            path: source.to_path_buf(),
            reason: format!(
                "weights do not match the network: {} unexpected (first {:?}), {} with another \
                 shape (first {:?}), {} missing (first {:?}); check --model and the plan",
                report.unexpected.len(),
                report.unexpected.first(),
                report.shape_mismatch.len(),
                report.shape_mismatch.first(),
                report.missing.len(),
                report.missing.first()
            ),
        });
    }
    Ok(report)
}
