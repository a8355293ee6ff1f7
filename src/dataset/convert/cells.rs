//! Cell datasets: instance masks become background (0), interior (1) and boundary (2).
//!
//! Boundary rule: a pixel is boundary when it belongs to an instance and one of its four
//! edge neighbours inside the image has a different value (another instance or
//! background). This is scikit-image's `find_boundaries(mode="inner", connectivity=1)`,
//! which the NeurIPS 2022 cell segmentation baseline uses for its three-class labels.
//! Pixels on the image border are compared only with neighbours inside the image.

use std::path::{Path, PathBuf};

use super::{
    copy_file, dataset_json, files_with_endings, write_dataset, write_image_png, ConvertTarget,
};
use crate::dataset::io::write_label_png;
use crate::dataset::{read_image, DatasetError, Image};

const CELL_LABELS: &[&str] = &["background", "interior", "boundary"];

/// Maps an instance map (0 = background, other values = instance ids) of `height × width`
/// to 0 background, 1 interior, 2 boundary.
pub fn instances_to_interior_boundary(instances: &[f32], height: usize, width: usize) -> Vec<u16> {
    let mut classes = vec![0u16; height * width];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let v = instances[i];
            if v == 0.0 {
                continue;
            }
            let differs = (y > 0 && instances[i - width] != v)
                || (y + 1 < height && instances[i + width] != v)
                || (x > 0 && instances[i - 1] != v)
                || (x + 1 < width && instances[i + 1] != v);
            classes[i] = if differs { 2 } else { 1 };
        }
    }
    classes
}

fn write_cell_label(path: &Path, mask_path: &Path, image: &Image) -> Result<(), DatasetError> {
    let mask = read_image(mask_path)?;
    if mask.channels != 1 {
        return Err(DatasetError::Convert(format!(
            "{}: instance mask has {} channels, expected 1",
            mask_path.display(),
            mask.channels
        )));
    }
    if mask.shape != image.shape {
        return Err(DatasetError::Convert(format!(
            "{}: mask shape {:?} differs from the image's {:?}",
            mask_path.display(),
            mask.shape,
            image.shape
        )));
    }
    let [_, h, w] = mask.shape;
    let classes = instances_to_interior_boundary(&mask.data, h, w);
    write_label_png(path, &classes, h, w)
}

/// Converts the scellseg layout (`<style>/NNN_img.png`, `<style>/NNN_masks.png`) into a
/// three-class raw dataset; case ids are `<style>_NNN`. Its images are 16-bit RGB PNGs;
/// they are written as 8-bit RGB keeping the high byte of each value, which is what
/// Pillow, and with it nnU-Net's `NaturalImage2DIO`, reads from such files.
pub fn convert_scellseg(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut styles: Vec<PathBuf> = std::fs::read_dir(source)
        .map_err(|e| DatasetError::io(source, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    styles.sort();
    let mut pairs = Vec::new();
    for style in &styles {
        let style_name = style
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for image in files_with_endings(style, &["_img.png"])? {
            let name = image
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let number = name.trim_end_matches("_img.png").to_string();
            let mask = style.join(format!("{number}_masks.png"));
            pairs.push((format!("{style_name}_{number}"), image, mask));
        }
    }
    if let Some(limit) = limit {
        pairs.truncate(limit);
    }
    let json = dataset_json(&["R", "G", "B"], CELL_LABELS, ".png");
    write_dataset(target, json, |w| {
        for (case, image_path, mask_path) in &pairs {
            let image = read_image(image_path)?;
            let is_8bit = image.data.iter().all(|&v| v <= 255.0);
            if image.channels == 3 && is_8bit {
                copy_file(image_path, &w.image_path(case, 0, ".png"))?;
            } else if image.channels == 3 {
                write_image_png(&w.image_path(case, 0, ".png"), &high_byte(&image))?;
            } else {
                write_image_png(&w.image_path(case, 0, ".png"), &to_rgb8(&image))?;
            }
            write_cell_label(&w.label_path(case, ".png"), mask_path, &image)?;
            copy_file(mask_path, &w.instance_mask_path(case, ".png")?)?;
        }
        Ok(pairs.len())
    })
}

/// Converts the NeurIPS 2022 Cell Segmentation release layout (`images/cell_XXXXX.{png,tif,
/// tiff,bmp}`, `labels/cell_XXXXX_label.tiff`) into a three-class raw dataset of 8-bit RGB
/// PNGs; the challenge mixes grey, RGB, 8- and 16-bit images, see [`to_rgb8`].
pub fn convert_neurips_cells(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut images = files_with_endings(
        &source.join("images"),
        &[".png", ".tif", ".tiff", ".bmp", ".jpg"],
    )?;
    if let Some(limit) = limit {
        images.truncate(limit);
    }
    let json = dataset_json(&["R", "G", "B"], CELL_LABELS, ".png");
    write_dataset(target, json, |w| {
        for image_path in &images {
            let case = image_path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let mask_path = source.join("labels").join(format!("{case}_label.tiff"));
            if !mask_path.exists() {
                return Err(DatasetError::Convert(format!(
                    "{}: label file {} not found",
                    image_path.display(),
                    mask_path.display()
                )));
            }
            let image = read_image(image_path)?;
            write_image_png(&w.image_path(&case, 0, ".png"), &to_rgb8(&image))?;
            write_cell_label(&w.label_path(&case, ".png"), &mask_path, &image)?;
            copy_file(&mask_path, &w.instance_mask_path(&case, "_label.tiff")?)?;
        }
        Ok(images.len())
    })
}

/// Keeps the high byte of 16-bit values (`v >> 8`).
fn high_byte(image: &Image) -> Image {
    let data = image
        .data
        .iter()
        .map(|&v| ((v as u32) >> 8) as f32)
        .collect();
    Image {
        data,
        ..image.clone()
    }
}

/// Percentiles of the nonzero values that [`to_rgb8`] maps to 0 and 255 (the NeurIPS
/// 2022 cell segmentation baseline normalises each channel between them).
const RGB8_LOWER_PERCENTILE: f64 = 1.0;
const RGB8_UPPER_PERCENTILE: f64 = 99.0;

/// Turns any image into 8-bit RGB: 8-bit RGB stays as it is; otherwise each channel is
/// clipped to the 1st–99th percentile of its nonzero values and rescaled to 0..=255, and a
/// single grey channel is repeated three times.
pub fn to_rgb8(image: &Image) -> Image {
    let n = image.voxels();
    let is_8bit = image
        .data
        .iter()
        .all(|&v| (0.0..=255.0).contains(&v) && v.fract() == 0.0);
    let colour = image.channels.min(3);
    let mut out = vec![0f32; 3 * n];
    for c in 0..3 {
        let src = image.channel(c.min(colour - 1));
        let dst = &mut out[c * n..(c + 1) * n];
        if is_8bit {
            dst.copy_from_slice(src);
            continue;
        }
        let mut nonzero: Vec<f32> = src.iter().copied().filter(|&v| v != 0.0).collect();
        if nonzero.is_empty() {
            continue;
        }
        nonzero.sort_by(f32::total_cmp);
        let lo = percentile_sorted(&nonzero, RGB8_LOWER_PERCENTILE);
        let hi = percentile_sorted(&nonzero, RGB8_UPPER_PERCENTILE);
        let range = (hi - lo).max(1e-8);
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = if v == 0.0 {
                0.0
            } else {
                (((v as f64).clamp(lo, hi) - lo) / range * 255.0) as f32
            };
        }
    }
    Image {
        data: out,
        channels: 3,
        shape: image.shape,
        geometry: image.geometry.clone(),
    }
}

/// Percentile with linear interpolation (NumPy's default) of sorted values.
pub(crate) fn percentile_sorted(sorted: &[f32], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * frac
}
