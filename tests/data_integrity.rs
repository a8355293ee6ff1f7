//! One test per integrity failure: each writes a small broken raw dataset into a temporary
//! folder, runs `plan --verify-dataset-integrity`, and checks that the error names the bad
//! file and that nothing was written to the preprocessed folder.

use std::path::{Path, PathBuf};

use swin_umamba::plan::cli::{plan_dataset, PlanArgs};

const SIZE: u32 = 16;

/// A valid 5-case dataset of 16×16 grey PNGs with a 4×4 foreground square.
struct Fixture {
    _dir: tempfile::TempDir,
    raw: PathBuf,
    preprocessed: PathBuf,
    folder: PathBuf,
}

impl Fixture {
    fn new(ending: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let preprocessed = dir.path().join("preprocessed");
        let folder = raw.join("Dataset009_Broken");
        std::fs::create_dir_all(folder.join("imagesTr")).unwrap();
        std::fs::create_dir_all(folder.join("labelsTr")).unwrap();
        std::fs::create_dir_all(&preprocessed).unwrap();
        let f = Fixture {
            _dir: dir,
            raw,
            preprocessed,
            folder,
        };
        f.write_json(
            r#"{"0": "image"}"#,
            r#"{"background": 0, "lesion": 1}"#,
            5,
            ending,
        );
        if ending == ".png" {
            for i in 0..5 {
                f.write_png(&f.image(i, 0), &grey(|x, y| 10 + (x + y) as u8));
                f.write_png(
                    &f.label(i),
                    &grey(|x, y| u8::from((4..8).contains(&x) && (4..8).contains(&y))),
                );
            }
        }
        f
    }

    fn image(&self, case: usize, channel: usize) -> PathBuf {
        self.folder
            .join("imagesTr")
            .join(format!("case{case}_{channel:04}.png"))
    }

    fn label(&self, case: usize) -> PathBuf {
        self.folder.join("labelsTr").join(format!("case{case}.png"))
    }

    fn write_json(&self, channels: &str, labels: &str, count: usize, ending: &str) {
        let text = format!(
            r#"{{"channel_names": {channels}, "labels": {labels}, "numTraining": {count}, "file_ending": "{ending}"}}"#
        );
        std::fs::write(self.folder.join("dataset.json"), text).unwrap();
    }

    fn write_png(&self, path: &Path, image: &image::GrayImage) {
        image.save(path).unwrap();
    }

    /// Runs the planner with the integrity check and returns the error message.
    fn plan_error(&self) -> String {
        let args = PlanArgs {
            dataset: "9".into(),
            verify_dataset_integrity: true,
            overrides: vec![],
            gpu_memory_target: 8.0,
            // Few intensity samples: these tests do not compare the fingerprint with nnU-Net.
            fingerprint_samples: 1e5,
            raw: Some(self.raw.clone()),
            preprocessed: Some(self.preprocessed.clone()),
        };
        let err = plan_dataset(&args).expect_err("the broken dataset must be rejected");
        let message = format!("{err:#}");
        println!("{message}");
        let leftovers: Vec<_> = std::fs::read_dir(&self.preprocessed).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "preprocessed folder not empty: {leftovers:?}"
        );
        message
    }
}

fn grey(f: impl Fn(u32, u32) -> u8) -> image::GrayImage {
    image::GrayImage::from_fn(SIZE, SIZE, |x, y| image::Luma([f(x, y)]))
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().to_string()
}

#[test]
fn valid_fixture_plans() {
    let f = Fixture::new(".png");
    let args = PlanArgs {
        dataset: "Broken".into(),
        verify_dataset_integrity: true,
        overrides: vec![],
        gpu_memory_target: 8.0,
        // Few intensity samples: these tests do not compare the fingerprint with nnU-Net.
        fingerprint_samples: 1e5,
        raw: Some(f.raw.clone()),
        preprocessed: Some(f.preprocessed.clone()),
    };
    let out = plan_dataset(&args).unwrap();
    assert!(out.join("nnUNetPlans.json").exists());
}

#[test]
fn masks_saved_as_0_255() {
    let f = Fixture::new(".png");
    f.write_png(&f.label(2), &grey(|x, _| if x < 8 { 255 } else { 0 }));
    let m = f.plan_error();
    assert!(m.contains(&name(&f.label(2))));
    assert!(m.contains("255"));
    assert!(m.contains("0/255"));
}

#[test]
fn label_values_not_consecutive() {
    let f = Fixture::new(".png");
    f.write_json(
        r#"{"0": "image"}"#,
        r#"{"background": 0, "lesion": 1, "cyst": 3}"#,
        5,
        ".png",
    );
    let m = f.plan_error();
    assert!(m.contains("dataset.json"));
    assert!(m.contains("not consecutive"));
    assert!(m.contains("[0, 1, 2]"));
}

#[test]
fn label_value_not_in_dataset_json() {
    let f = Fixture::new(".png");
    f.write_png(&f.label(1), &grey(|x, _| if x < 4 { 2 } else { 0 }));
    let m = f.plan_error();
    assert!(m.contains(&name(&f.label(1))));
    assert!(m.contains("[2]"));
    assert!(m.contains("not in dataset.json"));
}

#[test]
fn rgb_label_image() {
    let f = Fixture::new(".png");
    image::RgbImage::from_pixel(SIZE, SIZE, image::Rgb([0, 1, 0]))
        .save(f.label(3))
        .unwrap();
    let m = f.plan_error();
    assert!(m.contains(&name(&f.label(3))));
    assert!(m.contains("3 channels"));
}

#[test]
fn rgba_label_image() {
    let f = Fixture::new(".png");
    image::RgbaImage::from_pixel(SIZE, SIZE, image::Rgba([1, 1, 1, 255]))
        .save(f.label(0))
        .unwrap();
    let m = f.plan_error();
    assert!(m.contains(&name(&f.label(0))));
    assert!(m.contains("4 channels"));
}

#[test]
fn lossy_jpeg_masks() {
    let f = Fixture::new(".jpg");
    for i in 0..5 {
        let img = f.folder.join("imagesTr").join(format!("case{i}_0000.jpg"));
        grey(|x, y| (x * 8 + y) as u8).save(&img).unwrap();
        let label = f.folder.join("labelsTr").join(format!("case{i}.jpg"));
        grey(|x, y| if (x / 3 + y / 5) % 2 == 0 { 255 } else { 0 })
            .save(&label)
            .unwrap();
    }
    let m = f.plan_error();
    assert!(m.contains("case0.jpg"));
    assert!(m.contains("lossy"));
    assert!(m.contains("t:127"));
}

#[test]
fn image_label_shape_mismatch() {
    let f = Fixture::new(".png");
    image::GrayImage::new(SIZE, SIZE + 2)
        .save(f.label(4))
        .unwrap();
    let m = f.plan_error();
    assert!(m.contains(&name(&f.label(4))));
    assert!(m.contains("[1, 18, 16]"));
    assert!(m.contains("[1, 16, 16]"));
}

/// Writes an uncompressed NIfTI-1 float32 volume of shape (x, y, z) with spacing pixdim.
fn write_nifti(path: &Path, dims: [u16; 3], pixdim: [f32; 3], values: &[f32]) {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim: [i16; 8] = [
        3,
        dims[0] as i16,
        dims[1] as i16,
        dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&16i16.to_le_bytes()); // datatype float32
    h[72..74].copy_from_slice(&32i16.to_le_bytes()); // bitpix
    let pix = [1.0f32, pixdim[0], pixdim[1], pixdim[2], 1.0, 1.0, 1.0, 1.0];
    for (i, p) in pix.iter().enumerate() {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&p.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[112..116].copy_from_slice(&1f32.to_le_bytes()); // scl_slope
    h[344..348].copy_from_slice(b"n+1\0");
    for v in values {
        h.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, h).unwrap();
}

fn nifti_fixture(label_pixdim_case1: [f32; 3], nan_in_case2: bool) -> Fixture {
    let f = Fixture::new(".nii");
    f.write_json(
        r#"{"0": "MRI"}"#,
        r#"{"background": 0, "organ": 1}"#,
        5,
        ".nii",
    );
    let n = 8 * 8 * 3;
    for i in 0..5 {
        let mut image: Vec<f32> = (0..n).map(|k| 1.0 + k as f32).collect();
        if nan_in_case2 && i == 2 {
            image[5] = f32::NAN;
            image[6] = f32::INFINITY;
        }
        let label: Vec<f32> = (0..n).map(|k| f32::from(k % 7 == 0)).collect();
        let pixdim = if i == 1 {
            label_pixdim_case1
        } else {
            [1.0, 1.0, 3.0]
        };
        write_nifti(
            &f.folder.join(format!("imagesTr/case{i}_0000.nii")),
            [8, 8, 3],
            [1.0, 1.0, 3.0],
            &image,
        );
        write_nifti(
            &f.folder.join(format!("labelsTr/case{i}.nii")),
            [8, 8, 3],
            pixdim,
            &label,
        );
    }
    f
}

#[test]
fn image_label_geometry_mismatch() {
    let f = nifti_fixture([1.0, 1.0, 5.0], false);
    let m = f.plan_error();
    assert!(m.contains("case1.nii"));
    assert!(m.contains("geometry"));
    assert!(m.contains("5.0"));
}

#[test]
fn nan_or_infinite_intensities() {
    let f = nifti_fixture([1.0, 1.0, 3.0], true);
    let m = f.plan_error();
    assert!(m.contains("case2_0000.nii"));
    assert!(m.contains("2 NaN or infinite"));
}

#[test]
fn missing_channel_0000_file() {
    let f = Fixture::new(".png");
    std::fs::rename(f.image(3, 0), f.image(3, 1)).unwrap();
    let m = f.plan_error();
    assert!(m.contains("case3"));
    assert!(m.contains("_0000"));
}

#[test]
fn channel_count_differs_from_channel_names() {
    let f = Fixture::new(".png");
    f.write_json(
        r#"{"0": "T1", "1": "T2"}"#,
        r#"{"background": 0, "lesion": 1}"#,
        5,
        ".png",
    );
    let m = f.plan_error();
    assert!(m.contains(&name(&f.image(0, 0))));
    assert!(m.contains("1 channels"));
    assert!(m.contains("lists 2"));
}

#[test]
fn no_foreground_in_any_case() {
    let f = Fixture::new(".png");
    for i in 0..5 {
        f.write_png(&f.label(i), &grey(|_, _| 0));
    }
    let m = f.plan_error();
    assert!(m.contains("labelsTr"));
    assert!(m.contains("no case has any foreground"));
}

#[test]
fn fewer_cases_than_folds() {
    let f = Fixture::new(".png");
    for i in 3..5 {
        std::fs::remove_file(f.image(i, 0)).unwrap();
        std::fs::remove_file(f.label(i)).unwrap();
    }
    f.write_json(
        r#"{"0": "image"}"#,
        r#"{"background": 0, "lesion": 1}"#,
        3,
        ".png",
    );
    let m = f.plan_error();
    assert!(m.contains("Dataset009_Broken"));
    assert!(m.contains("3 cases, fewer than the 5"));
}

#[test]
fn truncated_image_file() {
    let f = Fixture::new(".png");
    let bytes = std::fs::read(f.image(2, 0)).unwrap();
    std::fs::write(f.image(2, 0), &bytes[..bytes.len() / 2]).unwrap();
    let m = f.plan_error();
    assert!(m.contains(&name(&f.image(2, 0))));
    assert!(m.contains("cannot read image"));
}

#[test]
fn unknown_file_ending() {
    let f = Fixture::new(".png");
    f.write_json(
        r#"{"0": "image"}"#,
        r#"{"background": 0, "lesion": 1}"#,
        5,
        ".gif",
    );
    let m = f.plan_error();
    assert!(m.contains("dataset.json"));
    assert!(m.contains(".gif"));
}

#[test]
fn image_without_channel_suffix() {
    let f = Fixture::new(".png");
    let unsuffixed = f.folder.join("imagesTr/case2.png");
    std::fs::rename(f.image(2, 0), &unsuffixed).unwrap();
    let m = f.plan_error();
    assert!(m.contains("case2.png"), "the file is not named");
    assert!(
        m.contains("CASE_XXXX.png"),
        "the expected pattern is missing"
    );
    assert!(
        m.contains("lack `_XXXX` and are not counted until renamed"),
        "the count is not explained by the unsuffixed file"
    );
    assert!(
        !m.contains("set numTraining to"),
        "numTraining is right and must not be changed"
    );
}
