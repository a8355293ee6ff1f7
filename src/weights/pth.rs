//! PyTorch `.pth` files as `torch.save` writes them.
//!
//! Zip format (torch >= 1.6): `<prefix>/data.pkl` is a pickle whose tensors refer to storages by
//! persistent id `('storage', torch.FloatStorage, key, location, numel)`, and each storage's raw
//! little-endian bytes are the stored (uncompressed) entry `<prefix>/data/<key>`. The file is
//! memory-mapped and each storage is copied once, straight from the map into a libtorch tensor.
//! Tensors are strided views on those storage tensors, so tensors that shared a storage in
//! Python share it here too.
//!
//! Legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles (magic
//! number, protocol version, system info, the object, the storage keys) followed by each
//! storage as an 8-byte element count and its raw bytes. A file that is a single plain pickle
//! is read as such and may not contain tensors.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use tch::Tensor;

use super::pickle::{self, StorageDtype, StorageRef, TensorRef, Value};
use super::{StateDict, WeightsError};

/// Magic number that starts the legacy format (the first pickle is this int).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Layout of a `.pth` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PthFormat {
    /// The zip archive torch.save writes since torch 1.6.
    Zip,
    /// The legacy stream of pickles followed by raw storages.
    Legacy,
    /// A single plain pickle, without tensors.
    Pickle,
}

/// A decoded `.pth` file: the pickled object and the storages its tensors view.
pub struct PthFile {
    pub path: PathBuf,
    pub format: PthFormat,
    /// The object passed to `torch.save`, with tensors as [`Value::Tensor`] references.
    pub root: Value,
    storages: HashMap<String, Tensor>,
}

impl std::fmt::Debug for PthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthFile")
            .field("path", &self.path)
            .field("storages", &self.storages.len())
            .finish()
    }
}

/// Reads a `.pth` file without executing any of its pickle (see [`pickle`]).
pub fn read_pth(path: &Path) -> Result<PthFile, WeightsError> {
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    // SAFETY: the map is read-only and private to this call. Another process that rewrites the
    // file in place can change the bytes underneath. That yields wrong values, not undefined
    // behaviour, because every read is bounds-checked against the length taken at map time.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| WeightsError::io(path, e))?;
    read_pth_bytes(path, &map)
}

/// Reads `.pth` content from memory; `path` only names the source in errors.
pub fn read_pth_bytes(path: &Path, bytes: &[u8]) -> Result<PthFile, WeightsError> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(path, bytes)
    } else {
        read_pickle_stream(path, bytes)
    }
}

impl PthFile {
    /// Creates the tensor a [`TensorRef`] describes, as a view on its shared storage.
    pub fn tensor(&self, tensor: &TensorRef) -> Result<Tensor, WeightsError> {
        let storage = self.storages.get(&tensor.storage.key).ok_or_else(|| {
            WeightsError::format(
                &self.path,
                format!("storage `{}` missing", tensor.storage.key),
            )
        })?;
        check_view(tensor).map_err(|reason| WeightsError::Tensor {
            path: self.path.display().to_string(),
            key: tensor.storage.key.clone(),
            reason,
        })?;
        Ok(storage.f_as_strided(&tensor.size, &tensor.stride, Some(tensor.storage_offset))?)
    }

    /// Returns the flat state dict at `key` of the top-level dict, or, with `None`, the first
    /// of: the top level itself when all its values are tensors, then its `model`,
    /// `state_dict` or `network_weights` entry.
    pub fn state_dict(&self, key: Option<&str>) -> Result<StateDict, WeightsError> {
        let dict = match key {
            Some(k) => self.root.get(k).ok_or_else(|| {
                WeightsError::format(
                    &self.path,
                    format!(
                        "no `{k}` entry in the top-level dict; `weights inspect` lists the entries"
                    ),
                )
            })?,
            None => self.default_state_dict_value()?,
        };
        self.tensors_of(dict)
    }

    fn default_state_dict_value(&self) -> Result<&Value, WeightsError> {
        if let Value::Dict(items) = &self.root {
            if !items.is_empty() && items.iter().all(|(_, v)| matches!(v, Value::Tensor(_))) {
                return Ok(&self.root);
            }
        }
        for k in ["model", "state_dict", "network_weights"] {
            if let Some(v @ Value::Dict(_)) = self.root.get(k) {
                return Ok(v);
            }
        }
        Err(WeightsError::format(
            &self.path,
            format!(
                "top level is a {} without tensors or a `model`, `state_dict` or \
                 `network_weights` dict; name the entry that holds the weights",
                self.root.type_name()
            ),
        ))
    }

    /// Converts a dict of tensors into a state dict; non-tensor values are skipped.
    pub fn tensors_of(&self, dict: &Value) -> Result<StateDict, WeightsError> {
        Ok(self.ordered_tensors(dict)?.into_iter().collect())
    }

    /// Returns the tensors of a dict in file order (non-tensor values are skipped).
    pub fn ordered_tensors(&self, dict: &Value) -> Result<Vec<(String, Tensor)>, WeightsError> {
        let Value::Dict(items) = dict else {
            return Err(WeightsError::format(
                &self.path,
                format!("expected a dict of tensors, found a {}", dict.type_name()),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for (k, v) in items {
            if let (Value::Str(name), Value::Tensor(t)) = (k, v) {
                out.push((name.clone(), self.tensor(t)?));
            }
        }
        Ok(out)
    }

    /// Number of distinct storages in the file.
    pub fn storage_count(&self) -> usize {
        self.storages.len()
    }
}

/// Checks that a view stays inside its storage, so `as_strided` never reads out of bounds.
fn check_view(t: &TensorRef) -> Result<(), String> {
    if t.size.len() != t.stride.len() {
        return Err(format!(
            "size {:?} and stride {:?} differ in rank",
            t.size, t.stride
        ));
    }
    if t.storage_offset < 0 || t.size.iter().any(|&s| s < 0) || t.stride.iter().any(|&s| s < 0) {
        return Err(format!(
            "negative offset, size or stride (offset {}, size {:?}, stride {:?})",
            t.storage_offset, t.size, t.stride
        ));
    }
    if t.size.contains(&0) {
        return Ok(());
    }
    let mut last = t.storage_offset;
    for (&size, &stride) in t.size.iter().zip(&t.stride) {
        let extent = (size - 1)
            .checked_mul(stride)
            .ok_or("view extent overflows i64")?;
        last = last
            .checked_add(extent)
            .ok_or("view extent overflows i64")?;
    }
    let numel = i64::try_from(t.storage.numel).map_err(|_| "storage numel overflows i64")?;
    if last >= numel {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage \
             with {numel} elements",
            t.storage_offset, t.size, t.stride
        ));
    }
    Ok(())
}

/// Parses a zip-format persistent id into a storage reference.
fn parse_storage_pid(pid: &Value) -> Result<StorageRef, String> {
    let Value::Tuple(items) = pid else {
        return Err(format!(
            "persistent id is a {}, not a tuple",
            pid.type_name()
        ));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global { module, name }, Value::Str(key), Value::Str(location), Value::Int(numel), ..]
            if tag == "storage" =>
        {
            let dtype = match module.as_str() {
                "torch" => StorageDtype::from_storage_class(name),
                _ => None,
            }
            .ok_or_else(|| {
                if name == "UntypedStorage" {
                    // torch.save writes uint16/32/64 and float8 tensors this way, with the
                    // dtype in `_rebuild_tensor_v3`.
                    format!(
                        "storage `{key}` is a {module}.{name}, which torch.save uses for \
                         uint16/uint32/uint64 and float8 tensors; these dtypes are not \
                         supported, so convert the tensor to a supported dtype before saving"
                    )
                } else {
                    format!(
                        "storage `{key}` has unsupported type {module}.{name}; supported are \
                         Half, BFloat16, Float, Double, Byte, Char, Short, Int, Long, Bool, \
                         ComplexFloat and ComplexDouble storages"
                    )
                }
            })?;
            let numel = u64::try_from(*numel).map_err(|_| format!("negative numel {numel}"))?;
            Ok(StorageRef {
                key: key.clone(),
                dtype,
                location: location.clone(),
                numel,
            })
        }
        _ => Err("persistent id is not ('storage', type, key, location, numel)".to_string()),
    }
}

/// Runs the pickle, collecting every storage it references.
fn unpickle_with_storages(
    path: &Path,
    data: &[u8],
) -> Result<(Value, usize, BTreeMap<String, StorageRef>), WeightsError> {
    let mut storages: BTreeMap<String, StorageRef> = BTreeMap::new();
    let mut load = |pid: Value| -> Result<Value, String> {
        let storage = parse_storage_pid(&pid)?;
        if let Some(seen) = storages.get(&storage.key) {
            if seen != &storage {
                return Err(format!(
                    "storage `{}` referenced with two layouts",
                    storage.key
                ));
            }
        }
        storages.insert(storage.key.clone(), storage.clone());
        Ok(Value::Storage(storage))
    };
    let source = path.display().to_string();
    let (root, used) = pickle::unpickle(data, &source, Some(&mut load))?;
    Ok((root, used, storages))
}

fn storage_tensor(path: &Path, storage: &StorageRef, bytes: &[u8]) -> Result<Tensor, WeightsError> {
    let invalid = |reason: String| WeightsError::Tensor {
        path: path.display().to_string(),
        key: storage.key.clone(),
        reason,
    };
    let needed = usize::try_from(storage.numel)
        .ok()
        .and_then(|n| n.checked_mul(storage.dtype.element_size()))
        .ok_or_else(|| invalid(format!("storage size {} overflows", storage.numel)))?;
    if bytes.len() < needed {
        return Err(invalid(format!(
            "storage has {} bytes, {} elements of {:?} need {needed}; the file is truncated",
            bytes.len(),
            storage.numel,
            storage.dtype
        )));
    }
    let numel = i64::try_from(storage.numel).map_err(|_| invalid("numel overflows".into()))?;
    Ok(Tensor::f_from_data_size(
        &bytes[..needed],
        &[numel],
        storage.dtype.kind(),
    )?)
}

fn read_zip(path: &Path, bytes: &[u8]) -> Result<PthFile, WeightsError> {
    let zip_err = |e: zip::result::ZipError| {
        WeightsError::format(
            path,
            format!("invalid zip archive ({e}); the file is corrupted or not a .pth file"),
        )
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    let pkl_name = archive
        .file_names()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| {
            WeightsError::format(path, "zip archive has no data.pkl; not a torch.save file")
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();

    if let Ok(mut entry) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        let _ = entry.read_to_string(&mut order);
        if order.trim() != "little" {
            return Err(WeightsError::format(
                path,
                format!("byteorder is {order:?}; only little-endian files are supported"),
            ));
        }
    }

    let pkl = read_entry(&mut archive, &pkl_name, path)?;
    let (root, _, refs) = unpickle_with_storages(path, &pkl)?;

    let mut storages = HashMap::new();
    for (key, storage) in refs {
        let name = format!("{prefix}data/{key}");
        let entry = archive.by_name(&name).map_err(|_| {
            WeightsError::format(
                path,
                format!("storage entry `{name}` missing from the archive"),
            )
        })?;
        let tensor = if entry.compression() == zip::CompressionMethod::Stored {
            let start = usize::try_from(entry.data_start()).unwrap_or(usize::MAX);
            let len = usize::try_from(entry.size()).unwrap_or(usize::MAX);
            let slice = start
                .checked_add(len)
                .and_then(|end| bytes.get(start..end))
                .ok_or_else(|| {
                    WeightsError::format(
                        path,
                        format!("entry `{name}` is truncated; copy the file again"),
                    )
                })?;
            storage_tensor(path, &storage, slice)?
        } else {
            drop(entry);
            let data = read_entry(&mut archive, &name, path)?;
            storage_tensor(path, &storage, &data)?
        };
        storages.insert(key, tensor);
    }
    Ok(PthFile {
        format: PthFormat::Zip,
        path: path.to_path_buf(),
        root,
        storages,
    })
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    path: &Path,
) -> Result<Vec<u8>, WeightsError> {
    let mut entry = archive
        .by_name(name)
        .map_err(|e| WeightsError::format(path, format!("entry `{name}`: {e}")))?;
    // The declared size is untrusted, so it is only a pre-allocation hint, capped at 1 MiB.
    let mut data = Vec::with_capacity(entry.size().min(1 << 20) as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| WeightsError::format(path, format!("entry `{name}`: {e}")))?;
    Ok(data)
}

/// Reads a legacy torch.save file, or a single plain pickle.
fn read_pickle_stream(path: &Path, bytes: &[u8]) -> Result<PthFile, WeightsError> {
    let source = path.display().to_string();
    let (first, mut pos) = pickle::unpickle(bytes, &source, None)?;
    let is_legacy = matches!(&first, Value::BigInt(b) if b.as_slice() == LEGACY_MAGIC);

    if !is_legacy {
        return Ok(PthFile {
            format: PthFormat::Pickle,
            path: path.to_path_buf(),
            root: first,
            storages: HashMap::new(),
        });
    }
    let next = |pos: &mut usize| -> Result<Value, WeightsError> {
        let (v, used) = pickle::unpickle(&bytes[*pos..], &source, None)?;
        *pos += used;
        Ok(v)
    };
    let _protocol = next(&mut pos)?;
    let sys_info = next(&mut pos)?;
    if let Some(Value::Bool(false)) = sys_info.get("little_endian") {
        return Err(WeightsError::format(
            path,
            "legacy file is big-endian; not supported",
        ));
    }

    let (root, used, refs) = unpickle_with_storages(path, &bytes[pos..])?;
    pos += used;

    let keys = match next(&mut pos)? {
        Value::List(keys) => keys,
        other => {
            return Err(WeightsError::format(
                path,
                format!("legacy storage key list is a {}", other.type_name()),
            ))
        }
    };

    let mut storages = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(WeightsError::format(
                path,
                "legacy storage key is not a string",
            ));
        };
        let storage = refs.get(&key).ok_or_else(|| {
            WeightsError::format(path, format!("legacy storage `{key}` is never referenced"))
        })?;
        let count = bytes.get(pos..pos + 8).ok_or_else(|| {
            WeightsError::format(path, "legacy file is truncated; copy the file again")
        })?;
        let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        pos += 8;
        if count != storage.numel {
            return Err(WeightsError::format(
                path,
                format!(
                    "legacy storage `{key}` holds {count} elements, pickle says {}",
                    storage.numel
                ),
            ));
        }
        let tensor = storage_tensor(path, storage, &bytes[pos..])?;
        pos += storage.numel as usize * storage.dtype.element_size();
        storages.insert(key, tensor);
    }
    if let Some(missing) = refs.keys().find(|k| !storages.contains_key(*k)) {
        return Err(WeightsError::format(
            path,
            format!("legacy storage `{missing}` has no data"),
        ));
    }
    Ok(PthFile {
        format: PthFormat::Legacy,
        path: path.to_path_buf(),
        root,
        storages,
    })
}
