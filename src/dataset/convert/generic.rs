//! The generic images + masks converter, and Kvasir-SEG built on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    copy_file, dataset_json, files_with_endings, write_dataset, write_image_png, ConvertTarget,
};
use crate::dataset::io::write_label_png;
use crate::dataset::{read_image, DatasetError, Image};

/// Mask value to class. RGB masks are first reduced to the mean of their colour channels.
#[derive(Debug, Clone)]
pub enum MaskRule {
    /// Foreground class 1 where the value is above the threshold, else 0; for lossy
    /// (JPEG) masks whose values scatter around 0 and 255.
    Threshold(f32),
    /// Exact value to class; any other value is an error naming the file.
    Map(BTreeMap<i64, u16>),
}

impl MaskRule {
    /// Parses "t:127" as a threshold or "0:0,255:1" as a value map.
    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        let bad = || {
            DatasetError::Convert(format!(
                "invalid mask rule {text:?}: use t:VALUE (threshold) or a map such as 0:0,255:1"
            ))
        };
        if let Some(t) = text.strip_prefix("t:") {
            return t.parse().map(MaskRule::Threshold).map_err(|_| bad());
        }
        let mut map = BTreeMap::new();
        for pair in text.split(',') {
            let (value, class) = pair.split_once(':').ok_or_else(bad)?;
            map.insert(
                value.trim().parse().map_err(|_| bad())?,
                class.trim().parse().map_err(|_| bad())?,
            );
        }
        Ok(MaskRule::Map(map))
    }

    /// Applies the rule to a mask image, returning one class per pixel.
    pub fn apply(&self, mask: &Image, path: &Path) -> Result<Vec<u16>, DatasetError> {
        let n = mask.voxels();
        let colour = mask.channels.min(3);
        let value =
            |i: usize| (0..colour).map(|c| mask.data[c * n + i]).sum::<f32>() / colour as f32;
        match self {
            MaskRule::Threshold(t) => Ok((0..n).map(|i| u16::from(value(i) > *t)).collect()),
            MaskRule::Map(map) => {
                let mut unknown = BTreeMap::new();
                let classes = (0..n)
                    .map(|i| {
                        let v = value(i).round() as i64;
                        *map.get(&v).unwrap_or_else(|| {
                            *unknown.entry(v).or_insert(0usize) += 1;
                            &0
                        })
                    })
                    .collect();
                if unknown.is_empty() {
                    Ok(classes)
                } else {
                    Err(DatasetError::Convert(format!(
                        "{}: mask values {:?} are not in the value map; add them to the map, \
                         or use a threshold (t:127) for lossy masks",
                        path.display(),
                        unknown.keys().collect::<Vec<_>>()
                    )))
                }
            }
        }
    }
}

const IMAGE_ENDINGS: &[&str] = &[".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

/// Finds the mask for an image: the file in `masks` with the same stem (any image ending).
fn matching_mask(masks: &[PathBuf], image: &Path) -> Option<PathBuf> {
    let stem = image.file_stem()?;
    masks.iter().find(|m| m.file_stem() == Some(stem)).cloned()
}

/// Converts an images folder and a masks folder (same file stems) into a raw dataset with
/// PNG files: each image becomes `<stem>_0000.png` (RGB images keep three channels,
/// named R, G, B), each mask a label PNG through `rule`. `limit` keeps the first N pairs
/// by file name; `labels` names the classes 0, 1, ...
pub fn convert_generic(
    images: &Path,
    masks: &Path,
    rule: &MaskRule,
    labels: &[&str],
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut image_files = files_with_endings(images, IMAGE_ENDINGS)?;
    let mask_files = files_with_endings(masks, IMAGE_ENDINGS)?;
    if let Some(limit) = limit {
        image_files.truncate(limit);
    }
    if image_files.is_empty() {
        return Err(DatasetError::Convert(format!(
            "{}: no image files found",
            images.display()
        )));
    }
    let first = read_image(&image_files[0])?;
    let channels: Vec<&str> = if first.channels >= 3 {
        vec!["R", "G", "B"]
    } else {
        vec!["image"]
    };
    let json = dataset_json(&channels, labels, ".png");
    write_dataset(target, json, |w| {
        for path in &image_files {
            let stem = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let mask_path = matching_mask(&mask_files, path).ok_or_else(|| {
                DatasetError::Convert(format!(
                    "{}: no mask with the same name in {}",
                    path.display(),
                    masks.display()
                ))
            })?;
            let is_png = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"));
            let image = read_image(path)?;
            if is_png && image.channels != 4 {
                copy_file(path, &w.image_path(&stem, 0, ".png"))?;
            } else {
                write_image_png(&w.image_path(&stem, 0, ".png"), &image)?;
            }
            let mask = read_image(&mask_path)?;
            if mask.shape != image.shape {
                return Err(DatasetError::Convert(format!(
                    "{}: mask shape {:?} differs from the image's {:?}",
                    mask_path.display(),
                    mask.shape,
                    image.shape
                )));
            }
            let classes = rule.apply(&mask, &mask_path)?;
            write_label_png(
                &w.label_path(&stem, ".png"),
                &classes,
                mask.shape[1],
                mask.shape[2],
            )?;
        }
        Ok(image_files.len())
    })
}

/// Threshold for Kvasir-SEG's JPEG masks: foreground above 127, the midpoint of 0 and 255.
pub const KVASIR_MASK_THRESHOLD: f32 = 127.0;

/// Converts Kvasir-SEG (`images/<id>.jpg`, `masks/<id>.jpg`) into a binary polyp dataset.
pub fn convert_kvasir(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    convert_generic(
        &source.join("images"),
        &source.join("masks"),
        &MaskRule::Threshold(KVASIR_MASK_THRESHOLD),
        &["background", "polyp"],
        target,
        limit,
    )
}
