//! CHAOS and AMOS (NIfTI volumes, copied byte for byte) and EndoVis 2017 (frames with
//! one mask folder per instrument).

use std::path::{Path, PathBuf};

use super::{
    copy_file, dataset_json, files_with_endings, write_dataset, write_image_png, ConvertTarget,
};
use crate::dataset::io::write_label_png;
use crate::dataset::{read_image, DatasetError, Image};

const CHAOS_LABELS: &[&str] = &[
    "background",
    "liver",
    "right_kidney",
    "left_kidney",
    "spleen",
];

/// Converts the CHAOS T2 layout (`image_<pid>.nii.gz`, `label_<pid>.nii.gz`) by copying
/// each pair to `chaos_<pid:03>`. `limit` keeps the first N patients by numeric id.
pub fn convert_chaos(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut ids: Vec<u32> = files_with_endings(source, &[".nii.gz"])?
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            name.strip_prefix("image_")?
                .strip_suffix(".nii.gz")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    if let Some(limit) = limit {
        ids.truncate(limit);
    }
    let json = dataset_json(&["MRI"], CHAOS_LABELS, ".nii.gz");
    write_dataset(target, json, |w| {
        for id in &ids {
            let case = format!("chaos_{id:03}");
            copy_file(
                &source.join(format!("image_{id}.nii.gz")),
                &w.image_path(&case, 0, ".nii.gz"),
            )?;
            copy_file(
                &source.join(format!("label_{id}.nii.gz")),
                &w.label_path(&case, ".nii.gz"),
            )?;
        }
        Ok(ids.len())
    })
}

/// AMOS 2022 organ names for labels 1..=13, the organs annotated in its MRI cases
/// (labels 14 bladder and 15 prostate/uterus occur only in CT cases).
const AMOS_MRI_LABELS: &[&str] = &[
    "background",
    "spleen",
    "right_kidney",
    "left_kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "postcava",
    "pancreas",
    "right_adrenal_gland",
    "left_adrenal_gland",
    "duodenum",
];

/// First case number of the MRI cases in AMOS 2022 (CT cases are numbered below 500).
pub const AMOS_FIRST_MRI_CASE: u32 = 500;

/// Converts the AMOS 2022 release (`imagesTr`, `labelsTr`, `imagesVa`, `labelsVa` with
/// `amos_XXXX.nii.gz`) into a dataset of its labelled MRI cases (number ≥ 500), copied
/// byte for byte.
pub fn convert_amos(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut cases = Vec::new();
    for (images, labels) in [("imagesTr", "labelsTr"), ("imagesVa", "labelsVa")] {
        let dir = source.join(images);
        if !dir.exists() {
            continue;
        }
        for path in files_with_endings(&dir, &[".nii.gz"])? {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let Some(number) = name
                .strip_prefix("amos_")
                .and_then(|s| s.strip_suffix(".nii.gz"))
            else {
                continue;
            };
            if number
                .parse::<u32>()
                .is_ok_and(|n| n >= AMOS_FIRST_MRI_CASE)
            {
                cases.push((
                    format!("amos_{number}"),
                    path.clone(),
                    source.join(labels).join(&name),
                ));
            }
        }
    }
    cases.sort();
    if let Some(limit) = limit {
        cases.truncate(limit);
    }
    let json = dataset_json(&["MRI"], AMOS_MRI_LABELS, ".nii.gz");
    write_dataset(target, json, |w| {
        for (case, image, label) in &cases {
            copy_file(image, &w.image_path(case, 0, ".nii.gz"))?;
            copy_file(label, &w.label_path(case, ".nii.gz"))?;
        }
        Ok(cases.len())
    })
}

/// EndoVis 2017 instrument types, classes 1..=7, and the folder-name fragment that
/// identifies each in `ground_truth/<Instrument>_labels`.
const ENDOVIS_TYPES: &[(&str, &str)] = &[
    ("Bipolar_Forceps", "bipolar_forceps"),
    ("Prograsp_Forceps", "prograsp_forceps"),
    ("Needle_Driver", "large_needle_driver"),
    ("Vessel_Sealer", "vessel_sealer"),
    ("Grasping_Retractor", "grasping_retractor"),
    ("Curved_Scissors", "monopolar_curved_scissors"),
    ("Other", "other"),
];

/// Crop of the 1920×1080 EndoVis 2017 frames to the 1280×1024 image area inside the black
/// border: rows 28..1052, columns 320..1600, the crop the challenge's own evaluation uses.
pub const ENDOVIS_CROP: (usize, usize, usize, usize) = (28, 320, 1024, 1280);

fn endovis_class(folder: &str) -> Option<u16> {
    let folder = folder.replace("Ultrasound_Probe", "Other");
    ENDOVIS_TYPES
        .iter()
        .position(|(key, _)| folder.contains(key))
        .map(|i| i as u16 + 1)
}

fn crop(image: &Image) -> Image {
    let (y0, x0, h, w) = ENDOVIS_CROP;
    let [_, height, width] = image.shape;
    if height < y0 + h || width < x0 + w {
        return image.clone();
    }
    let mut data = Vec::with_capacity(image.channels * h * w);
    for c in 0..image.channels {
        let channel = image.channel(c);
        for y in y0..y0 + h {
            data.extend_from_slice(&channel[y * width + x0..y * width + x0 + w]);
        }
    }
    Image {
        data,
        channels: image.channels,
        shape: [1, h, w],
        geometry: image.geometry.clone(),
    }
}

/// Converts EndoVis 2017 (`instrument_dataset_N/left_frames/frameXXX.png` and
/// `instrument_dataset_N/ground_truth/<Instrument>_labels/frameXXX.png`) into an 8-class
/// dataset (background plus the seven instrument types). Frames are cropped by
/// [`ENDOVIS_CROP`]; where instrument masks overlap, the later folder in name order wins.
pub fn convert_endovis2017(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, DatasetError> {
    let mut sequences: Vec<PathBuf> = std::fs::read_dir(source)
        .map_err(|e| DatasetError::io(source, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("left_frames").is_dir())
        .collect();
    sequences.sort();
    let mut frames = Vec::new();
    for seq in &sequences {
        for frame in files_with_endings(&seq.join("left_frames"), &[".png", ".jpg"])? {
            frames.push((seq.clone(), frame));
        }
    }
    if let Some(limit) = limit {
        frames.truncate(limit);
    }
    let mut labels = vec!["background"];
    labels.extend(ENDOVIS_TYPES.iter().map(|(_, name)| *name));
    let json = dataset_json(&["R", "G", "B"], &labels, ".png");
    write_dataset(target, json, |w| {
        for (seq, frame) in &frames {
            let seq_name = seq
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .replace("instrument_dataset_", "");
            let stem = frame
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let case = format!("endovis_{seq_name}_{stem}");
            let image = crop(&read_image(frame)?);
            write_image_png(&w.image_path(&case, 0, ".png"), &image)?;
            let [_, h, wd] = image.shape;
            let mut classes = vec![0u16; h * wd];
            let gt = seq.join("ground_truth");
            let mut folders: Vec<PathBuf> = std::fs::read_dir(&gt)
                .map_err(|e| DatasetError::io(&gt, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            folders.sort();
            for folder in folders {
                let name = folder
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                let class = endovis_class(&name).ok_or_else(|| {
                    DatasetError::Convert(format!(
                        "{}: unknown instrument folder",
                        folder.display()
                    ))
                })?;
                let mask_path = folder.join(frame.file_name().unwrap_or_default());
                if !mask_path.exists() {
                    continue;
                }
                let mask = crop(&read_image(&mask_path)?);
                for (dst, &v) in classes.iter_mut().zip(mask.channel(0)) {
                    if v > 0.0 {
                        *dst = class;
                    }
                }
            }
            write_label_png(&w.label_path(&case, ".png"), &classes, h, wd)?;
        }
        Ok(frames.len())
    })
}
