//! Dataset integrity checks, run by `plan --verify-dataset-integrity` before any output is
//! written. Every problem names the file, the value found and the fix; all problems of
//! all cases are reported together.

use std::collections::BTreeSet;

use rayon::prelude::*;

use super::{list_cases, read_case_files, CaseFiles, DatasetError, FileFormat, RawDataset};

/// Folds of nnU-Net's cross-validation; a dataset needs at least this many cases.
pub const MIN_CASES_FOR_FOLDS: usize = 5;

/// Relative tolerance when comparing image and label spacing.
const SPACING_TOLERANCE: f64 = 1e-4;

/// Checks the whole dataset and returns every problem found, or Ok.
pub fn verify_dataset_integrity(dataset: &RawDataset) -> Result<(), DatasetError> {
    let mut problems = Vec::new();
    let json = &dataset.json;
    let json_path = dataset.folder.join("dataset.json");
    if FileFormat::from_ending(&json.file_ending).is_none() {
        problems.push(format!(
            "{}: unknown file_ending {:?}; supported: .png, .bmp, .tif, .tiff, .jpg, .jpeg, .nii, .nii.gz",
            json_path.display(),
            json.file_ending
        ));
        return Err(DatasetError::Integrity { problems });
    }
    check_label_values_consecutive(json, &json_path, &mut problems);
    let (stray, unsuffixed) = stray_files(dataset);
    problems.extend(stray);
    let cases = list_cases(&dataset.folder.join("imagesTr"), &json.file_ending)?;
    if cases.len() != json.num_training && cases.len() + unsuffixed == json.num_training {
        // The stray-file problems above already name each file without a channel suffix,
        // and renaming them makes the count right, so numTraining itself is not wrong.
        problems.push(format!(
            "{}: numTraining is {} but imagesTr holds {} cases with a channel suffix; the {} \
             image(s) listed above lack `_XXXX` and are not counted until renamed",
            json_path.display(),
            json.num_training,
            cases.len(),
            unsuffixed
        ));
    } else if cases.len() != json.num_training {
        problems.push(format!(
            "{}: numTraining is {} but imagesTr holds {} cases; set numTraining to {}",
            json_path.display(),
            json.num_training,
            cases.len(),
            cases.len()
        ));
    }
    if cases.len() < MIN_CASES_FOR_FOLDS {
        problems.push(format!(
            "{}: {} cases, fewer than the {MIN_CASES_FOR_FOLDS} cross-validation folds; add cases \
             or provide splits_final.json",
            dataset.folder.display(),
            cases.len()
        ));
    }
    let cases: Vec<CaseFiles> = cases
        .into_iter()
        .map(|mut c| {
            c.label = Some(
                dataset
                    .folder
                    .join("labelsTr")
                    .join(format!("{}{}", c.id, json.file_ending)),
            );
            c
        })
        .collect();
    let results: Vec<(Vec<String>, bool)> =
        cases.par_iter().map(|c| check_case(dataset, c)).collect();
    let mut any_foreground = false;
    for (case_problems, has_foreground) in results {
        problems.extend(case_problems);
        any_foreground |= has_foreground;
    }
    if !cases.is_empty() && !any_foreground {
        problems.push(format!(
            "{}: no case has any foreground label; check that the label files hold class values, \
             not an empty mask",
            dataset.folder.join("labelsTr").display()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DatasetError::Integrity { problems })
    }
}

/// nnU-Net requires label values 0, 1, ..., n-1 (an ignore label, if any, the highest).
fn check_label_values_consecutive(
    json: &super::DatasetJson,
    path: &std::path::Path,
    problems: &mut Vec<String>,
) {
    if json.has_regions() {
        return;
    }
    let values = json.all_label_values();
    let expected: Vec<i64> = (0..values.len() as i64).collect();
    if values != expected {
        problems.push(format!(
            "{}: label values {values:?} are not consecutive; renumber them to {expected:?}",
            path.display()
        ));
    }
    if let Some(ignore) = json.ignore_label() {
        if Some(&ignore) != values.last() {
            problems.push(format!(
                "{}: the ignore label {ignore} must be the highest label value",
                path.display()
            ));
        }
    }
}

/// Returns the problems of files in imagesTr and labelsTr whose names do not fit the
/// dataset's naming, and how many of the imagesTr files have the right ending but no
/// `_XXXX` channel suffix (`list_cases` does not count them as cases).
fn stray_files(dataset: &RawDataset) -> (Vec<String>, usize) {
    let ending = &dataset.json.file_ending;
    let mut problems = Vec::new();
    let mut unsuffixed = 0;
    for (sub, needs_channel) in [("imagesTr", true), ("labelsTr", false)] {
        let Ok(entries) = std::fs::read_dir(dataset.folder.join(sub)) else {
            problems.push(format!(
                "{}: folder missing",
                dataset.folder.join(sub).display()
            ));
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().to_string();
            let fits = match name.strip_suffix(ending.as_str()) {
                Some(stem) if needs_channel && super::split_channel_suffix(stem).is_none() => {
                    unsuffixed += 1;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if !fits {
                let expected = if needs_channel {
                    format!("CASE_XXXX{ending}")
                } else {
                    format!("CASE{ending}")
                };
                problems.push(format!(
                    "{}: name does not match {expected} (file_ending in dataset.json is {ending:?}); \
                     rename or remove it",
                    entry.path().display()
                ));
            }
        }
    }
    (problems, unsuffixed)
}

/// Checks one case; returns its problems and whether its label has foreground.
fn check_case(dataset: &RawDataset, case: &CaseFiles) -> (Vec<String>, bool) {
    let json = &dataset.json;
    let mut problems = Vec::new();
    let first = &case.images[0];
    let channel_ids: Vec<usize> = case
        .images
        .iter()
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix(json.file_ending.as_str())?;
            super::split_channel_suffix(name).map(|(_, c)| c)
        })
        .collect();
    let expected_ids: Vec<usize> = (0..channel_ids.len()).collect();
    if channel_ids != expected_ids {
        problems.push(format!(
            "{}: case {} has channel files {:?}; channel files must be numbered _0000, _0001, ... \
             without gaps",
            first.parent().unwrap_or(first).display(),
            case.id,
            channel_ids
        ));
        return (problems, false);
    }
    let label_path = case.label.clone().expect("label path set");
    if !label_path.exists() {
        problems.push(format!(
            "{}: label file missing for case {}",
            label_path.display(),
            case.id
        ));
        return (problems, false);
    }
    let raw = match read_case_files(case) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(format!("{e}"));
            return (problems, false);
        }
    };
    let image = &raw.image;
    if image.channels != json.num_channels() {
        problems.push(format!(
            "{}: case {} has {} channels but dataset.json channel_names lists {}; add the missing \
             _XXXX files or fix channel_names",
            first.display(),
            case.id,
            image.channels,
            json.num_channels()
        ));
    }
    let bad = image.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        problems.push(format!(
            "{}: {bad} NaN or infinite intensities; replace them (e.g. with 0) before planning",
            first.display()
        ));
    }
    let label = raw.label.as_ref().expect("label exists");
    let has_foreground = check_label(json, &label_path, label, image, &mut problems);
    (problems, has_foreground)
}

/// Checks a label against its image and `dataset.json`; returns whether it has foreground.
fn check_label(
    json: &super::DatasetJson,
    label_path: &std::path::Path,
    label: &super::Image,
    image: &super::Image,
    problems: &mut Vec<String>,
) -> bool {
    let label_format = FileFormat::from_path(label_path);
    if label.channels != 1 {
        problems.push(format!(
            "{}: label image has {} channels (RGB or RGBA); save labels as single-channel images \
             holding class values",
            label_path.display(),
            label.channels
        ));
    }
    if label.shape != image.shape {
        problems.push(format!(
            "{}: label shape {:?} (z, y, x) differs from the image shape {:?}; labels must match \
             their image voxel for voxel",
            label_path.display(),
            label.shape,
            image.shape
        ));
    }
    let (si, sl) = (image.geometry.spacing, label.geometry.spacing);
    let spacing_differs = si
        .iter()
        .zip(sl.iter())
        .any(|(a, b)| (a - b).abs() > SPACING_TOLERANCE * a.abs().max(1.0));
    let affine_differs = match (&image.geometry.affine, &label.geometry.affine) {
        (Some(a), Some(b)) => a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .any(|(x, y)| (x - y).abs() > 1e-3),
        _ => false,
    };
    if spacing_differs || affine_differs {
        problems.push(format!(
            "{}: label geometry (spacing {:?}) differs from the image's (spacing {:?}) or its \
             orientation/origin differs; resample or re-save the label in the image's geometry",
            label_path.display(),
            sl,
            si
        ));
    }
    let known: BTreeSet<i64> = json.all_label_values().into_iter().collect();
    let values = distinct_values(label.channel(0));
    let non_integer = values.iter().filter(|v| v.fract() != 0.0).count();
    let found: BTreeSet<i64> = values.iter().map(|&v| v as i64).collect();
    let unknown: Vec<i64> = found.difference(&known).copied().collect();
    if label_format == Some(FileFormat::Jpeg) {
        problems.push(format!(
            "{}: label saved as JPEG, which is lossy ({} distinct values found); save labels as PNG, \
             or convert with a threshold (`convert generic --mask-rule t:127`)",
            label_path.display(),
            found.len()
        ));
    } else if non_integer > 0 {
        problems.push(format!(
            "{}: {non_integer} non-integer label values; labels must hold integer class values",
            label_path.display()
        ));
    } else if !unknown.is_empty() {
        let hint = if found.iter().all(|v| *v == 0 || *v == 255) {
            "the mask looks saved as 0/255; map 255 to class 1 (e.g. `convert generic --mask-rule 0:0,255:1`)"
        } else if unknown.len() > 8 {
            "many stray values suggest a lossy or resampled mask; re-export it losslessly or threshold it"
        } else {
            "add these labels to dataset.json or fix the label file"
        };
        let shown: Vec<i64> = unknown.iter().take(10).copied().collect();
        problems.push(format!(
            "{}: label values {shown:?}{} are not in dataset.json labels {:?}; {hint}",
            label_path.display(),
            if unknown.len() > 10 {
                " (and more)"
            } else {
                ""
            },
            known
        ));
    }
    let ignore = json.ignore_label();
    let has_foreground = found.iter().any(|&v| v > 0 && Some(v) != ignore);
    has_foreground
}

fn distinct_values(values: &[f32]) -> Vec<f32> {
    let mut set: BTreeSet<u32> = BTreeSet::new();
    for v in values {
        set.insert(v.to_bits());
    }
    set.into_iter().map(f32::from_bits).collect()
}
