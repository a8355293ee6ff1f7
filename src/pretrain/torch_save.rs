//! Writes PyTorch's `torch.save` zip format, so checkpoints this tool writes open with
//! `torch.load` (and with `weights_only=True`, since only allow-listed globals appear).
//!
//! Layout as PyTorch 2.x writes it: a stored (uncompressed) zip whose entries sit under
//! one folder (`archive/`): `data.pkl` (pickle protocol 2), one `data/<key>` entry per
//! storage with its raw little-endian bytes aligned to 64 bytes, `byteorder` and
//! `version`. A tensor pickles as `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, requires_grad, OrderedDict())`, its storage as the persistent id
//! `('storage', torch.<Type>Storage, '<key>', 'cpu', numel)`.

use std::io::{Seek, Write};
use std::path::Path;

use tch::{Kind, Tensor};
use zip::write::SimpleFileOptions;

/// A value to pickle.
pub enum PickleValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PickleValue>),
    Tuple(Vec<PickleValue>),
    /// A plain `dict`, keys in insertion order.
    Dict(Vec<(PickleValue, PickleValue)>),
    /// A `collections.OrderedDict` (what `state_dict()` returns).
    OrderedDict(Vec<(PickleValue, PickleValue)>),
    Tensor(Tensor),
}

impl PickleValue {
    /// Makes a string value, as used for dictionary keys.
    pub fn str(s: &str) -> Self {
        PickleValue::Str(s.to_string())
    }
}

/// Errors while writing a `torch.save` file.
#[derive(Debug, thiserror::Error)]
pub enum TorchSaveError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write zip archive {path}: {source}")]
    Zip {
        path: String,
        source: zip::result::ZipError,
    },
    #[error("tensor dtype {0:?} has no PyTorch storage type")]
    UnsupportedKind(Kind),
}

/// Storage class name and element size for a dtype.
fn storage_type(kind: Kind) -> Result<(&'static str, usize), TorchSaveError> {
    Ok(match kind {
        Kind::Float => ("FloatStorage", 4),
        Kind::Double => ("DoubleStorage", 8),
        Kind::Half => ("HalfStorage", 2),
        Kind::BFloat16 => ("BFloat16Storage", 2),
        Kind::Uint8 => ("ByteStorage", 1),
        Kind::Int8 => ("CharStorage", 1),
        Kind::Int16 => ("ShortStorage", 2),
        Kind::Int => ("IntStorage", 4),
        Kind::Int64 => ("LongStorage", 8),
        Kind::Bool => ("BoolStorage", 1),
        other => return Err(TorchSaveError::UnsupportedKind(other)),
    })
}

/// Pickle protocol 2 encoder that collects tensor storages as it goes.
struct Pickler {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
}

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.push(b'K');
            self.out.push(v as u8);
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement of 8 bytes.
            self.out.push(0x8a);
            self.out.push(8);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn tuple_of_ints(&mut self, values: &[i64]) {
        self.out.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.out.push(b't');
    }

    fn dict_items(&mut self, items: &[(PickleValue, PickleValue)]) -> Result<(), TorchSaveError> {
        if items.is_empty() {
            return Ok(());
        }
        self.out.push(b'(');
        for (key, value) in items {
            self.value(key)?;
            self.value(value)?;
        }
        self.out.push(b'u');
        Ok(())
    }

    fn value(&mut self, value: &PickleValue) -> Result<(), TorchSaveError> {
        match value {
            PickleValue::None => self.out.push(b'N'),
            PickleValue::Bool(true) => self.out.push(0x88),
            PickleValue::Bool(false) => self.out.push(0x89),
            PickleValue::Int(v) => self.int(*v),
            PickleValue::Float(v) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&v.to_be_bytes());
            }
            PickleValue::Str(s) => self.string(s),
            PickleValue::List(items) => {
                self.out.push(b']');
                if !items.is_empty() {
                    self.out.push(b'(');
                    for item in items {
                        self.value(item)?;
                    }
                    self.out.push(b'e');
                }
            }
            PickleValue::Tuple(items) => {
                self.out.push(b'(');
                for item in items {
                    self.value(item)?;
                }
                self.out.push(b't');
            }
            PickleValue::Dict(items) => {
                self.out.push(b'}');
                self.dict_items(items)?;
            }
            PickleValue::OrderedDict(items) => {
                self.global("collections", "OrderedDict");
                self.out.push(b')');
                self.out.push(b'R');
                self.dict_items(items)?;
            }
            PickleValue::Tensor(tensor) => self.tensor(tensor)?,
        }
        Ok(())
    }

    fn tensor(&mut self, tensor: &Tensor) -> Result<(), TorchSaveError> {
        let (storage_name, element_size) = storage_type(tensor.kind())?;
        let data = tensor.to_device(tch::Device::Cpu).contiguous();
        let numel = data.numel();
        let mut bytes = vec![0u8; numel * element_size];
        if numel > 0 {
            // SAFETY: `data` is a contiguous CPU tensor of `numel` elements, each
            // `element_size` bytes, so its buffer contains exactly `bytes.len()` bytes.
            unsafe {
                let source = data.data_ptr() as *const u8;
                std::ptr::copy_nonoverlapping(source, bytes.as_mut_ptr(), bytes.len());
            }
        }
        let key = self.storages.len().to_string();
        self.storages.push(bytes);

        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(b'(');
        // Persistent id of the storage.
        self.out.push(b'(');
        self.string("storage");
        self.global("torch", storage_name);
        self.string(&key);
        self.string("cpu");
        self.int(numel as i64);
        self.out.push(b't');
        self.out.push(b'Q');
        self.int(0);
        let size = data.size();
        self.tuple_of_ints(&size);
        let mut stride = vec![1i64; size.len()];
        for i in (0..size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * size[i + 1].max(1);
        }
        self.tuple_of_ints(&stride);
        self.out.push(0x89);
        self.global("collections", "OrderedDict");
        self.out.push(b')');
        self.out.push(b'R');
        self.out.push(b't');
        self.out.push(b'R');
        Ok(())
    }
}

/// Writes `value` as `torch.save` would, through a temporary name and a rename.
pub fn save(value: &PickleValue, path: &Path) -> Result<(), TorchSaveError> {
    let mut pickler = Pickler {
        out: vec![0x80, 2],
        storages: Vec::new(),
    };
    pickler.value(value)?;
    pickler.out.push(b'.');

    let display = path.display().to_string();
    let io_error = |source| TorchSaveError::Io {
        path: display.clone(),
        source,
    };
    let zip_error = |source| TorchSaveError::Zip {
        path: display.clone(),
        source,
    };
    let temporary = path.with_extension("pth.tmp");
    let file = std::fs::File::create(&temporary).map_err(io_error)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let aligned = stored.with_alignment(64);
    let root = "archive";
    write_entry(&mut zip, &format!("{root}/data.pkl"), aligned, &pickler.out).map_err(zip_error)?;
    write_entry(&mut zip, &format!("{root}/byteorder"), aligned, b"little").map_err(zip_error)?;
    for (index, bytes) in pickler.storages.iter().enumerate() {
        let options = if bytes.len() as u64 >= u32::MAX as u64 {
            aligned.large_file(true)
        } else {
            aligned
        };
        write_entry(&mut zip, &format!("{root}/data/{index}"), options, bytes)
            .map_err(zip_error)?;
    }
    write_entry(&mut zip, &format!("{root}/version"), aligned, b"3\n").map_err(zip_error)?;
    let mut writer = zip.finish().map_err(zip_error)?;
    writer.flush().map_err(io_error)?;
    drop(writer);
    std::fs::rename(&temporary, path).map_err(io_error)
}

fn write_entry<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    name: &str,
    options: SimpleFileOptions,
    bytes: &[u8],
) -> Result<(), zip::result::ZipError> {
    zip.start_file(name, options)?;
    zip.write_all(bytes)?;
    Ok(())
}
