//! `predict` on an nnU-Net results folder against `nnUNetv2_predict` (nnunetv2 2.8.1).
//!
//! `tests/data/infer_predict/` contains a PlainConvUNet results folder with seeded random
//! weights, three small Kvasir-SEG photos, and the segmentations and probabilities that
//! nnU-Net's predictor wrote for them (see `generate.py` there). Each test runs the
//! release binary on them (a few seconds on one CPU core).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swin_umamba::dataset::read_image;
use swin_umamba::preprocess::npy::read_npy;

const CASES: [&str; 3] = ["kvasir_a", "kvasir_b", "kvasir_c"];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/infer_predict")
}

fn predict(output: &Path, extra: &[&str]) -> Output {
    let fixture = fixture();
    Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .arg("predict")
        .arg("-i")
        .arg(fixture.join("imagesTs"))
        .arg("-o")
        .arg(output)
        .args(["-d", "901", "-c", "2d", "-f", "0", "--threads", "1"])
        .arg("--results")
        .arg(fixture.join("results"))
        .args(extra)
        .output()
        .expect("the swin-umamba binary runs")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "predict failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads `probabilities` from an `.npz` written by predict, as float32 values and shape.
fn read_npz_probabilities(path: &Path, scratch: &Path) -> (Vec<f32>, Vec<usize>) {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let mut entry = archive.by_name("probabilities.npy").unwrap();
    let npy = scratch.join("probabilities.npy");
    let mut out = std::fs::File::create(&npy).unwrap();
    std::io::copy(&mut entry, &mut out).unwrap();
    let array = read_npy(&npy).unwrap();
    (array.to_f32(), array.shape.clone())
}

/// Compares every case's segmentation (exactly) and probabilities (within `tolerance`)
/// with nnUNetv2_predict's outputs.
fn compare_with_nnunet(output: &Path, tolerance: f32) {
    let expected = fixture().join("expected");
    for case in CASES {
        let reference = read_image(&expected.join(format!("{case}.png"))).unwrap();
        let ours = read_image(&output.join(format!("{case}.png"))).unwrap();
        assert_eq!(ours.shape, reference.shape, "{case}: segmentation shape");
        let differing = ours
            .data
            .iter()
            .zip(&reference.data)
            .filter(|(a, b)| a != b)
            .count();
        println!("{case}: {differing} pixel(s) differ from nnUNetv2_predict");
        assert_eq!(
            differing, 0,
            "{case}: segmentation differs from nnUNetv2_predict"
        );

        let reference = read_npy(&expected.join(format!("{case}_probabilities.npy"))).unwrap();
        let (ours, shape) = read_npz_probabilities(&output.join(format!("{case}.npz")), output);
        assert_eq!(shape, reference.shape, "{case}: probabilities shape");
        let max_difference = ours
            .iter()
            .zip(reference.to_f32())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{case}: max probability difference {max_difference:e}");
        assert!(
            max_difference <= tolerance,
            "{case}: probabilities differ by {max_difference:e} > {tolerance:e}"
        );
    }
}

#[test]
fn one_tile_per_call_matches_nnunet() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let result = predict(&output, &["--save-probabilities", "--tile-batch", "1"]);
    assert_success(&result);
    compare_with_nnunet(&output, 1e-4);
    for file in ["plans.json", "dataset.json"] {
        assert!(output.join(file).is_file(), "{file} is not copied");
    }
}

#[test]
fn batched_tiles_keep_segmentation() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    // nnU-Net's single-dash spellings are accepted.
    let result = predict(
        &output,
        &[
            "--save_probabilities",
            "-chk",
            "checkpoint_final.pth",
            "-tr",
            "nnUNetTrainer",
        ],
    );
    assert_success(&result);
    // Batched convolutions round differently, and the float16 sums turn that into about
    // one unit in the last place of a logit.
    compare_with_nnunet(&output, 1e-3);
}

#[test]
fn disabled_tta_changes_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let result = predict(&output, &["--save-probabilities", "--disable-tta"]);
    assert_success(&result);
    let expected = fixture().join("expected/kvasir_c_probabilities.npy");
    let reference = read_npy(&expected).unwrap().to_f32();
    let (ours, _) = read_npz_probabilities(&output.join("kvasir_c.npz"), &output);
    let max_difference = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("without mirroring: max probability difference {max_difference:e}");
    assert!(
        max_difference > 1e-3,
        "--disable-tta gave the mirrored probabilities"
    );
}

#[test]
fn missing_fold_names_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let result = predict(&output, &["-f", "3"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    println!("{stderr}");
    assert!(!result.status.success(), "a missing fold must fail");
    assert!(stderr.contains("fold_3"), "the error does not name fold_3");
    assert!(
        stderr.contains("--checkpoint"),
        "the error does not give the fix"
    );
    assert!(!output.exists(), "a failed run created the output folder");
}

#[test]
fn wrong_channel_count_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // A grayscale PNG where the dataset expects RGB.
    let pixels = vec![128u8; 40 * 40];
    swin_umamba::dataset::io::write_png_u8(&input.join("gray_0000.png"), &pixels, 1, 40, 40)
        .unwrap();
    let output = dir.path().join("out");
    let result = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .arg("predict")
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["-d", "901", "-f", "0", "--results"])
        .arg(fixture().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    println!("{stderr}");
    assert!(!result.status.success(), "a grayscale input must fail");
    assert!(
        stderr.contains("gray_0000.png"),
        "the error does not name the file"
    );
    assert!(
        stderr.contains("channel"),
        "the error does not say what is wrong"
    );
    assert!(
        !output.join("gray.png").exists(),
        "a failed case left an output file"
    );
}

#[test]
fn nifti_output_keeps_geometry() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/chaos-t2-mri");
    let reference = data.join("image_1.nii.gz");
    let label = read_image(&data.join("label_1.nii.gz")).unwrap();
    let labels: Vec<u16> = label.data.iter().map(|&v| v as u16).collect();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("case_1.nii.gz");
    swin_umamba::infer::write::write_segmentation(&output, &labels, label.shape, &reference)
        .unwrap();

    let written = read_image(&output).unwrap();
    let image = read_image(&reference).unwrap();
    assert_eq!(written.shape, image.shape, "shape");
    assert_eq!(written.geometry, image.geometry, "spacing and affine");
    let differing = written
        .data
        .iter()
        .zip(&label.data)
        .filter(|(a, b)| a != b)
        .count();
    println!("{differing} voxel(s) differ after the NIfTI round trip");
    assert_eq!(differing, 0, "label values changed");
    assert!(
        !dir.path().join("case_1.nii.gz.tmp").exists(),
        "the temporary file was left behind"
    );
}

#[test]
fn bad_case_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        fixture().join("imagesTs/kvasir_a_0000.png"),
        input.join("kvasir_a_0000.png"),
    )
    .unwrap();

    // A grayscale PNG where the dataset expects RGB, sorted before the good case.
    let pixels = vec![128u8; 40 * 40];
    swin_umamba::dataset::io::write_png_u8(&input.join("gray_0000.png"), &pixels, 1, 40, 40)
        .unwrap();

    let output = dir.path().join("out");
    let result = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .arg("predict")
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["-d", "901", "-f", "0", "--threads", "1", "--results"])
        .arg(fixture().join("results"))
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&result.stderr);
    println!("{stderr}");
    assert!(!result.status.success(), "a failed case must fail the run");
    assert!(
        stderr.contains("1 of 2 cases failed"),
        "the error does not count the failures"
    );
    assert!(
        stderr.contains("gray_0000.png"),
        "the error does not name the file"
    );
    assert!(
        output.join("kvasir_a.png").exists(),
        "the good case after the bad one was not predicted"
    );
    assert!(
        !output.join("gray.png").exists(),
        "a failed case left an output file"
    );
}
