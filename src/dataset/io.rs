//! Image readers and writers: PNG, BMP, JPEG and TIFF as 2D images, NIfTI as 3D volumes.
//!
//! Every image becomes `channels × Z × Y × X` float32 values in C order plus its geometry,
//! as nnU-Net v2's readers return them: natural 2D images have Z = 1 and spacing
//! [999, 1, 1] (`NaturalImage2DIO`), and an RGB or RGBA file gives 3 or 4 channels. NIfTI
//! volumes are read as SimpleITK reads them (`SimpleITKIO`): axes (z, y, x), spacing
//! reversed from the header's pixdim, scl_slope and scl_inter applied.

use std::path::Path;

use super::DatasetError;

/// Spacing of natural 2D images along the missing z axis, as nnU-Net's `NaturalImage2DIO`.
pub const NATURAL_IMAGE_Z_SPACING: f64 = 999.0;

/// Image file formats, chosen by file ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Png,
    Bmp,
    Jpeg,
    Tiff,
    Nifti,
}

impl FileFormat {
    /// Returns the format for a file ending such as ".png" or ".nii.gz".
    pub fn from_ending(ending: &str) -> Option<Self> {
        match ending.to_ascii_lowercase().as_str() {
            ".png" => Some(Self::Png),
            ".bmp" => Some(Self::Bmp),
            ".jpg" | ".jpeg" => Some(Self::Jpeg),
            ".tif" | ".tiff" => Some(Self::Tiff),
            ".nii" | ".nii.gz" => Some(Self::Nifti),
            _ => None,
        }
    }

    /// Returns the format of a path from its name.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".nii.gz") {
            return Some(Self::Nifti);
        }
        let dot = name.rfind('.')?;
        Self::from_ending(&name[dot..])
    }

    /// Returns whether the format stores 3D volumes.
    pub fn is_volume(self) -> bool {
        self == Self::Nifti
    }
}

/// Geometry of an image: spacing in (z, y, x) order and, for NIfTI, the voxel-to-world
/// affine (row-major 4×4, NIfTI's RAS convention) taken from the sform when its code is
/// set, otherwise from the qform, otherwise diag(pixdim).
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub spacing: [f64; 3],
    pub affine: Option<[[f64; 4]; 4]>,
}

/// A decoded image: `channels × shape` values in C order, shape (Z, Y, X).
#[derive(Debug, Clone)]
pub struct Image {
    pub data: Vec<f32>,
    pub channels: usize,
    pub shape: [usize; 3],
    pub geometry: Geometry,
}

impl Image {
    /// Number of voxels per channel.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values of one channel.
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.voxels();
        &self.data[c * n..(c + 1) * n]
    }
}

/// Reads an image or volume, choosing the reader from the file ending.
pub fn read_image(path: &Path) -> Result<Image, DatasetError> {
    match FileFormat::from_path(path) {
        Some(FileFormat::Nifti) => read_nifti(path),
        Some(FileFormat::Tiff) => read_tiff(path),
        Some(_) => read_natural(path),
        None => Err(DatasetError::UnknownEnding { path: path.into() }),
    }
}

fn natural_geometry() -> Geometry {
    Geometry {
        spacing: [NATURAL_IMAGE_Z_SPACING, 1.0, 1.0],
        affine: None,
    }
}

/// Moves interleaved pixels (H, W, C) to planar channels (C, 1, H, W).
fn planar<T: Copy + Into<f64>>(
    pixels: &[T],
    channels: usize,
    height: usize,
    width: usize,
) -> Image {
    let n = height * width;
    let mut data = vec![0f32; channels * n];
    for (i, px) in pixels.chunks_exact(channels).enumerate() {
        for (c, v) in px.iter().enumerate() {
            data[c * n + i] = (*v).into() as f32;
        }
    }
    Image {
        data,
        channels,
        shape: [1, height, width],
        geometry: natural_geometry(),
    }
}

fn read_natural(path: &Path) -> Result<Image, DatasetError> {
    use image::DynamicImage as D;
    let reader = image::ImageReader::open(path)
        .map_err(|e| DatasetError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DatasetError::io(path, e))?;
    let img = reader.decode().map_err(|e| DatasetError::read(path, e))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(match img {
        D::ImageLuma8(b) => planar(b.as_raw(), 1, h, w),
        D::ImageLumaA8(b) => planar(b.as_raw(), 2, h, w),
        D::ImageRgb8(b) => planar(b.as_raw(), 3, h, w),
        D::ImageRgba8(b) => planar(b.as_raw(), 4, h, w),
        D::ImageLuma16(b) => planar(b.as_raw(), 1, h, w),
        D::ImageLumaA16(b) => planar(b.as_raw(), 2, h, w),
        D::ImageRgb16(b) => planar(b.as_raw(), 3, h, w),
        D::ImageRgba16(b) => planar(b.as_raw(), 4, h, w),
        D::ImageRgb32F(b) => planar(b.as_raw(), 3, h, w),
        D::ImageRgba32F(b) => planar(b.as_raw(), 4, h, w),
        other => planar(other.to_rgb32f().as_raw(), 3, h, w),
    })
}

fn read_tiff(path: &Path) -> Result<Image, DatasetError> {
    use tiff::decoder::{Decoder, DecodingResult as R};
    use tiff::ColorType;
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut decoder =
        Decoder::new(std::io::BufReader::new(file)).map_err(|e| DatasetError::read(path, e))?;
    let (w, h) = decoder
        .dimensions()
        .map_err(|e| DatasetError::read(path, e))?;
    let channels = match decoder
        .colortype()
        .map_err(|e| DatasetError::read(path, e))?
    {
        ColorType::Gray(_) => 1,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        ColorType::RGBA(_) => 4,
        other => {
            return Err(DatasetError::read(
                path,
                format!("unsupported TIFF colour type {other:?}"),
            ))
        }
    };
    let (h, w) = (h as usize, w as usize);
    let img = match decoder
        .read_image()
        .map_err(|e| DatasetError::read(path, e))?
    {
        R::U8(v) => planar(&v, channels, h, w),
        R::U16(v) => planar(&v, channels, h, w),
        R::U32(v) => planar(&v, channels, h, w),
        R::I8(v) => planar(&v, channels, h, w),
        R::I16(v) => planar(&v, channels, h, w),
        R::I32(v) => planar(&v, channels, h, w),
        R::F32(v) => planar(&v, channels, h, w),
        R::F64(v) => planar(&v, channels, h, w),
        R::U64(v) => planar(
            &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            channels,
            h,
            w,
        ),
        R::I64(v) => planar(
            &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            channels,
            h,
            w,
        ),
        R::F16(v) => planar(
            &v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            channels,
            h,
            w,
        ),
    };
    if img.data.len() != channels * h * w {
        return Err(DatasetError::read(
            path,
            "pixel count does not match the TIFF dimensions",
        ));
    }
    Ok(img)
}

fn read_nifti(path: &Path) -> Result<Image, DatasetError> {
    use nifti::{InMemNiftiObject, NiftiObject};
    let obj = nifti::ReaderOptions::new()
        .read_file(path)
        .map_err(|e| DatasetError::read(path, e))?;
    let header = obj.header().clone();
    let dims = header
        .dim()
        .map_err(|e| DatasetError::read(path, e))?
        .to_vec();
    if dims.len() < 2 || dims.len() > 4 || (dims.len() == 4 && dims[3] != 1) {
        return Err(DatasetError::read(
            path,
            format!("expected a 2D or 3D volume, found dimensions {dims:?}"),
        ));
    }
    let (nx, ny) = (dims[0] as usize, dims[1] as usize);
    let nz = if dims.len() >= 3 { dims[2] as usize } else { 1 };
    let datatype = header
        .data_type()
        .map_err(|e| DatasetError::read(path, e))?;
    let endianness = header.endianness;
    let raw = InMemNiftiObject::into_volume(obj).into_raw_data();
    let n = nx * ny * nz;
    let values: Vec<f64> = decode_nifti_values(&raw, datatype, endianness, n).ok_or_else(|| {
        DatasetError::read(
            path,
            format!("unsupported or truncated data type {datatype:?}"),
        )
    })?;
    let (slope, inter) = (header.scl_slope as f64, header.scl_inter as f64);
    let scale = slope != 0.0 && !(slope == 1.0 && inter == 0.0);
    let data: Vec<f32> = values
        .into_iter()
        .map(|v| {
            if scale {
                (v * slope + inter) as f32
            } else {
                v as f32
            }
        })
        .collect();
    let p = header.pixdim;
    let spacing = [p[3].abs() as f64, p[2].abs() as f64, p[1].abs() as f64];
    let spacing = if nz == 1 && spacing[0] == 0.0 {
        [1.0, spacing[1], spacing[2]]
    } else {
        spacing
    };
    Ok(Image {
        data,
        channels: 1,
        shape: [nz, ny, nx],
        geometry: Geometry {
            spacing,
            affine: Some(nifti_affine(&header)),
        },
    })
}

fn decode_nifti_values(
    raw: &[u8],
    datatype: nifti::NiftiType,
    endianness: nifti::Endianness,
    n: usize,
) -> Option<Vec<f64>> {
    use nifti::NiftiType as T;
    let little = endianness == nifti::Endianness::Little;
    let size = match datatype {
        T::Uint8 | T::Int8 => 1,
        T::Uint16 | T::Int16 => 2,
        T::Uint32 | T::Int32 | T::Float32 => 4,
        T::Uint64 | T::Int64 | T::Float64 => 8,
        _ => return None,
    };
    if raw.len() < n * size {
        return None;
    }
    let word = |i: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        let chunk = &raw[i * size..(i + 1) * size];
        if little {
            b[..size].copy_from_slice(chunk);
        } else {
            for (k, x) in chunk.iter().rev().enumerate() {
                b[k] = *x;
            }
        }
        b
    };
    let decode = |i: usize| -> f64 {
        let b = word(i);
        match datatype {
            T::Uint8 => b[0] as f64,
            T::Int8 => b[0] as i8 as f64,
            T::Uint16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            T::Int16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            T::Uint32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            T::Int32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            T::Float32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            T::Uint64 => u64::from_le_bytes(b) as f64,
            T::Int64 => i64::from_le_bytes(b) as f64,
            _ => f64::from_le_bytes(b),
        }
    };
    Some((0..n).map(decode).collect())
}

/// Returns the voxel-to-world affine of a NIfTI header (sform, else qform, else pixdim).
fn nifti_affine(h: &nifti::NiftiHeader) -> [[f64; 4]; 4] {
    let p = h.pixdim;
    if h.sform_code > 0 {
        let row = |r: [f32; 4]| [r[0] as f64, r[1] as f64, r[2] as f64, r[3] as f64];
        return [
            row(h.srow_x),
            row(h.srow_y),
            row(h.srow_z),
            [0.0, 0.0, 0.0, 1.0],
        ];
    }
    if h.qform_code > 0 {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let a = (1.0 - b * b - c * c - d * d).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - b * b - c * c,
            ],
        ];
        let qfac = if p[0] < 0.0 { -1.0 } else { 1.0 };
        let s = [p[1] as f64, p[2] as f64, p[3] as f64 * qfac];
        let t = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * s[j];
            }
            m[i][3] = t[i];
        }
        m[3][3] = 1.0;
        return m;
    }
    [
        [p[1] as f64, 0.0, 0.0, 0.0],
        [0.0, p[2] as f64, 0.0, 0.0],
        [0.0, 0.0, p[3] as f64, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Writes a single-channel 2D label map as an 8-bit PNG (values ≤ 255) or a 16-bit PNG.
pub fn write_label_png(
    path: &Path,
    labels: &[u16],
    height: usize,
    width: usize,
) -> Result<(), DatasetError> {
    let (w, h) = (width as u32, height as u32);
    let max = labels.iter().copied().max().unwrap_or(0);
    let tmp = super::tmp_path(path);
    let result = if max <= 255 {
        let bytes: Vec<u8> = labels.iter().map(|&v| v as u8).collect();
        let buffer = image::GrayImage::from_raw(w, h, bytes).expect("buffer size matches");
        buffer.save_with_format(&tmp, image::ImageFormat::Png)
    } else {
        let buffer =
            image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(w, h, labels.to_vec())
                .expect("buffer size matches");
        buffer.save_with_format(&tmp, image::ImageFormat::Png)
    };
    result.map_err(|e| DatasetError::read(path, format!("cannot write PNG: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))
}

/// Writes interleaved 8-bit pixels (1 or 3 channels) as a PNG.
pub fn write_png_u8(
    path: &Path,
    pixels: &[u8],
    channels: usize,
    height: usize,
    width: usize,
) -> Result<(), DatasetError> {
    let (w, h) = (width as u32, height as u32);
    let tmp = super::tmp_path(path);
    let result = if channels == 3 {
        image::RgbImage::from_raw(w, h, pixels.to_vec())
            .expect("buffer size matches")
            .save_with_format(&tmp, image::ImageFormat::Png)
    } else {
        image::GrayImage::from_raw(w, h, pixels.to_vec())
            .expect("buffer size matches")
            .save_with_format(&tmp, image::ImageFormat::Png)
    };
    result.map_err(|e| DatasetError::read(path, format!("cannot write PNG: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))
}
