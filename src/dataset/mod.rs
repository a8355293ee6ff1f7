//! nnU-Net v2 raw datasets: folder locations, `dataset.json`, image readers, raw cases,
//! integrity checks and converters from release layouts.
//!
//! A raw dataset is a folder `DatasetXXX_Name/` with `dataset.json`,
//! `imagesTr/{case}_{XXXX}{ending}` (one file per channel XXXX), `labelsTr/{case}{ending}`
//! and optionally `imagesTs/`.

mod check;
pub mod cli;
pub mod convert;
mod error;
pub mod io;
mod json;
mod paths;

use std::path::{Path, PathBuf};

pub use check::{verify_dataset_integrity, MIN_CASES_FOR_FOLDS};
pub use error::DatasetError;
pub use io::{read_image, FileFormat, Geometry, Image};
pub use json::{DatasetJson, LabelValue};
pub use paths::{find_dataset, DatasetFolders};

/// File paths of one training case.
#[derive(Debug, Clone)]
pub struct CaseFiles {
    pub id: String,
    /// One file per channel, in channel order.
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

/// A raw case read into memory: image channels, label and geometry.
#[derive(Debug, Clone)]
pub struct RawCase {
    pub id: String,
    /// Channels stacked: `channels × Z × Y × X`, C order.
    pub image: Image,
    /// Label map `Z × Y × X` (values as stored, still float), if the case has one.
    pub label: Option<Image>,
}

/// An opened raw dataset: its folder and `dataset.json`.
#[derive(Debug, Clone)]
pub struct RawDataset {
    pub folder: PathBuf,
    /// Folder name, `DatasetXXX_Name`.
    pub name: String,
    pub json: DatasetJson,
}

impl RawDataset {
    /// Opens a raw dataset folder and reads its `dataset.json`.
    pub fn open(folder: &Path) -> Result<Self, DatasetError> {
        let json = DatasetJson::load(&folder.join("dataset.json"))?;
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        Ok(RawDataset {
            folder: folder.into(),
            name,
            json,
        })
    }

    /// Lists the training cases as nnU-Net does: case ids are the file names in
    /// `imagesTr` ending in `_XXXX{ending}`, sorted; the label is `labelsTr/{case}{ending}`.
    pub fn training_cases(&self) -> Result<Vec<CaseFiles>, DatasetError> {
        let mut cases = list_cases(&self.folder.join("imagesTr"), &self.json.file_ending)?;
        for case in &mut cases {
            let label = self
                .folder
                .join("labelsTr")
                .join(format!("{}{}", case.id, self.json.file_ending));
            case.label = Some(label);
        }
        Ok(cases)
    }

    /// Reads one case: every channel file stacked, and the label if present.
    pub fn read_case(&self, case: &CaseFiles) -> Result<RawCase, DatasetError> {
        read_case_files(case)
    }
}

/// Lists the cases of an images folder (`imagesTr`, `imagesTs`): the ids before
/// `_XXXX{ending}`, sorted, each with its channel files in channel order.
pub fn list_cases(folder: &Path, ending: &str) -> Result<Vec<CaseFiles>, DatasetError> {
    let entries = std::fs::read_dir(folder).map_err(|e| DatasetError::io(folder, e))?;
    let mut by_id: std::collections::BTreeMap<String, Vec<(usize, PathBuf)>> = Default::default();
    for entry in entries {
        let entry = entry.map_err(|e| DatasetError::io(folder, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(ending) else {
            continue;
        };
        if let Some((id, channel)) = split_channel_suffix(stem) {
            by_id
                .entry(id.to_string())
                .or_default()
                .push((channel, entry.path()));
        }
    }
    Ok(by_id
        .into_iter()
        .map(|(id, mut files)| {
            files.sort();
            CaseFiles {
                id,
                images: files.into_iter().map(|(_, p)| p).collect(),
                label: None,
            }
        })
        .collect())
}

/// Splits `case_0003` into ("case", 3); None when the name has no 4-digit channel suffix.
pub(crate) fn split_channel_suffix(stem: &str) -> Option<(&str, usize)> {
    if stem.len() < 6 || stem.as_bytes()[stem.len() - 5] != b'_' {
        return None;
    }
    let digits = &stem[stem.len() - 4..];
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((&stem[..stem.len() - 5], digits.parse().ok()?))
}

/// Reads and stacks the channel files of a case, and its label.
pub fn read_case_files(case: &CaseFiles) -> Result<RawCase, DatasetError> {
    let mut image: Option<Image> = None;
    for path in &case.images {
        let channel = read_image(path)?;
        image = Some(match image {
            None => channel,
            Some(mut stacked) => {
                if stacked.shape != channel.shape {
                    return Err(DatasetError::Integrity {
                        problems: vec![format!(
                            "{}: shape {:?} differs from the first channel's {:?}; \
                             every channel of a case must have the same shape",
                            path.display(),
                            channel.shape,
                            stacked.shape
                        )],
                    });
                }
                stacked.data.extend_from_slice(&channel.data);
                stacked.channels += channel.channels;
                stacked
            }
        });
    }
    let image = image.ok_or_else(|| DatasetError::Integrity {
        problems: vec![format!("case {}: no image files", case.id)],
    })?;
    let label = match &case.label {
        Some(path) if path.exists() => Some(read_image(path)?),
        _ => None,
    };
    Ok(RawCase {
        id: case.id.clone(),
        image,
        label,
    })
}

/// Returns `path` with `.tmp` appended, the name outputs are written under before the rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes a file through `<path>.tmp` and a rename, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| DatasetError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))
}
