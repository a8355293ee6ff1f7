//! `dataset.json` of an nnU-Net v2 raw dataset.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DatasetError;

/// A label's value: one integer, or a list of integers for a region (nnU-Net's
/// region-based training, where a region is the union of several label values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Single(i64),
    Region(Vec<i64>),
}

/// The contents of `dataset.json`, with nnU-Net v2's key names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetJson {
    /// Channel index (as a string, "0", "1", ...) to channel name. The name selects the
    /// normalisation: "CT" gives CT normalisation, "noNorm", "rescale_to_0_1" and
    /// "rgb_to_0_1" their schemes, anything else z-scoring.
    pub channel_names: BTreeMap<String, String>,
    /// Label name to value; must contain "background": 0. A label named "ignore" marks
    /// voxels that the loss skips.
    pub labels: BTreeMap<String, LabelValue>,
    #[serde(rename = "numTraining")]
    pub num_training: usize,
    /// File ending of every image and label, with the dot: ".png", ".nii.gz".
    pub file_ending: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions_class_order: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite_image_reader_writer: Option<String>,
    /// Any other keys (name, description, licence, ...), kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl DatasetJson {
    /// Reads and validates `dataset.json`.
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
        let json: DatasetJson = serde_json::from_str(&text).map_err(|e| DatasetError::Json {
            path: path.into(),
            message: e.to_string(),
        })?;
        json.validate(path)?;
        Ok(json)
    }

    /// Writes `dataset.json` through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), DatasetError> {
        let text = serde_json::to_string_pretty(self).expect("dataset.json serialises");
        crate::dataset::write_atomic(path, text.as_bytes())
    }

    fn validate(&self, path: &Path) -> Result<(), DatasetError> {
        let fail = |message: String| DatasetError::Json {
            path: path.into(),
            message,
        };
        if self.channel_names.is_empty() {
            return Err(fail(
                "channel_names is empty; add e.g. {\"0\": \"MRI\"}".into(),
            ));
        }
        for i in 0..self.channel_names.len() {
            if !self.channel_names.contains_key(&i.to_string()) {
                return Err(fail(format!(
                    "channel_names must have the keys \"0\"..\"{}\"; key \"{i}\" is missing",
                    self.channel_names.len() - 1
                )));
            }
        }
        match self.labels.get("background") {
            Some(LabelValue::Single(0)) => {}
            other => {
                return Err(fail(format!(
                    "labels must contain \"background\": 0, found {other:?}"
                )))
            }
        }
        if !self.file_ending.starts_with('.') {
            return Err(fail(format!(
                "file_ending {:?} must start with a dot, e.g. \".png\"",
                self.file_ending
            )));
        }
        Ok(())
    }

    /// Number of input channels.
    pub fn num_channels(&self) -> usize {
        self.channel_names.len()
    }

    /// Channel names in channel order.
    pub fn channel_names_ordered(&self) -> Vec<String> {
        (0..self.num_channels())
            .map(|i| self.channel_names[&i.to_string()].clone())
            .collect()
    }

    /// The value of the label named "ignore", if any.
    pub fn ignore_label(&self) -> Option<i64> {
        match self.labels.get("ignore") {
            Some(LabelValue::Single(v)) => Some(*v),
            _ => None,
        }
    }

    /// All label values (background and ignore included), sorted.
    pub fn all_label_values(&self) -> Vec<i64> {
        let mut values: Vec<i64> = self
            .labels
            .values()
            .flat_map(|v| match v {
                LabelValue::Single(x) => vec![*x],
                LabelValue::Region(xs) => xs.clone(),
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// Foreground labels as nnU-Net's LabelManager lists them: sorted values without
    /// background (0) and without the ignore label.
    pub fn foreground_labels(&self) -> Vec<i64> {
        let ignore = self.ignore_label();
        self.all_label_values()
            .into_iter()
            .filter(|&v| v != 0 && Some(v) != ignore)
            .collect()
    }

    /// Whether labels define regions (lists of values) instead of single classes.
    pub fn has_regions(&self) -> bool {
        self.labels
            .values()
            .any(|v| matches!(v, LabelValue::Region(_)))
    }
}
