//! Preprocessing: resuming an interrupted run, the inverse back to raw geometry, and plan
//! overrides from plans/.

use std::path::{Path, PathBuf};

use swin_umamba::dataset::convert::{convert_chaos, convert_kvasir, ConvertTarget};
use swin_umamba::dataset::{read_image, RawDataset};
use swin_umamba::plan::cli::{plan_dataset, PlanArgs};
use swin_umamba::plan::Plans;
use swin_umamba::preprocess::{preprocess_case, preprocess_dataset, revert_to_raw_geometry};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn plan_args(dir: &Path, id: u32, overrides: Vec<PathBuf>) -> PlanArgs {
    PlanArgs {
        dataset: id.to_string(),
        verify_dataset_integrity: false,
        overrides,
        gpu_memory_target: 8.0,
        // Few intensity samples: these tests do not compare the fingerprint with nnU-Net.
        fingerprint_samples: 1e5,
        raw: Some(dir.join("raw")),
        preprocessed: Some(dir.join("preprocessed")),
    }
}

#[test]
fn interrupted_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let target = ConvertTarget {
        raw_root: dir.path().join("raw"),
        id: 2,
        name: "Kvasir".into(),
    };
    std::fs::create_dir_all(&target.raw_root).unwrap();
    let raw = convert_kvasir(&shared_data().join("kvasir-seg"), &target, Some(5)).unwrap();
    let out = plan_dataset(&plan_args(dir.path(), 2, vec![])).unwrap();
    let plans = Plans::load(&out.join("nnUNetPlans.json")).unwrap();
    let dataset = RawDataset::open(&raw).unwrap();
    let first = preprocess_dataset(&dataset, &plans, "2d", &out, 2, false).unwrap();
    assert_eq!(first.processed, 5);
    assert_eq!(first.skipped, 0);

    // Simulate a run killed while writing one case: its properties file (written last) is
    // missing and a temporary file is left behind.
    let folder = out.join("nnUNetPlans_2d");
    let case = dataset.training_cases().unwrap()[3].id.clone();
    let data_before = std::fs::read(folder.join(format!("{case}.npy"))).unwrap();
    std::fs::remove_file(folder.join(format!("{case}.json"))).unwrap();
    std::fs::write(folder.join(format!("{case}_seg.npy.tmp")), b"partial").unwrap();

    let second = preprocess_dataset(&dataset, &plans, "2d", &out, 2, false).unwrap();
    assert_eq!(second.processed, 1);
    assert_eq!(second.skipped, 4);
    assert!(folder.join(format!("{case}.json")).exists());
    assert!(!folder.join(format!("{case}_seg.npy.tmp")).exists());
    assert_eq!(
        std::fs::read(folder.join(format!("{case}.npy"))).unwrap(),
        data_before
    );
}

#[test]
fn changed_raw_label_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let target = ConvertTarget {
        raw_root: dir.path().join("raw"),
        id: 3,
        name: "Kvasir".into(),
    };
    std::fs::create_dir_all(&target.raw_root).unwrap();
    let raw = convert_kvasir(&shared_data().join("kvasir-seg"), &target, Some(5)).unwrap();
    let out = plan_dataset(&plan_args(dir.path(), 3, vec![])).unwrap();
    let plans = Plans::load(&out.join("nnUNetPlans.json")).unwrap();
    let dataset = RawDataset::open(&raw).unwrap();
    let first = preprocess_dataset(&dataset, &plans, "2d", &out, 2, false).unwrap();
    assert_eq!(first.processed, 5);

    // Rewrite one label with a 0/255 mask: preprocess must redo that case, reject the
    // value 255 and name the file with the fix.
    let case = dataset.training_cases().unwrap()[1].clone();
    let label = case.label.clone().unwrap();
    let mask = image::open(&label).unwrap().to_luma8();
    let scaled = image::ImageBuffer::from_fn(mask.width(), mask.height(), |x, y| {
        image::Luma([mask.get_pixel(x, y)[0] * 255])
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    scaled.save(&label).unwrap();
    let error = preprocess_dataset(&dataset, &plans, "2d", &out, 2, false)
        .unwrap_err()
        .to_string();
    assert!(error.contains(&case.id), "{error}");
    assert!(error.contains("255"), "{error}");
    assert!(error.contains("--mask-rule"), "{error}");

    // Restoring the label makes the case valid again; only that case is redone.
    mask.save(&label).unwrap();
    let third = preprocess_dataset(&dataset, &plans, "2d", &out, 2, false).unwrap();
    assert_eq!(third.processed, 1);
    assert_eq!(third.skipped, 4);
}

#[test]
fn revert_restores_raw_label() {
    let dir = tempfile::tempdir().unwrap();
    let target = ConvertTarget {
        raw_root: dir.path().join("raw"),
        id: 1,
        name: "CHAOS".into(),
    };
    std::fs::create_dir_all(&target.raw_root).unwrap();
    let raw = convert_chaos(&shared_data().join("chaos-t2-mri"), &target, Some(5)).unwrap();
    let out = plan_dataset(&plan_args(dir.path(), 1, vec![])).unwrap();
    let plans = Plans::load(&out.join("nnUNetPlans.json")).unwrap();
    let config = plans.configuration("2d").unwrap();
    let dataset = RawDataset::open(&raw).unwrap();
    let case = &dataset.training_cases().unwrap()[0];
    let image = read_image(&case.images[0]).unwrap();
    let label = read_image(case.label.as_ref().unwrap()).unwrap();
    let pre = preprocess_case(&image, Some(&label), &plans, &config, &dataset.json).unwrap();
    let seg: Vec<f32> = pre.seg.iter().map(|&v| v.max(0) as f32).collect();
    let (back, shape) = revert_to_raw_geometry(&seg, 1, pre.shape, &pre.properties, &plans, 0.0);
    assert_eq!(shape, label.shape);
    let mismatches = back.iter().zip(&label.data).filter(|(a, b)| a != b).count();
    println!("voxels differing after the round trip: {mismatches}");
    assert_eq!(mismatches, 0);
}

#[test]
fn endoscopy_override_sets_patch() {
    let dir = tempfile::tempdir().unwrap();
    let target = ConvertTarget {
        raw_root: dir.path().join("raw"),
        id: 2,
        name: "Kvasir".into(),
    };
    std::fs::create_dir_all(&target.raw_root).unwrap();
    convert_kvasir(&shared_data().join("kvasir-seg"), &target, Some(5)).unwrap();
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/endoscopy_384x640.yaml");
    let out = plan_dataset(&plan_args(dir.path(), 2, vec![yaml])).unwrap();
    let config = Plans::load(&out.join("nnUNetPlans.json"))
        .unwrap()
        .configuration("2d")
        .unwrap();
    println!(
        "patch {:?} batch {} strides {:?}",
        config.patch_size,
        config.batch_size,
        config.strides()
    );
    assert_eq!(config.patch_size, vec![384, 640]);
    assert_eq!(config.n_stages(), 7);
    assert_eq!(config.strides()[6], vec![2, 2]);
    assert!(config.batch_size >= 2);
}

#[test]
fn override_rejects_indivisible_patch() {
    let dir = tempfile::tempdir().unwrap();
    let target = ConvertTarget {
        raw_root: dir.path().join("raw"),
        id: 2,
        name: "Kvasir".into(),
    };
    std::fs::create_dir_all(&target.raw_root).unwrap();
    convert_kvasir(&shared_data().join("kvasir-seg"), &target, Some(5)).unwrap();
    let yaml = dir.path().join("bad.yaml");
    std::fs::write(&yaml, "patch_size: [383, 640]\n").unwrap();
    let err = plan_dataset(&plan_args(dir.path(), 2, vec![yaml]))
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("bad.yaml"));
    assert!(err.contains("[383, 640]"));
}
