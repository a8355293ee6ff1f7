//! NumPy `.npy` version 1.0 files (little-endian, C order), readable with
//! `numpy.load(path, mmap_mode="r")`.

use std::io::Write;
use std::path::Path;

/// Element types stored in preprocessed cases.
pub trait NpyElement: Copy {
    const DESCR: &'static str;
    fn write_le(values: &[Self], out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl NpyElement for i8 {
    const DESCR: &'static str = "|i1";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().map(|v| *v as u8));
    }
}

impl NpyElement for i16 {
    const DESCR: &'static str = "<i2";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// The header bytes of a version 1.0 file, padded so that data starts at a multiple of 64.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes an array through `<path>.tmp` and a rename.
pub fn write_npy<T: NpyElement>(path: &Path, values: &[T], shape: &[usize]) -> std::io::Result<()> {
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "npy shape does not match the data"
    );
    let mut bytes = header(T::DESCR, shape);
    T::write_le(values, &mut bytes);
    let tmp = crate::dataset::tmp_path(path);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A loaded array: element type, shape and the raw little-endian data.
pub struct NpyArray {
    pub descr: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NpyArray {
    /// Values as f32 (`<f4`), i8 (`|i1`) or i16 (`<i2`) converted to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.descr.as_str() {
            "<f4" => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            "|i1" => self.data.iter().map(|&b| b as i8 as f32).collect(),
            "<i2" => self
                .data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
                .collect(),
            other => panic!("unsupported npy dtype {other}"),
        }
    }
}

/// Reads a version 1.0 `.npy` file written by [`write_npy`] or NumPy.
pub fn read_npy(path: &Path) -> std::io::Result<NpyArray> {
    let bytes = std::fs::read(path)?;
    let invalid = |m: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {m}", path.display()),
        )
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(invalid("not a .npy file"));
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let dict =
        std::str::from_utf8(&bytes[10..10 + len]).map_err(|_| invalid("header is not text"))?;
    let descr = dict
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| invalid("no descr"))?;
    let shape_text = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| invalid("no shape"))?;
    let shape = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| invalid("bad shape")))
        .collect::<Result<Vec<usize>, _>>()?;
    Ok(NpyArray {
        descr: descr.into(),
        shape,
        data: bytes[10 + len..].to_vec(),
    })
}
