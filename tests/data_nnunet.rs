//! `plan` and `preprocess` against nnU-Net v2.8.1 on the stand-in datasets: the 2d
//! configuration, the fingerprint, one preprocessed case per dataset and the splits.
//! Reference values: tests/fixtures/data/nnunet_expected.json, made by
//! tests/fixtures/data/nnunet_expected.py (its docstring lists the commands).
//!
//! Each test converts a few cases of a stand-in dataset into a temporary raw folder
//! (CHAOS: 6 volumes, Kvasir: 10 images, scellseg: 12 images), so the whole file runs in
//! well under a minute in release mode. A second CHAOS dataset gives two volumes 1.0 mm
//! in-plane spacing, so that they are resampled to 1.25 mm.

use std::path::{Path, PathBuf};

use serde_json::Value;
use swin_umamba::dataset::convert::{
    convert_chaos, convert_kvasir, convert_scellseg, ConvertTarget,
};
use swin_umamba::dataset::RawDataset;
use swin_umamba::plan::cli::{plan_dataset, PlanArgs};
use swin_umamba::plan::{Fingerprint, Plans};
use swin_umamba::preprocess::npy::read_npy;
use swin_umamba::preprocess::{preprocess_dataset, CaseProperties, Fold};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn expected(dataset: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/nnunet_expected.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all[dataset].clone()
}

type Converter =
    fn(&Path, &ConvertTarget, Option<usize>) -> Result<PathBuf, swin_umamba::dataset::DatasetError>;

struct Run {
    _dir: tempfile::TempDir,
    preprocessed: PathBuf,
    raw_folder: PathBuf,
}

/// Converts `limit` cases, plans and preprocesses them.
fn plan_and_preprocess(convert: Converter, source: &str, id: u32, name: &str, limit: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let target = ConvertTarget {
        raw_root: raw.clone(),
        id,
        name: name.into(),
    };
    let raw_folder = convert(&shared_data().join(source), &target, Some(limit)).unwrap();
    let args = PlanArgs {
        dataset: id.to_string(),
        verify_dataset_integrity: true,
        overrides: vec![],
        gpu_memory_target: 8.0,
        fingerprint_samples: swin_umamba::plan::FOREGROUND_SAMPLES_TOTAL,
        raw: Some(raw),
        preprocessed: Some(dir.path().join("preprocessed")),
    };
    let preprocessed = plan_dataset(&args).unwrap();
    let plans = Plans::load(&preprocessed.join("nnUNetPlans.json")).unwrap();
    let dataset = RawDataset::open(&raw_folder).unwrap();
    preprocess_dataset(&dataset, &plans, "2d", &preprocessed, 0, false).unwrap();
    Run {
        _dir: dir,
        preprocessed,
        raw_folder,
    }
}

fn as_i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as i64)
        .collect()
}

fn as_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn nested_i64(v: &Value) -> Vec<Vec<i64>> {
    v.as_array().unwrap().iter().map(as_i64s).collect()
}

fn check_plans(run: &Run, exp: &Value) {
    let plans = Plans::load(&run.preprocessed.join("nnUNetPlans.json")).unwrap();
    let c = plans.configuration("2d").unwrap();
    let e = &exp["plans_2d"];
    println!(
        "ours: patch {:?} batch {} stages {}",
        c.patch_size,
        c.batch_size,
        c.n_stages()
    );
    println!(
        "nnU-Net: patch {} batch {} stages {}",
        e["patch_size"], e["batch_size"], e["n_stages"]
    );
    assert_eq!(c.patch_size, as_i64s(&e["patch_size"]));
    assert_eq!(c.batch_size as i64, e["batch_size"].as_i64().unwrap());
    assert_eq!(c.spacing, as_f64s(&e["spacing"]));
    assert_eq!(
        c.median_image_size_in_voxels,
        as_f64s(&e["median_image_size_in_voxels"])
    );
    let schemes: Vec<String> = serde_json::from_value(e["normalization_schemes"].clone()).unwrap();
    assert_eq!(c.normalization_schemes, schemes);
    let masks: Vec<bool> = serde_json::from_value(e["use_mask_for_norm"].clone()).unwrap();
    assert_eq!(c.use_mask_for_norm, masks);
    assert_eq!(c.n_stages() as i64, e["n_stages"].as_i64().unwrap());
    assert_eq!(
        c.features_per_stage(),
        as_i64s(&e["features_per_stage"]).as_slice()
    );
    assert_eq!(c.strides(), nested_i64(&e["strides"]).as_slice());
    assert_eq!(c.kernel_sizes(), nested_i64(&e["kernel_sizes"]).as_slice());
    assert_eq!(
        c.n_conv_per_stage(),
        as_i64s(&e["n_conv_per_stage"]).as_slice()
    );
    assert_eq!(
        c.n_conv_per_stage_decoder(),
        as_i64s(&e["n_conv_per_stage_decoder"]).as_slice()
    );
    assert_eq!(
        plans
            .transpose_forward
            .iter()
            .map(|&a| a as i64)
            .collect::<Vec<_>>(),
        as_i64s(&exp["transpose_forward"])
    );
}

fn check_fingerprint(run: &Run, exp: &Value) {
    let fp = Fingerprint::load(&run.preprocessed.join("dataset_fingerprint.json")).unwrap();
    let e = &exp["fingerprint"];
    let spacings: Vec<Vec<f64>> = serde_json::from_value(e["spacings"].clone()).unwrap();
    assert_eq!(fp.spacings, spacings);
    let shapes: Vec<Vec<usize>> = serde_json::from_value(e["shapes_after_crop"].clone()).unwrap();
    assert_eq!(fp.shapes_after_crop, shapes);
    let relative = e["median_relative_size_after_cropping"].as_f64().unwrap();
    assert!((fp.median_relative_size_after_cropping - relative).abs() < 1e-12);
    // nnU-Net averages in float32, so means and standard deviations differ in the 7th
    // digit. Medians, percentiles and extremes come from the same samples and match.
    for (channel, props) in &fp.foreground_intensity_properties_per_channel {
        let ep = &e["foreground_intensity_properties_per_channel"][channel];
        for (key, ours) in [
            ("mean", props.mean),
            ("std", props.std),
            ("median", props.median),
            ("min", props.min),
            ("max", props.max),
            ("percentile_99_5", props.percentile_99_5),
            ("percentile_00_5", props.percentile_00_5),
        ] {
            let theirs = ep[key].as_f64().unwrap();
            let diff = (ours - theirs).abs() / theirs.abs().max(1.0);
            println!("channel {channel} {key}: ours {ours} nnU-Net {theirs} rel diff {diff:e}");
            assert!(diff < 1e-6, "channel {channel} {key}");
        }
    }
}

fn check_case(run: &Run, exp: &Value) {
    let case = exp["case"].as_str().unwrap();
    let e = &exp["case_summary"];
    let folder = run.preprocessed.join("nnUNetPlans_2d");
    let data = read_npy(&folder.join(format!("{case}.npy"))).unwrap();
    let seg = read_npy(&folder.join(format!("{case}_seg.npy"))).unwrap();
    let props: CaseProperties = serde_json::from_str(
        &std::fs::read_to_string(folder.join(format!("{case}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        data.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        as_i64s(&e["shape"])
    );
    let bbox: Vec<Vec<i64>> = props
        .bbox_used_for_cropping
        .iter()
        .map(|b| vec![b[0] as i64, b[1] as i64])
        .collect();
    assert_eq!(bbox, nested_i64(&e["bbox"]));
    assert_eq!(
        props
            .shape_before_cropping
            .iter()
            .map(|&d| d as i64)
            .collect::<Vec<_>>(),
        as_i64s(&e["shape_before_cropping"])
    );
    let values = data.to_f32();
    let (c, z, y, x) = (data.shape[0], data.shape[1], data.shape[2], data.shape[3]);
    let n = z * y * x;
    for ch in 0..c {
        let channel = &values[ch * n..(ch + 1) * n];
        let mean = channel.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let std = (channel
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt();
        let (em, es) = (
            e["channel_mean"][ch].as_f64().unwrap(),
            e["channel_std"][ch].as_f64().unwrap(),
        );
        println!("channel {ch}: mean {mean} vs {em}, std {std} vs {es}");
        assert!((mean - em).abs() < 1e-4, "channel {ch} mean");
        assert!((std - es).abs() < 1e-4, "channel {ch} std");
    }
    let mut max_diff = 0f64;
    for probe in e["probes"].as_array().unwrap() {
        let p = as_f64s(probe);
        let (ch, pz, py, px) = (p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize);
        let ours = values[ch * n + (pz * y + py) * x + px] as f64;
        max_diff = max_diff.max((ours - p[4]).abs());
    }
    println!("max difference at probe voxels: {max_diff:e}");
    assert!(max_diff < 1e-4);
    let labels = seg.to_f32();
    for (value, count) in e["seg_counts"].as_object().unwrap() {
        let v: f32 = value.parse().unwrap();
        let ours = labels.iter().filter(|&&l| l == v).count() as u64;
        assert_eq!(ours, count.as_u64().unwrap(), "voxels with label {value}");
    }
    for (class, count) in e["class_location_counts"].as_object().unwrap() {
        let ours = props.class_locations.get(class).map_or(0, |l| l.len());
        assert_eq!(
            ours as u64,
            count.as_u64().unwrap(),
            "locations of class {class}"
        );
        let first: Vec<Vec<i64>> = nested_i64(&e["class_locations_first"][class]);
        let ours_first: Vec<Vec<i64>> = props.class_locations[class]
            .iter()
            .take(5)
            .map(|l| l.iter().map(|&v| v as i64).collect())
            .collect();
        assert_eq!(
            ours_first, first,
            "first sampled locations of class {class}"
        );
    }
}

fn check_splits(run: &Run, exp: &Value) {
    let ours: Vec<Fold> = serde_json::from_str(
        &std::fs::read_to_string(run.preprocessed.join("splits_final.json")).unwrap(),
    )
    .unwrap();
    let theirs: Vec<Fold> = serde_json::from_value(exp["splits"].clone()).unwrap();
    assert_eq!(ours, theirs);
    assert!(
        run.preprocessed
            .join("gt_segmentations")
            .read_dir()
            .unwrap()
            .count()
            > 0
    );
    assert!(run.raw_folder.exists());
}

/// Sets the in-plane spacing of a `.nii.gz` file to 1.0 × 1.0 mm in pixdim and the sform
/// (the bytes tests/fixtures/data/patch_spacing.py patches for nnU-Net).
fn patch_spacing(path: &Path) {
    use std::io::{Read, Write};
    let mut header = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut header)
        .unwrap();
    for (offset, value) in [(80, 1.0f32), (84, 1.0), (280, -1.0), (300, 1.0)] {
        header[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), Default::default());
    encoder.write_all(&header).unwrap();
    encoder.finish().unwrap();
}

fn convert_chaos_resampled(
    source: &Path,
    target: &ConvertTarget,
    limit: Option<usize>,
) -> Result<PathBuf, swin_umamba::dataset::DatasetError> {
    let folder = convert_chaos(source, target, limit)?;
    for case in ["chaos_001", "chaos_002"] {
        patch_spacing(&folder.join(format!("imagesTr/{case}_0000.nii.gz")));
        patch_spacing(&folder.join(format!("labelsTr/{case}.nii.gz")));
    }
    Ok(folder)
}

#[test]
fn chaos_resampled_matches_nnunet() {
    let run = plan_and_preprocess(
        convert_chaos_resampled,
        "chaos-t2-mri",
        5,
        "CHAOSResampled",
        6,
    );
    let exp = expected("Dataset005_CHAOSResampled");
    check_plans(&run, &exp);
    check_fingerprint(&run, &exp);
    check_case(&run, &exp);
    check_splits(&run, &exp);
}

#[test]
fn chaos_matches_nnunet() {
    let run = plan_and_preprocess(convert_chaos, "chaos-t2-mri", 1, "CHAOS", 6);
    let exp = expected("Dataset001_CHAOS");
    check_plans(&run, &exp);
    check_fingerprint(&run, &exp);
    check_case(&run, &exp);
    check_splits(&run, &exp);
}

#[test]
fn kvasir_matches_nnunet() {
    let run = plan_and_preprocess(convert_kvasir, "kvasir-seg", 2, "Kvasir", 10);
    let exp = expected("Dataset002_Kvasir");
    check_plans(&run, &exp);
    check_fingerprint(&run, &exp);
    check_case(&run, &exp);
    check_splits(&run, &exp);
}

#[test]
fn scellseg_matches_nnunet() {
    let run = plan_and_preprocess(convert_scellseg, "scellseg-cells", 3, "Cells", 12);
    let exp = expected("Dataset003_Cells");
    check_plans(&run, &exp);
    check_fingerprint(&run, &exp);
    check_case(&run, &exp);
    check_splits(&run, &exp);
}

#[test]
fn nnunet_plans_file_loads() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/nnunet_plans_kvasir.json");
    let plans = Plans::load(&path).unwrap();
    let c = plans.configuration("2d").unwrap();
    assert_eq!(c.patch_size, vec![640, 640]);
    assert_eq!(c.batch_size, 2);
    assert_eq!(c.n_stages(), 8);
    assert_eq!(c.normalization_schemes.len(), 3);
    assert_eq!(plans.image_reader_writer, "NaturalImage2DIO");

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("nnUNetPlans.json");
    plans.save(&copy).unwrap();
    let reloaded = Plans::load(&copy).unwrap();
    assert_eq!(reloaded.configuration("2d").unwrap(), c);
    assert_eq!(
        reloaded.foreground_intensity_properties_per_channel,
        plans.foreground_intensity_properties_per_channel
    );
}
