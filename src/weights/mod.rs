//! Checkpoint formats and the ImageNet VMamba loader.
//!
//! PyTorch `.pth` files are read without Python and without running code. safetensors files
//! are read and written, nnU-Net result checkpoints are read, and our own checkpoints are
//! safetensors plus a JSON sidecar. The loader maps the ImageNet VMamba v0 checkpoint into the
//! Swin-UMamba encoders the way the official Swin-UMamba code does.

pub mod checkpoint;
pub mod cli;
pub mod nnunet;
pub mod pickle;
pub mod pth;
pub mod safetensors_io;
pub mod vmamba;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use checkpoint::{load_checkpoint, save_checkpoint};
pub use nnunet::{read_nnunet_checkpoint, NnunetCheckpoint};
pub use pickle::{StorageDtype, StorageRef, TensorRef, Value};
pub use pth::{read_pth, read_pth_bytes, PthFile, PthFormat};
pub use safetensors_io::{read_safetensors, write_safetensors};
pub use vmamba::{load_vmamba_imagenet, load_vmamba_imagenet_file, LoadReport, VmambaTarget};

/// A flat state dict: dotted parameter and buffer names to tensors, sorted by name.
pub type StateDict = BTreeMap<String, tch::Tensor>;

/// Errors of the weights area. Each names the file involved and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the pickle names `{global}`, which is not on the allow-list of globals that \
         torch.save writes; the file may run code when opened with torch.load, so it was \
         rejected. Re-save only the tensors (for example as safetensors) from a trusted copy"
    )]
    ForbiddenGlobal { path: String, global: String },
    #[error("{path}: invalid pickle at byte {offset}: {reason}")]
    Pickle {
        path: String,
        offset: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: tensor `{key}`: {reason}")]
    Tensor {
        path: String,
        key: String,
        reason: String,
    },
    #[error("{path}: safetensors: {reason}")]
    Safetensors { path: String, reason: String },
    #[error("{0}")]
    Load(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl WeightsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        WeightsError::Format {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

/// Reads the tensors of any supported file into a flat state dict.
///
/// `.safetensors` files are read directly. `.pth`/`.pt` files (zip or legacy torch.save
/// format) are read with [`read_pth`]; the state dict is taken from the top-level dict itself,
/// or from its `model`, `state_dict` or `network_weights` entry when the top level contains
/// non-tensor values.
pub fn read_state_dict(path: &Path) -> Result<StateDict, WeightsError> {
    if is_safetensors(path)? {
        return read_safetensors(path).map(|(tensors, _)| tensors);
    }
    let file = read_pth(path)?;
    file.state_dict(None)
}

/// Checks whether the file starts like a safetensors file: an 8-byte little-endian header
/// length that fits in the file, then `{`.
pub fn is_safetensors(path: &Path) -> Result<bool, WeightsError> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| WeightsError::io(path, e))?.len();
    let n = f.read(&mut head).map_err(|e| WeightsError::io(path, e))?;
    if n < head.len() || head[8] != b'{' {
        return Ok(false);
    }
    let header_len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    Ok(header_len <= file_len - 8)
}
