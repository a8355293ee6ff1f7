//! Converters from release layouts to the nnU-Net v2 raw format. docs/datasets.md
//! describes each source layout and the label rules.

mod cells;
mod generic;
mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use cells::{convert_neurips_cells, convert_scellseg, instances_to_interior_boundary};
pub use generic::{convert_generic, convert_kvasir, MaskRule};
pub use volumes::{convert_amos, convert_chaos, convert_endovis2017};

use super::{DatasetError, DatasetJson, LabelValue};

/// Folder of a cell dataset's instance-id masks for the training cases, beside `labelsTr`
/// (named after the `labelsVal-instance-mask` folder of U-Mamba's NeurIPS cell release).
pub const INSTANCE_MASK_FOLDER: &str = "labelsTr-instance-mask";

/// Output location of a converter: `<raw>/DatasetXXX_Name`.
#[derive(Debug, Clone)]
pub struct ConvertTarget {
    pub raw_root: PathBuf,
    pub id: u32,
    pub name: String,
}

impl ConvertTarget {
    pub fn folder(&self) -> PathBuf {
        self.raw_root
            .join(super::paths::dataset_folder_name(self.id, &self.name))
    }
}

/// A dataset being written into a temporary folder `<folder>.tmp`, renamed into place by
/// [`RawWriter::finish`], so a failed conversion leaves no dataset behind.
pub(crate) struct RawWriter {
    pub tmp: PathBuf,
    pub target: PathBuf,
}

impl RawWriter {
    pub fn create(target: &ConvertTarget) -> Result<Self, DatasetError> {
        let folder = target.folder();
        if folder.exists() {
            return Err(DatasetError::Convert(format!(
                "{} already exists; remove it or choose another dataset id",
                folder.display()
            )));
        }
        let tmp = super::tmp_path(&folder);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        }
        for sub in ["imagesTr", "labelsTr"] {
            let dir = tmp.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| DatasetError::io(&dir, e))?;
        }
        Ok(RawWriter {
            tmp,
            target: folder,
        })
    }

    pub fn image_path(&self, case: &str, channel: usize, ending: &str) -> PathBuf {
        self.tmp
            .join("imagesTr")
            .join(format!("{case}_{channel:04}{ending}"))
    }

    pub fn label_path(&self, case: &str, ending: &str) -> PathBuf {
        self.tmp.join("labelsTr").join(format!("{case}{ending}"))
    }

    /// Path of a case's instance-id mask in [`INSTANCE_MASK_FOLDER`], kept beside the
    /// three-class label so that cell F1 can be scored on the training cases too.
    pub fn instance_mask_path(&self, case: &str, ending: &str) -> Result<PathBuf, DatasetError> {
        let folder = self.tmp.join(INSTANCE_MASK_FOLDER);
        std::fs::create_dir_all(&folder).map_err(|e| DatasetError::io(&folder, e))?;
        Ok(folder.join(format!("{case}{ending}")))
    }

    /// Writes `dataset.json` and moves the finished dataset into place.
    pub fn finish(self, json: &DatasetJson) -> Result<PathBuf, DatasetError> {
        json.save(&self.tmp.join("dataset.json"))?;
        std::fs::rename(&self.tmp, &self.target).map_err(|e| DatasetError::io(&self.target, e))?;
        Ok(self.target)
    }

    /// Removes the temporary folder after a failure.
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Runs `body` against a fresh [`RawWriter`], then writes `dataset.json` (its case count
/// filled in from the number of cases `body` returns) or removes everything on error.
pub(crate) fn write_dataset(
    target: &ConvertTarget,
    mut json: DatasetJson,
    body: impl FnOnce(&RawWriter) -> Result<usize, DatasetError>,
) -> Result<PathBuf, DatasetError> {
    let writer = RawWriter::create(target)?;
    match body(&writer) {
        Ok(count) => {
            json.num_training = count;
            json.extra.insert(
                "name".into(),
                serde_json::Value::String(target.name.clone()),
            );
            writer.finish(&json)
        }
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}

/// Builds a `dataset.json` skeleton from channel and label names (labels get 0, 1, ...).
pub(crate) fn dataset_json(channels: &[&str], labels: &[&str], ending: &str) -> DatasetJson {
    DatasetJson {
        channel_names: channels
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c.to_string()))
            .collect(),
        labels: labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.to_string(), LabelValue::Single(i as i64)))
            .collect::<BTreeMap<_, _>>(),
        num_training: 0,
        file_ending: ending.into(),
        regions_class_order: None,
        overwrite_image_reader_writer: None,
        extra: BTreeMap::new(),
    }
}

/// Sorted file names in `dir` whose lower-case name ends with one of `endings`.
pub(crate) fn files_with_endings(
    dir: &Path,
    endings: &[&str],
) -> Result<Vec<PathBuf>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_ascii_lowercase();
            endings.iter().any(|e| name.ends_with(e))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Copies a file byte for byte. The copy is writable even when the source is read-only.
pub(crate) fn copy_file(from: &Path, to: &Path) -> Result<(), DatasetError> {
    std::fs::copy(from, to).map_err(|e| DatasetError::io(from, e))?;
    let mut permissions = std::fs::metadata(to)
        .map_err(|e| DatasetError::io(to, e))?
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(to, permissions).map_err(|e| DatasetError::io(to, e))
}

/// Writes an RGB or grey image as an 8-bit PNG, from planar channels holding 0..=255.
pub(crate) fn write_image_png(path: &Path, image: &super::Image) -> Result<(), DatasetError> {
    let [_, h, w] = image.shape;
    let channels = if image.channels >= 3 { 3 } else { 1 };
    let n = h * w;
    let mut pixels = vec![0u8; n * channels];
    for i in 0..n {
        for c in 0..channels {
            pixels[i * channels + c] = image.data[c * n + i].round().clamp(0.0, 255.0) as u8;
        }
    }
    super::io::write_png_u8(path, &pixels, channels, h, w)
}
