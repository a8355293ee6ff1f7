//! safetensors files through the `safetensors` crate, with tch tensors on both sides.
//!
//! Reading memory-maps the file and copies each tensor once into libtorch. Writing goes to a
//! temporary name in the target folder and is renamed into place, so a failed write leaves no
//! partial file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use super::{StateDict, WeightsError};

fn st_error(path: &Path, reason: impl std::fmt::Display) -> WeightsError {
    WeightsError::Safetensors {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

/// Reads every tensor of a safetensors file, with the file's string metadata.
pub fn read_safetensors(path: &Path) -> Result<(StateDict, HashMap<String, String>), WeightsError> {
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    // SAFETY: read-only private map; the safetensors crate bounds-checks every offset.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| WeightsError::io(path, e))?;
    let st = SafeTensors::deserialize(&map).map_err(|e| st_error(path, e))?;
    let (_, metadata) = SafeTensors::read_metadata(&map).map_err(|e| st_error(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            st_error(
                path,
                format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name.to_string(), tensor);
    }
    let metadata = metadata.metadata().clone().unwrap_or_default();
    Ok((out, metadata))
}

/// A tensor copied to contiguous CPU bytes for serialization.
struct TensorBytes {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn tensor_bytes(path: &Path, name: &str, tensor: &Tensor) -> Result<TensorBytes, WeightsError> {
    let kind = tensor.f_kind()?;
    let dtype = dtype_of(kind).ok_or_else(|| {
        st_error(
            path,
            format!("tensor `{name}` has unsupported kind {kind:?}"),
        )
    })?;
    let cpu = tensor.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = cpu.numel();
    let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
    cpu.f_copy_data_u8(&mut bytes, numel)?;
    Ok(TensorBytes {
        dtype,
        shape: cpu.size().iter().map(|&d| d as usize).collect(),
        bytes,
    })
}

/// Writes tensors (any device, any layout) and string metadata to a safetensors file.
///
/// Tensors are stored contiguous and little-endian; the file appears under `path` only once
/// it is complete.
pub fn write_safetensors(
    path: &Path,
    tensors: &StateDict,
    metadata: &HashMap<String, String>,
) -> Result<(), WeightsError> {
    let mut prepared = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        prepared.push((name.clone(), tensor_bytes(path, name, tensor)?));
    }
    let info = (!metadata.is_empty()).then(|| metadata.clone());
    let tmp = temporary_sibling(path);
    let views = prepared.iter().map(|(n, t)| (n.as_str(), t));
    if let Err(e) = safetensors::serialize_to_file(views, info, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(st_error(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        WeightsError::io(path, e)
    })
}

/// Builds a temporary name in the folder of `path`, so the final rename stays on one file
/// system.
pub(crate) fn temporary_sibling(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
