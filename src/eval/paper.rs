//! The DSC and NSD of the Swin-UMamba paper (arXiv 2402.03302), as its official evaluation
//! scripts compute them
//! (`evaluation/abdomen_{DSC,NSD}_Eval.py` and `evaluation/endoscopy_{DSC,NSD}_Eval.py` at
//! commit 2c1f72e of github.com/JiarunLiu/Swin-UMamba).
//!
//! Two protocols exist, chosen by the tolerance file:
//! - `volume` (abdomen): a fixed list of labels, each with its own tolerance in mm and the
//!   header spacing. A label absent from both masks scores 1, and a label absent from the
//!   reference but predicted scores 0. Some labels are scored only on the reference's
//!   slice range (see [`SliceRange`]). Every value is rounded to 4 decimals.
//! - `image` (endoscopy): the labels are the union of the labels in both masks except
//!   each mask's smallest value, one tolerance in pixels with unit spacing, and the image
//!   score is the mean over those labels, rounded to 4 decimals.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::labels::LabelMap;
use super::surface::{dice_coefficient, surface_dice_at_tolerance, surface_distances};
use super::EvalError;

/// The tolerance file of the official abdomen (AMOS MRI) evaluation.
pub const AMOS_MRI_TOLERANCES: &str = include_str!("tolerances/amos_mri.yaml");
/// Tolerances for the CHAOS T2 stand-in: its four organs with their AMOS tolerances.
pub const CHAOS_T2_TOLERANCES: &str = include_str!("tolerances/chaos_t2.yaml");
/// The tolerance file of the official endoscopy evaluation.
pub const ENDOSCOPY_TOLERANCES: &str = include_str!("tolerances/endoscopy.yaml");

/// Decimals the official scripts round each reported value to, with numpy's rounding.
pub const OFFICIAL_ROUND_DECIMALS: i32 = 4;

/// Protocol of the official scripts: which labels are scored and how images are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Volume,
    Image,
}

/// One scored label of the volume protocol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelTolerance {
    pub label: i32,
    pub name: String,
    /// Surface Dice tolerance, in the unit of the spacing (mm with the header spacing).
    pub tolerance: f64,
    /// Score only the reference's slice range along the third axis (see [`SliceRange`]).
    #[serde(default)]
    pub reference_slice_range: bool,
}

/// Voxel spacing used for surface distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpacingSource {
    /// The reference file's header (NIfTI pixdim).
    Header,
    /// Unit spacing, so tolerances are in pixels.
    Pixel,
}

/// The content of a tolerance YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceConfig {
    pub protocol: Protocol,
    pub spacing: SpacingSource,
    /// Labels of the volume protocol, scored in this order.
    #[serde(default)]
    pub labels: Vec<LabelTolerance>,
    /// Tolerance of the image protocol, for every label.
    #[serde(default)]
    pub tolerance: Option<f64>,
}

impl ToleranceConfig {
    /// Parses and checks a tolerance file's text; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &Path) -> Result<Self, EvalError> {
        let config: ToleranceConfig =
            serde_yaml_ng::from_str(text).map_err(|e| EvalError::InvalidTolerances {
                path: source.to_path_buf(),
                message: e.to_string(),
            })?;
        let invalid = |message: String| EvalError::InvalidTolerances {
            path: source.to_path_buf(),
            message,
        };
        match config.protocol {
            Protocol::Volume if config.labels.is_empty() => {
                return Err(invalid(
                    "protocol `volume` needs a non-empty `labels` list".into(),
                ))
            }
            Protocol::Image if config.tolerance.is_none() => {
                return Err(invalid(
                    "protocol `image` needs `tolerance` (in pixels)".into(),
                ))
            }
            _ => {}
        }
        for entry in &config.labels {
            if entry.tolerance.is_nan() || entry.tolerance < 0.0 {
                return Err(invalid(format!(
                    "label {} has tolerance {}; use a non-negative number",
                    entry.label, entry.tolerance
                )));
            }
        }
        Ok(config)
    }

    /// Reads a tolerance file, or one of the built-in names `amos_mri`, `chaos_t2` and
    /// `endoscopy`.
    pub fn load(name_or_path: &str) -> Result<Self, EvalError> {
        match name_or_path {
            "amos_mri" => Self::from_yaml(AMOS_MRI_TOLERANCES, Path::new("amos_mri")),
            "chaos_t2" => Self::from_yaml(CHAOS_T2_TOLERANCES, Path::new("chaos_t2")),
            "endoscopy" => Self::from_yaml(ENDOSCOPY_TOLERANCES, Path::new("endoscopy")),
            path => {
                let path = Path::new(path);
                let text = std::fs::read_to_string(path).map_err(|e| EvalError::Read {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                Self::from_yaml(&text, path)
            }
        }
    }
}

/// Slices along the third axis that score a label marked `reference_slice_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SliceRange {
    /// The official scripts' `[z_min, z_max)` of the reference: the last labelled slice and
    /// every slice outside the reference's extent are left out.
    Official,
    /// `[z_min, z_max]`: the whole labelled extent of the reference.
    Inclusive,
    /// Every slice, like the other labels.
    All,
}

/// Options of Swin-UMamba's DSC and NSD beyond the tolerance file.
#[derive(Debug, Clone, Copy)]
pub struct PaperOptions {
    pub slice_range: SliceRange,
    /// Round each reported value as the official scripts do.
    pub round: bool,
}

impl Default for PaperOptions {
    fn default() -> Self {
        PaperOptions {
            slice_range: SliceRange::Official,
            round: true,
        }
    }
}

/// DSC and NSD of one label in one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperScore {
    pub dsc: f64,
    pub nsd: f64,
}

/// DSC and NSD of one case: per label, and the image means of the image protocol.
#[derive(Debug, Clone, Default)]
pub struct PaperCase {
    pub per_label: BTreeMap<i32, PaperScore>,
    /// Image protocol only: the mean over the scored labels (NaN when none).
    pub image_mean: Option<PaperScore>,
}

/// Rounds as `np.round(x, decimals)` does: scale, round half to even, unscale.
pub fn numpy_round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round_ties_even() / scale
}

fn maybe_round(value: f64, options: &PaperOptions) -> f64 {
    if options.round {
        numpy_round(value, OFFICIAL_ROUND_DECIMALS)
    } else {
        value
    }
}

/// Casts label values as `np.uint8` does (modulo 256).
fn as_u8(values: &[i32]) -> Vec<u8> {
    values.iter().map(|&v| v as u8).collect()
}

/// Scores one case with the protocol of `config`.
pub fn score_case(
    reference: &LabelMap,
    prediction: &LabelMap,
    config: &ToleranceConfig,
    options: &PaperOptions,
) -> PaperCase {
    let spacing = match config.spacing {
        SpacingSource::Header => reference.spacing,
        SpacingSource::Pixel => [1.0; 3],
    };
    let gt = as_u8(&reference.data);
    let seg = as_u8(&prediction.data);
    match config.protocol {
        Protocol::Volume => score_volume(&gt, &seg, reference.shape, spacing, config, options),
        Protocol::Image => {
            let tolerance = config.tolerance.unwrap_or_default();
            score_image(&gt, &seg, reference.shape, spacing, tolerance, options)
        }
    }
}

fn score_volume(
    gt: &[u8],
    seg: &[u8],
    shape: [usize; 3],
    spacing: [f64; 3],
    config: &ToleranceConfig,
    options: &PaperOptions,
) -> PaperCase {
    let mut case = PaperCase::default();
    for entry in &config.labels {
        let label = entry.label as u8;
        let in_gt = gt.iter().filter(|&&v| v == label).count();
        let in_seg = seg.iter().filter(|&&v| v == label).count();
        let score = if in_gt == 0 && in_seg == 0 {
            PaperScore { dsc: 1.0, nsd: 1.0 }
        } else if in_gt == 0 {
            PaperScore { dsc: 0.0, nsd: 0.0 }
        } else {
            let (z_start, z_end) = if entry.reference_slice_range {
                slice_range(gt, label, shape, options.slice_range)
            } else {
                (0, shape[2])
            };
            let (mask_gt, mask_seg, sub_shape) = crop_slices(gt, seg, label, shape, z_start, z_end);
            let distances = surface_distances(&mask_gt, &mask_seg, sub_shape, spacing);
            PaperScore {
                dsc: dice_coefficient(&mask_gt, &mask_seg),
                nsd: surface_dice_at_tolerance(&distances, entry.tolerance),
            }
        };
        let rounded = PaperScore {
            dsc: maybe_round(score.dsc, options),
            nsd: maybe_round(score.nsd, options),
        };
        case.per_label.insert(entry.label, rounded);
    }
    case
}

/// Returns the `[start, end)` slices along the third axis that score `label`.
fn slice_range(gt: &[u8], label: u8, shape: [usize; 3], mode: SliceRange) -> (usize, usize) {
    let mut z_min = usize::MAX;
    let mut z_max = 0usize;
    for (index, &v) in gt.iter().enumerate() {
        if v == label {
            let z = index % shape[2];
            z_min = z_min.min(z);
            z_max = z_max.max(z);
        }
    }
    match mode {
        SliceRange::Official => (z_min, z_max),
        SliceRange::Inclusive => (z_min, z_max + 1),
        SliceRange::All => (0, shape[2]),
    }
}

/// Returns the masks of `label` restricted to slices `[z_start, z_end)`, and their shape.
fn crop_slices(
    gt: &[u8],
    seg: &[u8],
    label: u8,
    shape: [usize; 3],
    z_start: usize,
    z_end: usize,
) -> (Vec<bool>, Vec<bool>, [usize; 3]) {
    let depth = z_end - z_start;
    let mut mask_gt = Vec::with_capacity(shape[0] * shape[1] * depth);
    let mut mask_seg = Vec::with_capacity(shape[0] * shape[1] * depth);
    for row in 0..shape[0] * shape[1] {
        let base = row * shape[2];
        for z in z_start..z_end {
            mask_gt.push(gt[base + z] == label);
            mask_seg.push(seg[base + z] == label);
        }
    }
    (mask_gt, mask_seg, [shape[0], shape[1], depth])
}

fn score_image(
    gt: &[u8],
    seg: &[u8],
    shape: [usize; 3],
    spacing: [f64; 3],
    tolerance: f64,
    options: &PaperOptions,
) -> PaperCase {
    let mut labels: Vec<u8> = Vec::new();
    for values in [gt, seg] {
        let mut present = [false; 256];
        for &v in values {
            present[v as usize] = true;
        }
        // `np.unique(x)[1:]`: every value except the smallest, whichever it is.
        labels.extend(
            (0..256usize)
                .filter(|&v| present[v])
                .skip(1)
                .map(|v| v as u8),
        );
    }
    labels.sort_unstable();
    labels.dedup();

    let mut case = PaperCase::default();
    for &label in &labels {
        let mask_gt: Vec<bool> = gt.iter().map(|&v| v == label).collect();
        let mask_seg: Vec<bool> = seg.iter().map(|&v| v == label).collect();
        let score = if !mask_gt.iter().any(|&m| m) {
            PaperScore { dsc: 0.0, nsd: 0.0 }
        } else {
            let distances = surface_distances(&mask_gt, &mask_seg, shape, spacing);
            PaperScore {
                dsc: dice_coefficient(&mask_gt, &mask_seg),
                nsd: surface_dice_at_tolerance(&distances, tolerance),
            }
        };
        case.per_label.insert(i32::from(label), score);
    }
    // NOTE: the official scripts stop on an assertion when neither mask has a label. Here
    // the image scores NaN instead, and the means leave it out.
    let count = case.per_label.len() as f64;
    let dsc = case.per_label.values().map(|s| s.dsc).sum::<f64>() / count;
    let nsd = case.per_label.values().map(|s| s.nsd).sum::<f64>() / count;
    case.image_mean = Some(PaperScore {
        dsc: maybe_round(dsc, options),
        nsd: maybe_round(nsd, options),
    });
    case
}
