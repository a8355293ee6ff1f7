//! Converters: the cell boundary rule, the NeurIPS cell release sample, the generic
//! images + masks converter, and the AMOS and EndoVis 2017 layouts on small copies the
//! tests write.

use std::path::{Path, PathBuf};

use swin_umamba::dataset::convert::{
    convert_amos, convert_endovis2017, convert_generic, convert_neurips_cells, convert_scellseg,
    instances_to_interior_boundary, ConvertTarget, MaskRule, INSTANCE_MASK_FOLDER,
};
use swin_umamba::dataset::{read_image, verify_dataset_integrity, RawDataset};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn target(dir: &Path, id: u32, name: &str) -> ConvertTarget {
    ConvertTarget {
        raw_root: dir.to_path_buf(),
        id,
        name: name.into(),
    }
}

#[test]
fn boundary_rule_on_touching_instances() {
    // Two instances (1 left, 2 right) touching in column 2/3 of a 5×6 map.
    #[rustfmt::skip]
    let instances: Vec<f32> = vec![
        0., 0., 0., 0., 0., 0.,
        0., 1., 1., 2., 2., 0.,
        1., 1., 1., 2., 2., 2.,
        0., 1., 1., 2., 2., 0.,
        0., 0., 0., 0., 0., 0.,
    ];
    #[rustfmt::skip]
    let expected: Vec<u16> = vec![
        0, 0, 0, 0, 0, 0,
        0, 2, 2, 2, 2, 0,
        2, 1, 2, 2, 1, 2,
        0, 2, 2, 2, 2, 0,
        0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(instances_to_interior_boundary(&instances, 5, 6), expected);
}

#[test]
fn boundary_rule_ignores_image_border() {
    let instances = vec![3.0f32; 9];
    assert_eq!(
        instances_to_interior_boundary(&instances, 3, 3),
        vec![1u16; 9]
    );
}

#[test]
fn neurips_cells_sample_converts() {
    let dir = tempfile::tempdir().unwrap();
    let out = convert_neurips_cells(
        &shared_data().join("neurips-cellseg-sample"),
        &target(dir.path(), 5, "Cells"),
        None,
    )
    .unwrap();
    let dataset = RawDataset::open(&out).unwrap();
    let cases = dataset.training_cases().unwrap();
    assert_eq!(cases.len(), 3);
    assert_eq!(dataset.json.num_training, 3);
    for case in &cases {
        let raw = dataset.read_case(case).unwrap();
        assert_eq!(raw.image.channels, 3, "{}", case.id);
        assert!(raw.image.data.iter().all(|&v| (0.0..=255.0).contains(&v)));
        let label = raw.label.unwrap();
        assert_eq!(label.shape, raw.image.shape);
        let mut values: Vec<u32> = label.data.iter().map(|&v| v as u32).collect();
        values.sort_unstable();
        values.dedup();
        println!("{}: label values {values:?}", case.id);
        assert_eq!(values, vec![0, 1, 2]);

        let instances = out
            .join(INSTANCE_MASK_FOLDER)
            .join(format!("{}_label.tiff", case.id));
        let source = shared_data()
            .join("neurips-cellseg-sample/labels")
            .join(format!("{}_label.tiff", case.id));
        assert_eq!(
            std::fs::read(&instances).unwrap(),
            std::fs::read(&source).unwrap(),
            "{}: the instance mask is not kept as released",
            case.id
        );
    }
}

#[test]
fn scellseg_keeps_instance_masks() {
    let dir = tempfile::tempdir().unwrap();
    let source = shared_data().join("scellseg-cells");
    let out = convert_scellseg(&source, &target(dir.path(), 6, "Scell"), Some(5)).unwrap();
    let dataset = RawDataset::open(&out).unwrap();
    let cases = dataset.training_cases().unwrap();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let (style, number) = case.id.rsplit_once('_').unwrap();
        let released = source.join(style).join(format!("{number}_masks.png"));
        let copied = out
            .join(INSTANCE_MASK_FOLDER)
            .join(format!("{}.png", case.id));
        assert_eq!(
            std::fs::read(&copied).unwrap(),
            std::fs::read(&released).unwrap(),
            "{}: the instance mask is not kept as released",
            case.id
        );
    }
    verify_dataset_integrity(&dataset).expect("the extra folder must not upset the checks");
}

fn write_grey(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

#[test]
fn generic_value_map_and_stray_value() {
    let dir = tempfile::tempdir().unwrap();
    let (images, masks) = (dir.path().join("img"), dir.path().join("msk"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..3 {
        write_grey(&images.join(format!("s{i}.png")), 12, 10, |x, y| {
            (x * 10 + y) as u8
        });
        write_grey(&masks.join(format!("s{i}.png")), 12, 10, |x, _| {
            if x > 5 {
                255
            } else {
                0
            }
        });
    }
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let rule = MaskRule::parse("0:0,255:1").unwrap();
    let out = convert_generic(
        &images,
        &masks,
        &rule,
        &["background", "fg"],
        &target(&raw, 7, "G"),
        None,
    )
    .unwrap();
    let label = read_image(&out.join("labelsTr/s1.png")).unwrap();
    assert_eq!(label.data.iter().filter(|&&v| v == 1.0).count(), 60);
    assert_eq!(label.data.iter().filter(|&&v| v == 0.0).count(), 60);

    write_grey(
        &masks.join("s2.png"),
        12,
        10,
        |x, _| if x > 5 { 254 } else { 0 },
    );
    let err = convert_generic(
        &images,
        &masks,
        &rule,
        &["background", "fg"],
        &target(&raw, 8, "H"),
        None,
    )
    .unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(message.contains("s2.png"));
    assert!(message.contains("254"));
    let left: Vec<_> = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the first dataset may remain: {left:?}");
}

#[test]
fn kvasir_threshold_gives_binary_labels() {
    let dir = tempfile::tempdir().unwrap();
    let out = swin_umamba::dataset::convert::convert_kvasir(
        &shared_data().join("kvasir-seg"),
        &target(dir.path(), 2, "K"),
        Some(3),
    )
    .unwrap();
    let dataset = RawDataset::open(&out).unwrap();
    for case in dataset.training_cases().unwrap() {
        let raw = dataset.read_case(&case).unwrap();
        let label = raw.label.unwrap();
        let ones = label.data.iter().filter(|&&v| v == 1.0).count();
        assert!(label.data.iter().all(|&v| v == 0.0 || v == 1.0));
        assert!(ones > 0, "{} has no polyp pixels", case.id);
        assert_eq!(raw.image.channels, 3);
    }
}

#[test]
fn amos_keeps_mri_cases_only() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("amos22");
    for sub in ["imagesTr", "labelsTr", "imagesVa", "labelsVa"] {
        std::fs::create_dir_all(release.join(sub)).unwrap();
    }
    let chaos = shared_data().join("chaos-t2-mri");
    for (sub, number) in [("Tr", "0001"), ("Tr", "0507"), ("Va", "0540")] {
        std::fs::copy(
            chaos.join("image_1.nii.gz"),
            release.join(format!("images{sub}/amos_{number}.nii.gz")),
        )
        .unwrap();
        std::fs::copy(
            chaos.join("label_1.nii.gz"),
            release.join(format!("labels{sub}/amos_{number}.nii.gz")),
        )
        .unwrap();
    }
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let out = convert_amos(&release, &target(&raw, 11, "AMOS"), None).unwrap();
    let dataset = RawDataset::open(&out).unwrap();
    let ids: Vec<String> = dataset
        .training_cases()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["amos_0507", "amos_0540"]);
    assert_eq!(dataset.json.labels.len(), 14);
}

#[test]
fn endovis_instrument_folders_to_classes() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("release/instrument_dataset_3");
    let frames = seq.join("left_frames");
    let bipolar = seq.join("ground_truth/Maryland_Bipolar_Forceps_labels");
    let scissors = seq.join("ground_truth/Right_Monopolar_Curved_Scissors_labels");
    for d in [&frames, &bipolar, &scissors] {
        std::fs::create_dir_all(d).unwrap();
    }
    image::RgbImage::from_pixel(20, 8, image::Rgb([90, 20, 30]))
        .save(frames.join("frame000.png"))
        .unwrap();
    write_grey(&bipolar.join("frame000.png"), 20, 8, |x, _| {
        if x < 10 {
            10
        } else {
            0
        }
    });
    write_grey(&scissors.join("frame000.png"), 20, 8, |x, _| {
        if (8..14).contains(&x) {
            40
        } else {
            0
        }
    });
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let out = convert_endovis2017(
        &dir.path().join("release"),
        &target(&raw, 12, "EndoVis"),
        None,
    )
    .unwrap();
    let label = read_image(&out.join("labelsTr/endovis_3_frame000.png")).unwrap();
    let row: Vec<u32> = label.data[..20].iter().map(|&v| v as u32).collect();
    assert_eq!(
        row,
        vec![1, 1, 1, 1, 1, 1, 1, 1, 6, 6, 6, 6, 6, 6, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        read_image(&out.join("imagesTr/endovis_3_frame000_0000.png"))
            .unwrap()
            .channels,
        3
    );
    let dataset = RawDataset::open(&out).unwrap();
    assert_eq!(dataset.json.labels.len(), 8);
    // One frame is fewer cases than folds; every other check passes.
    let err = verify_dataset_integrity(&dataset).unwrap_err().to_string();
    assert!(err.contains("fewer than the 5"));
    assert_eq!(err.lines().count(), 2, "{err}");
}
