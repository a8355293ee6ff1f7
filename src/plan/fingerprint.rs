//! The dataset fingerprint (`dataset_fingerprint.json`), as nnU-Net v2's
//! `DatasetFingerprintExtractor` computes it. Per case it records the spacing, the shape
//! after cropping to the nonzero region and the relative size of that crop. Per channel it
//! records statistics of foreground intensities, sampled with replacement.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::PlanError;
use crate::dataset::{read_case_files, CaseFiles, RawDataset};
use crate::preprocess::crop::crop_to_nonzero;
use crate::preprocess::random::RandomState;

/// Foreground voxels sampled for intensity statistics over the whole dataset, split evenly
/// over cases (nnU-Net's `num_foreground_voxels_for_intensitystats = 10e7`).
pub const FOREGROUND_SAMPLES_TOTAL: f64 = 10e7;

/// Seed of the per-case foreground sampling (nnU-Net's `collect_foreground_intensities`).
pub const FOREGROUND_SAMPLING_SEED: u32 = 1234;

/// Intensity statistics of one channel's foreground samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensityProperties {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub percentile_99_5: f64,
    pub percentile_00_5: f64,
}

/// `dataset_fingerprint.json`; spacings and shapes are (z, y, x), cases in sorted id order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fingerprint {
    pub spacings: Vec<Vec<f64>>,
    pub shapes_after_crop: Vec<Vec<usize>>,
    pub foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
    pub median_relative_size_after_cropping: f64,
}

impl Fingerprint {
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
            path: path.into(),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| PlanError::Json {
            path: path.into(),
            message: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        crate::dataset::write_atomic(path, super::to_json_pretty(self).as_bytes())?;
        Ok(())
    }
}

/// Per-case result: sampled foreground values per channel as (value, count) pairs.
struct CaseAnalysis {
    spacing: Vec<f64>,
    shape_after_crop: Vec<usize>,
    relative_size: f64,
    samples: Vec<Vec<(f32, u64)>>,
}

fn analyze_case(case: &CaseFiles, num_samples: usize) -> Result<CaseAnalysis, PlanError> {
    let raw = read_case_files(case)?;
    let image = &raw.image;
    let label = raw.label.as_ref().map(|l| l.data.as_slice());
    let cropped = crop_to_nonzero(&image.data, image.channels, image.shape, label);
    let n: usize = cropped.shape.iter().product();
    let foreground: Vec<usize> = (0..n).filter(|&i| cropped.seg[i] > 0).collect();
    let mut rs = RandomState::new(FOREGROUND_SAMPLING_SEED);
    let mut samples = Vec::with_capacity(image.channels);
    for c in 0..image.channels {
        if foreground.is_empty() {
            samples.push(Vec::new());
            continue;
        }
        // Count how often each foreground voxel is drawn instead of storing the draws.
        let mut counts = vec![0u32; foreground.len()];
        for _ in 0..num_samples {
            counts[rs.randint(foreground.len() as u64) as usize] += 1;
        }
        let channel = &cropped.data[c * n..(c + 1) * n];
        let mut by_value: BTreeMap<u32, u64> = BTreeMap::new();
        for (k, &count) in counts.iter().enumerate() {
            if count > 0 {
                *by_value
                    .entry(channel[foreground[k]].to_bits())
                    .or_default() += count as u64;
            }
        }
        samples.push(
            by_value
                .into_iter()
                .map(|(bits, c)| (f32::from_bits(bits), c))
                .collect(),
        );
    }
    let before: usize = image.shape.iter().product();
    Ok(CaseAnalysis {
        spacing: image.geometry.spacing.to_vec(),
        shape_after_crop: cropped.shape.to_vec(),
        relative_size: n as f64 / before as f64,
        samples,
    })
}

/// Statistics of a multiset given as (value, count) pairs; percentiles interpolate
/// linearly between ranks, as `numpy.percentile`.
fn statistics(pairs: &mut [(f32, u64)]) -> IntensityProperties {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = pairs.iter().map(|p| p.1).sum();
    if total == 0 {
        let nan = f64::NAN;
        return IntensityProperties {
            mean: nan,
            median: nan,
            std: nan,
            min: nan,
            max: nan,
            percentile_99_5: nan,
            percentile_00_5: nan,
        };
    }
    let mean = pairs.iter().map(|&(v, c)| v as f64 * c as f64).sum::<f64>() / total as f64;
    let var = pairs
        .iter()
        .map(|&(v, c)| (v as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / total as f64;
    let at_rank = |rank: u64| -> f64 {
        let mut seen = 0u64;
        for &(v, c) in pairs.iter() {
            seen += c;
            if rank < seen {
                return v as f64;
            }
        }
        pairs.last().expect("non-empty").0 as f64
    };
    let percentile = |q: f64| -> f64 {
        let pos = q / 100.0 * (total - 1) as f64;
        let lo = pos.floor();
        let frac = pos - lo;
        let a = at_rank(lo as u64);
        let b = at_rank(pos.ceil() as u64);
        a + (b - a) * frac
    };
    IntensityProperties {
        mean,
        median: percentile(50.0),
        std: var.sqrt(),
        min: pairs[0].0 as f64,
        max: pairs[pairs.len() - 1].0 as f64,
        percentile_99_5: percentile(99.5),
        percentile_00_5: percentile(0.5),
    }
}

/// Computes the fingerprint of a raw dataset, cases in parallel. `samples_total` foreground
/// intensities are drawn over the whole dataset; [`FOREGROUND_SAMPLES_TOTAL`] reproduces
/// nnU-Net's statistics exactly, fewer draws trade that for speed.
pub fn extract_fingerprint(
    dataset: &RawDataset,
    samples_total: f64,
) -> Result<Fingerprint, PlanError> {
    let cases = dataset.training_cases()?;
    if cases.is_empty() {
        return Err(crate::dataset::DatasetError::Integrity {
            problems: vec![format!(
                "{}: no training cases in imagesTr",
                dataset.folder.display()
            )],
        }
        .into());
    }
    let num_samples = (samples_total / cases.len() as f64).floor() as usize;
    let results: Vec<CaseAnalysis> = cases
        .par_iter()
        .map(|c| analyze_case(c, num_samples))
        .collect::<Result<_, _>>()?;
    let channels = dataset.json.num_channels();
    let mut properties = BTreeMap::new();
    for c in 0..channels {
        let mut merged: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &results {
            for &(v, count) in r.samples.get(c).map(|s| s.as_slice()).unwrap_or(&[]) {
                *merged.entry(v.to_bits()).or_default() += count;
            }
        }
        let mut pairs: Vec<(f32, u64)> = merged
            .into_iter()
            .map(|(b, c)| (f32::from_bits(b), c))
            .collect();
        properties.insert(c.to_string(), statistics(&mut pairs));
    }
    let mut relative: Vec<f64> = results.iter().map(|r| r.relative_size).collect();
    Ok(Fingerprint {
        spacings: results.iter().map(|r| r.spacing.clone()).collect(),
        shapes_after_crop: results.iter().map(|r| r.shape_after_crop.clone()).collect(),
        foreground_intensity_properties_per_channel: properties,
        median_relative_size_after_cropping: median(&mut relative),
    })
}

/// Median as `numpy.median` (mean of the two middle values for an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
