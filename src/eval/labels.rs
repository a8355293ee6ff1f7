//! Label-map reader for evaluation: NIfTI volumes and 2D label images.
//!
//! NOTE: this is a small private reader until the dataset area's image and NIfTI readers
//! land; swap it for those once they exist.

use std::path::Path;

use super::EvalError;

/// A label map with its voxel spacing.
///
/// `data` is in C order over `shape`: NIfTI volumes keep the file's axis order
/// (x, y, z), as nibabel's `get_fdata()` returns them; 2D images are (row, column, 1).
#[derive(Debug, Clone)]
pub struct LabelMap {
    pub shape: [usize; 3],
    /// Voxel size along each axis of `shape`: the NIfTI header's pixdim, or 1 for images.
    pub spacing: [f64; 3],
    pub data: Vec<i32>,
}

impl LabelMap {
    /// Returns the number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Returns true when the map has no voxels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Returns true when the map is a 2D image, i.e. its third axis has length 1.
    pub fn is_2d(&self) -> bool {
        self.shape[2] == 1
    }
}

/// Reads a label map from a `.nii`/`.nii.gz`, `.png`, `.bmp`, `.tif`/`.tiff` file.
///
/// Values are truncated towards zero to integers, as `np.uint8(nib.load(f).get_fdata())`
/// and nnU-Net's readers do for integer-valued label files. RGB images must have equal
/// channels (a mask saved as colour); their first channel is used.
pub fn read_label_map(path: &Path) -> Result<LabelMap, EvalError> {
    let name = path.to_string_lossy().to_lowercase();
    if name.ends_with(".nii.gz") || name.ends_with(".nii") {
        read_nifti(path)
    } else if name.ends_with(".tif") || name.ends_with(".tiff") {
        read_tiff(path)
    } else if name.ends_with(".png") || name.ends_with(".bmp") {
        read_image(path)
    } else {
        Err(EvalError::UnsupportedFormat {
            path: path.to_path_buf(),
        })
    }
}

fn read_error(path: &Path, message: impl ToString) -> EvalError {
    EvalError::Read {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read_nifti(path: &Path) -> Result<LabelMap, EvalError> {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

    let object = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| read_error(path, e))?;
    let header = object.header().clone();
    let array = object
        .into_volume()
        .into_ndarray::<f64>()
        .map_err(|e| read_error(path, e))?;
    let dims = array.shape().to_vec();
    if dims.is_empty() || dims.len() > 3 {
        return Err(read_error(
            path,
            format!("expected a 2D or 3D volume, found shape {dims:?}"),
        ));
    }
    let mut shape = [1usize; 3];
    let mut spacing = [1.0f64; 3];
    for (axis, &extent) in dims.iter().enumerate() {
        shape[axis] = extent;
        spacing[axis] = f64::from(header.pixdim[axis + 1]);
    }
    // `iter()` walks the array in logical C order whatever its memory layout.
    let data = array.iter().map(|&v| v as i32).collect();
    Ok(LabelMap {
        shape,
        spacing,
        data,
    })
}

fn read_image(path: &Path) -> Result<LabelMap, EvalError> {
    let decoded = image::open(path).map_err(|e| read_error(path, e))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let data: Vec<i32> = match decoded {
        image::DynamicImage::ImageLuma8(buffer) => {
            buffer.into_raw().into_iter().map(i32::from).collect()
        }
        image::DynamicImage::ImageLuma16(buffer) => {
            buffer.into_raw().into_iter().map(i32::from).collect()
        }
        image::DynamicImage::ImageRgb8(buffer) => {
            let raw = buffer.into_raw();
            if let Some(pixel) = raw.chunks_exact(3).find(|p| p[0] != p[1] || p[1] != p[2]) {
                return Err(read_error(
                    path,
                    format!(
                        "colour pixel {pixel:?} in a label map; save labels as grayscale \
                         with one value per class"
                    ),
                ));
            }
            raw.chunks_exact(3).map(|p| i32::from(p[0])).collect()
        }
        other => {
            return Err(read_error(
                path,
                format!(
                    "unsupported pixel type {:?}; save label maps as 8- or 16-bit grayscale",
                    other.color()
                ),
            ))
        }
    };
    Ok(LabelMap {
        shape: [height, width, 1],
        spacing: [1.0; 3],
        data,
    })
}

fn read_tiff(path: &Path) -> Result<LabelMap, EvalError> {
    use tiff::decoder::{Decoder, DecodingResult};

    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let mut decoder =
        Decoder::new(std::io::BufReader::new(file)).map_err(|e| read_error(path, e))?;
    let (width, height) = decoder.dimensions().map_err(|e| read_error(path, e))?;
    let (width, height) = (width as usize, height as usize);
    let data: Vec<i32> = match decoder.read_image().map_err(|e| read_error(path, e))? {
        DecodingResult::U8(v) => v.into_iter().map(i32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(i32::from).collect(),
        DecodingResult::I8(v) => v.into_iter().map(i32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(i32::from).collect(),
        DecodingResult::I32(v) => v,
        DecodingResult::U32(v) => v.into_iter().map(|x| x as i32).collect(),
        DecodingResult::F32(v) => v.into_iter().map(|x| x as i32).collect(),
        DecodingResult::F64(v) => v.into_iter().map(|x| x as i32).collect(),
        _ => {
            return Err(read_error(
                path,
                "unsupported TIFF sample type for a label map",
            ))
        }
    };
    if data.len() != width * height {
        return Err(read_error(
            path,
            format!(
                "expected one channel of {width}x{height}, found {} samples",
                data.len()
            ),
        ));
    }
    Ok(LabelMap {
        shape: [height, width, 1],
        spacing: [1.0; 3],
        data,
    })
}
