//! Writing predictions: the label map in the input's file format with its geometry, and
//! the class probabilities as nnU-Net's `<case>.npz`. Every file is written under a
//! temporary name and renamed.

use std::io::{Read, Write};
use std::path::Path;

use super::InferError;
use crate::dataset::{tmp_path, FileFormat};

/// Size of a NIfTI-1 header in bytes (`sizeof_hdr`).
const NIFTI1_HEADER_BYTES: usize = 348;
/// Data offset of a single-file NIfTI-1 image: the header plus the 4-byte extension flag.
const NIFTI1_VOX_OFFSET: f32 = 352.0;

/// Writes `labels` (Z, Y, X) to `path` in the format its ending names. 2D formats need
/// Z = 1. NIfTI output copies the header of `reference` (the input image), so spacing,
/// orientation and affine stay as they were, and changes only the data type to 8 or
/// 16-bit unsigned integers with no intensity scaling.
pub fn write_segmentation(
    path: &Path,
    labels: &[u16],
    shape: [usize; 3],
    reference: &Path,
) -> Result<(), InferError> {
    let format = FileFormat::from_path(path).ok_or_else(|| {
        InferError::input(
            path,
            "unsupported file ending; use .png, .bmp, .tif or .nii.gz",
        )
    })?;
    let tmp = tmp_path(path);
    let result = match format {
        FileFormat::Nifti => write_nifti(&tmp, labels, shape, reference, path),
        FileFormat::Jpeg => Err(InferError::input(
            path,
            "JPEG is lossy and would change label values; use a dataset with .png labels",
        )),
        _ => write_2d(&tmp, labels, shape, path),
    };
    if let Err(error) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    std::fs::rename(&tmp, path).map_err(|e| InferError::io(path, e))
}

fn write_2d(tmp: &Path, labels: &[u16], shape: [usize; 3], path: &Path) -> Result<(), InferError> {
    let [z, height, width] = shape;
    if z != 1 {
        return Err(InferError::input(
            path,
            format!("a 2D image format cannot hold {z} slices; use .nii.gz"),
        ));
    }
    let image_format = image::ImageFormat::from_path(path)
        .map_err(|e| InferError::input(path, format!("unsupported image format: {e}")))?;
    let (w, h) = (width as u32, height as u32);
    let max = labels.iter().copied().max().unwrap_or(0);
    let saved = if max <= u8::MAX as u16 {
        let bytes: Vec<u8> = labels.iter().map(|&v| v as u8).collect();
        image::GrayImage::from_raw(w, h, bytes)
            .expect("the label buffer has height × width values")
            .save_with_format(tmp, image_format)
    } else {
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(w, h, labels.to_vec())
            .expect("the label buffer has height × width values")
            .save_with_format(tmp, image_format)
    };
    saved.map_err(|e| InferError::input(path, format!("failed to write: {e}")))
}

/// Reads the first 348 bytes of a NIfTI-1 file, gzipped or not.
fn read_nifti_header(reference: &Path) -> Result<Vec<u8>, InferError> {
    let file = std::fs::File::open(reference).map_err(|e| InferError::io(reference, e))?;
    let mut reader: Box<dyn Read> = if reference.to_string_lossy().ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut header = vec![0u8; NIFTI1_HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .map_err(|e| InferError::io(reference, e))?;
    Ok(header)
}

fn write_nifti(
    tmp: &Path,
    labels: &[u16],
    shape: [usize; 3],
    reference: &Path,
    path: &Path,
) -> Result<(), InferError> {
    let mut header = read_nifti_header(reference)?;
    let little_endian = match header[0..4] {
        [0x5c, 0x01, 0, 0] => true,
        [0, 0, 0x01, 0x5c] => false,
        _ => {
            return Err(InferError::input(
                reference,
                "not a NIfTI-1 header (sizeof_hdr is not 348); NIfTI-2 input is not supported",
            ))
        }
    };
    let i16_bytes = |v: i16| {
        if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let f32_bytes = |v: f32| {
        if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let read_i16 = |bytes: &[u8]| {
        let pair = [bytes[0], bytes[1]];
        if little_endian {
            i16::from_le_bytes(pair)
        } else {
            i16::from_be_bytes(pair)
        }
    };
    // dim[1..=3] must be (X, Y, Z) of the label map.
    let dims: Vec<i16> = (0..8).map(|i| read_i16(&header[40 + 2 * i..])).collect();
    let [z, y, x] = shape;
    let header_voxels: usize = dims[1..=3.min(dims[0].max(1) as usize)]
        .iter()
        .map(|&d| d.max(1) as usize)
        .product();
    if header_voxels != x * y * z || dims[1] as usize != x || dims[2] as usize != y {
        return Err(InferError::input(
            reference,
            format!(
                "the header's dimensions {:?} do not match the prediction (X, Y, Z) = \
                 ({x}, {y}, {z})",
                &dims[1..=3]
            ),
        ));
    }
    let wide = labels.iter().any(|&v| v > u8::MAX as u16);
    let (datatype, bitpix) = if wide { (512i16, 16i16) } else { (2i16, 8i16) };
    header[70..72].copy_from_slice(&i16_bytes(datatype));
    header[72..74].copy_from_slice(&i16_bytes(bitpix));
    header[108..112].copy_from_slice(&f32_bytes(NIFTI1_VOX_OFFSET));
    header[112..116].copy_from_slice(&f32_bytes(1.0)); // scl_slope
    header[116..120].copy_from_slice(&f32_bytes(0.0)); // scl_inter
    header[124..128].copy_from_slice(&f32_bytes(0.0)); // cal_max
    header[128..132].copy_from_slice(&f32_bytes(0.0)); // cal_min
    header[344..348].copy_from_slice(b"n+1\0");

    let mut bytes = header;
    bytes.extend_from_slice(&[0, 0, 0, 0]); // no extensions
    if wide {
        for &v in labels {
            bytes.extend_from_slice(&if little_endian {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            });
        }
    } else {
        bytes.extend(labels.iter().map(|&v| v as u8));
    }
    let file = std::fs::File::create(tmp).map_err(|e| InferError::io(tmp, e))?;
    let written = if path.to_string_lossy().ends_with(".gz") {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        encoder
            .write_all(&bytes)
            .and_then(|_| encoder.finish().map(|_| ()))
    } else {
        let mut file = file;
        file.write_all(&bytes)
    };
    written.map_err(|e| InferError::io(tmp, e))
}

/// Writes class probabilities (K, Z, Y, X) as `<case>.npz` with one float32 array named
/// `probabilities`, the file nnU-Net's `--save_probabilities` writes.
pub fn write_probabilities(
    path: &Path,
    probabilities: &[f32],
    shape: [usize; 4],
) -> Result<(), InferError> {
    let tmp = tmp_path(path);
    let npy_tmp = tmp.with_extension("npy.tmp");
    crate::preprocess::npy::write_npy(&npy_tmp, probabilities, &shape)
        .map_err(|e| InferError::io(&npy_tmp, e))?;
    let npy = std::fs::read(&npy_tmp).map_err(|e| InferError::io(&npy_tmp, e))?;
    let _ = std::fs::remove_file(&npy_tmp);
    let file = std::fs::File::create(&tmp).map_err(|e| InferError::io(&tmp, e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let zipped = zip
        .start_file("probabilities.npy", options)
        .map_err(std::io::Error::other)
        .and_then(|_| zip.write_all(&npy))
        .and_then(|_| zip.finish().map(|_| ()).map_err(std::io::Error::other));
    if let Err(e) = zipped {
        let _ = std::fs::remove_file(&tmp);
        return Err(InferError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| InferError::io(path, e))
}
