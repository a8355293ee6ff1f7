//! A minimal NumPy `.npy` reader (memory-mapped) and writer for the preprocessed case files.
//!
//! Supports format versions 1.0, 2.0 and 3.0, little-endian or byte-sized dtypes, C order.
//! That is what `numpy.save` writes on the platforms we run on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::{io_error, LoaderError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element types the pipeline reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
}

impl DType {
    /// Returns the `descr` string numpy writes for this type.
    pub fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::I8 => "|i1",
            DType::I16 => "<i2",
        }
    }

    fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I8 => 1,
            DType::I16 => 2,
        }
    }

    fn parse(descr: &str) -> Option<DType> {
        match descr {
            "<f4" => Some(DType::F32),
            "|i1" | "<i1" | "i1" => Some(DType::I8),
            "<i2" => Some(DType::I16),
            _ => None,
        }
    }
}

/// A memory-mapped `.npy` array: the header fields and a view of the data bytes.
pub struct NpyArray {
    path: PathBuf,
    map: Mmap,
    offset: usize,
    descr: String,
    dtype: Option<DType>,
    shape: Vec<usize>,
}

impl NpyArray {
    /// Maps `path` and parses its header. Fails on unsupported versions, Fortran order or a
    /// data section shorter than the shape requires.
    pub fn open(path: &Path) -> Result<NpyArray> {
        let file = File::open(path).map_err(io_error(path))?;
        // SAFETY: the preprocessed files are written once (to a temporary name, then renamed)
        // and never modified in place, so the mapping does not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
        let bad = |reason: String| LoaderError::NpyHeader {
            path: path.to_path_buf(),
            reason,
        };

        if map.len() < 10 || &map[..6] != MAGIC {
            return Err(bad(
                "the file does not start with the .npy magic string".into()
            ));
        }
        let major = map[6];
        let (header_len, header_start) = match major {
            1 => (u16::from_le_bytes([map[8], map[9]]) as usize, 10),
            2 | 3 => {
                if map.len() < 12 {
                    return Err(bad("the header length field is truncated".into()));
                }
                (
                    u32::from_le_bytes([map[8], map[9], map[10], map[11]]) as usize,
                    12,
                )
            }
            v => return Err(bad(format!("format version {v} is not supported"))),
        };
        let offset = header_start + header_len;
        if map.len() < offset {
            return Err(bad(format!(
                "the header claims {header_len} bytes but the file ends"
            )));
        }
        let header = std::str::from_utf8(&map[header_start..offset])
            .map_err(|_| bad("the header is not valid UTF-8".into()))?;

        let descr = dict_value(header, "descr")
            .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            .ok_or_else(|| bad(format!("the header has no 'descr' key: {header:?}")))?;
        let fortran = dict_value(header, "fortran_order")
            .ok_or_else(|| bad(format!("the header has no 'fortran_order' key: {header:?}")))?;
        if fortran.trim() != "False" {
            return Err(bad("Fortran-ordered arrays are not supported".into()));
        }
        let shape = parse_shape(header).map_err(bad)?;

        let dtype = DType::parse(&descr);
        if let Some(dt) = dtype {
            let needed = shape.iter().product::<usize>() * dt.size();
            if map.len() - offset < needed {
                return Err(bad(format!(
                    "shape {shape:?} needs {needed} data bytes but the file holds {}",
                    map.len() - offset
                )));
            }
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            map,
            offset,
            descr,
            dtype,
            shape,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Views the data as `f32`. Fails unless the file stores little-endian float32.
    pub fn as_f32(&self) -> Result<&[f32]> {
        self.check_dtype(DType::F32, "float32 ('<f4')")?;
        let n: usize = self.shape.iter().product();
        let bytes = &self.map[self.offset..self.offset + 4 * n];
        // SAFETY: f32 has no invalid bit patterns, and align_to only yields aligned elements.
        let (head, body, _) = unsafe { bytes.align_to::<f32>() };
        if !head.is_empty() {
            return Err(LoaderError::NpyHeader {
                path: self.path.clone(),
                reason: format!(
                    "the data starts at byte {}, not a multiple of 4",
                    self.offset
                ),
            });
        }
        Ok(body)
    }

    /// Views the data as `i8`. Fails unless the file stores int8.
    pub fn as_i8(&self) -> Result<&[i8]> {
        self.check_dtype(DType::I8, "int8 ('|i1')")?;
        let n: usize = self.shape.iter().product();
        let bytes = &self.map[self.offset..self.offset + n];
        // SAFETY: u8 and i8 have the same size, alignment and valid bit patterns.
        Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const i8, n) })
    }

    fn check_dtype(&self, expected: DType, name: &'static str) -> Result<()> {
        if self.dtype != Some(expected) {
            return Err(LoaderError::NpyDtype {
                path: self.path.clone(),
                found: self.descr.clone(),
                expected: name,
            });
        }
        Ok(())
    }
}

/// Finds the raw text of `key`'s value in the header dict, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let start = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(header: &str) -> std::result::Result<Vec<usize>, String> {
    let raw = dict_value(header, "shape").ok_or_else(|| format!("no 'shape' key: {header:?}"))?;
    let inner = raw
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("shape {raw:?} is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("shape entry {s:?} is not an integer"))
        })
        .collect()
}

/// Writes `data` (raw little-endian bytes of `dtype`) as a version 1.0 `.npy` file.
///
/// The file is written to `<path>.tmp` and renamed, so readers never see a partial file.
pub fn write_npy(path: &Path, dtype: DType, shape: &[usize], data: &[u8]) -> Result<()> {
    let count: usize = shape.iter().product();
    if data.len() != count * dtype.size() {
        return Err(LoaderError::Config(format!(
            "write_npy({}): shape {shape:?} needs {} bytes, got {}",
            path.display(),
            count * dtype.size(),
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_text
    );
    // numpy pads the header with spaces so that the data starts on a 64-byte boundary.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');

    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    let mut write = || -> std::io::Result<()> {
        file.write_all(MAGIC)?;
        file.write_all(&[1, 0])?;
        file.write_all(&(header.len() as u16).to_le_bytes())?;
        file.write_all(header.as_bytes())?;
        file.write_all(data)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(LoaderError::Io {
            path: tmp,
            source: e,
        });
    }
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Writes a float32 array; see [`write_npy`].
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, DType::F32, shape, &bytes)
}

/// Writes an int8 array; see [`write_npy`].
pub fn write_i8(path: &Path, shape: &[usize], data: &[i8]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
    write_npy(path, DType::I8, shape, &bytes)
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_f32_and_i8() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.npy");
        let seg = dir.path().join("a_seg.npy");
        let values: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        write_f32(&img, &[2, 1, 3, 4], &values).unwrap();
        write_i8(&seg, &[1, 1, 3, 4], &[-1, 0, 1, 2, 0, 0, 0, 0, 1, 1, 1, -1]).unwrap();

        let a = NpyArray::open(&img).unwrap();
        assert_eq!(a.shape(), &[2, 1, 3, 4]);
        assert_eq!(a.as_f32().unwrap(), values.as_slice());
        assert!(a.as_i8().is_err());
        let s = NpyArray::open(&seg).unwrap();
        assert_eq!(s.as_i8().unwrap()[..4], [-1, 0, 1, 2]);
    }

    #[test]
    fn header_errors_name_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"not an npy file at all").unwrap();
        let err = NpyArray::open(&path).err().unwrap().to_string();
        assert!(err.contains("bad.npy"), "{err}");
        assert!(err.contains("magic"), "{err}");

        let short = dir.path().join("short.npy");
        write_f32(&short, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut bytes = std::fs::read(&short).unwrap();
        bytes.truncate(bytes.len() - 4);
        std::fs::write(&short, bytes).unwrap();
        let err = NpyArray::open(&short).err().unwrap().to_string();
        assert!(err.contains("needs 16 data bytes"), "{err}");
    }

    #[test]
    fn parses_numpy_style_header() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 1, 20, 30), }";
        assert_eq!(parse_shape(header).unwrap(), vec![3, 1, 20, 30]);
        assert_eq!(dict_value(header, "descr"), Some("'<f4'"));
        assert_eq!(parse_shape("{'shape': (7,), }").unwrap(), vec![7]);
    }
}
