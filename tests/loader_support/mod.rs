//! Writes small preprocessed cases from real Kvasir-SEG images in the layout the loader
//! reads (docs/preprocessed-format.md), with a plans file for a 64 × 80 patch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use swin_umamba::train::loader::npy::{write_f32, write_i8};

pub const HEIGHT: usize = 96;
pub const WIDTH: usize = 120;
pub const PATCH: [usize; 2] = [64, 80];
pub const BATCH: usize = 6;

fn kvasir_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kvasir-seg")
}

/// Loads Kvasir image `index` (sorted by name) resized to HEIGHT × WIDTH: the z-scored RGB
/// image (3, H, W) and labels 1 = polyp, 2 = bright background in the upper left quarter,
/// 0 = other background.
pub fn kvasir_sample(index: usize) -> (Vec<f32>, Vec<i8>) {
    let dir = kvasir_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("images"))
        .expect("Kvasir-SEG images folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    let name = &names[index];
    let rgb = image::open(dir.join("images").join(name))
        .unwrap()
        .to_rgb8();
    let rgb = image::imageops::resize(&rgb, WIDTH as u32, HEIGHT as u32, FilterType::Triangle);
    let mask = image::open(dir.join("masks").join(name))
        .unwrap()
        .to_luma8();
    let mask = image::imageops::resize(&mask, WIDTH as u32, HEIGHT as u32, FilterType::Nearest);

    let mut image = vec![0.0f32; 3 * HEIGHT * WIDTH];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            image[(c * HEIGHT + y as usize) * WIDTH + x as usize] = p[c] as f32;
        }
    }
    for channel in image.chunks_mut(HEIGHT * WIDTH) {
        let n = channel.len() as f32;
        let mean = channel.iter().sum::<f32>() / n;
        let std = (channel.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n)
            .sqrt()
            .max(1e-6);
        channel.iter_mut().for_each(|v| *v = (*v - mean) / std);
    }
    let mut seg = vec![0i8; HEIGHT * WIDTH];
    for (x, y, p) in mask.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        let i = y * WIDTH + x;
        if p[0] > 127 {
            seg[i] = 1;
        } else if y < HEIGHT / 2 && x < WIDTH / 2 && image[i] > 0.5 {
            seg[i] = 2;
        }
    }
    (image, seg)
}

/// Writes `count` cases and the plans file under `root/Dataset900_KvasirTest`; returns the
/// dataset folder.
pub fn write_dataset(root: &Path, count: usize) -> PathBuf {
    let dataset = root.join("Dataset900_KvasirTest");
    let cases = dataset.join("nnUNetPlans_2d");
    std::fs::create_dir_all(&cases).unwrap();
    let plans = format!(
        r#"{{"configurations": {{"2d": {{"patch_size": [{}, {}], "batch_size": {BATCH},
        "data_identifier": "nnUNetPlans_2d",
        "architecture": {{"arch_kwargs": {{"strides": [[1, 1], [2, 2], [2, 2], [2, 2]]}}}}}}}}}}"#,
        PATCH[0], PATCH[1]
    );
    std::fs::write(dataset.join("nnUNetPlans.json"), plans).unwrap();
    for k in 0..count {
        let (image, seg) = kvasir_sample(k);
        let name = format!("kvasir_{k:03}");
        write_f32(
            &cases.join(format!("{name}.npy")),
            &[3, 1, HEIGHT, WIDTH],
            &image,
        )
        .unwrap();
        write_i8(
            &cases.join(format!("{name}_seg.npy")),
            &[1, 1, HEIGHT, WIDTH],
            &seg,
        )
        .unwrap();
        let mut locations = serde_json::Map::new();
        for label in [1i8, 2] {
            // Every seventh pixel of the class, as a stand-in for nnU-Net's random subset.
            let list: Vec<[usize; 4]> = seg
                .iter()
                .enumerate()
                .filter(|(_, &v)| v == label)
                .step_by(7)
                .map(|(i, _)| [0, 0, i / WIDTH, i % WIDTH])
                .collect();
            locations.insert(label.to_string(), serde_json::to_value(list).unwrap());
        }
        let props = serde_json::json!({"spacing": [999, 1, 1], "class_locations": locations});
        std::fs::write(cases.join(format!("{name}.json")), props.to_string()).unwrap();
    }
    dataset
}
