//! Edge cases of the evaluation metrics and the `evaluate` command line: conventions the
//! official code has no test case for, the flags that correct its quirks, and the outputs.

use std::path::Path;
use std::process::Command;

use swin_umamba::eval::cell_f1::{connected_components, score_image, CellF1Options};
use swin_umamba::eval::labels::LabelMap;
use swin_umamba::eval::paper::{score_case, PaperOptions, SliceRange, ToleranceConfig};
use swin_umamba::eval::surface::{
    euclidean_distance_map, surface_dice_at_tolerance, surface_distances,
};

fn volume(
    shape: [usize; 3],
    spacing: [f64; 3],
    fill: impl Fn(usize, usize, usize) -> i32,
) -> LabelMap {
    let mut data = Vec::with_capacity(shape.iter().product());
    for x in 0..shape[0] {
        for y in 0..shape[1] {
            for z in 0..shape[2] {
                data.push(fill(x, y, z));
            }
        }
    }
    LabelMap {
        shape,
        spacing,
        data,
    }
}

#[test]
fn distance_map_matches_brute_force() {
    let grid = [7, 5, 4];
    let spacing = [1.25, 0.7, 3.1];
    let sites: Vec<bool> = (0..grid.iter().product::<usize>())
        .map(|i| (i * 37 + 11) % 17 == 0)
        .collect();
    let map = euclidean_distance_map(&sites, grid, spacing);
    let coords = |i: usize| {
        [
            i / (grid[1] * grid[2]),
            (i / grid[2]) % grid[1],
            i % grid[2],
        ]
    };
    let mut max_difference: f64 = 0.0;
    for (i, &distance) in map.iter().enumerate() {
        let p = coords(i);
        let brute = (0..sites.len())
            .filter(|&j| sites[j])
            .map(|j| {
                let q = coords(j);
                (0..3)
                    .map(|a| ((q[a] as f64 - p[a] as f64) * spacing[a]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(f64::INFINITY, f64::min);
        max_difference = max_difference.max((distance - brute).abs());
    }
    println!("max |edt - brute force| = {max_difference:e}");
    assert!(max_difference < 1e-12);
}

#[test]
fn distance_map_without_sites_is_infinite() {
    let map = euclidean_distance_map(&[false; 8], [2, 2, 2], [1.0; 3]);
    assert!(map.iter().all(|d| d.is_infinite()));
}

#[test]
fn surface_dice_identical_masks_is_one() {
    let shape = [6, 6, 3];
    let mask: Vec<bool> = (0..108)
        .map(|i| (i / 3) % 6 > 1 && i / 18 > 1 && i / 18 < 5)
        .collect();
    let distances = surface_distances(&mask, &mask, shape, [1.5, 1.5, 4.0]);
    let nsd = surface_dice_at_tolerance(&distances, 0.0);
    println!("nsd = {nsd}");
    assert!((nsd - 1.0).abs() < 1e-12);
}

#[test]
fn surface_dice_empty_prediction_is_zero() {
    let mask: Vec<bool> = (0..27).map(|i| i == 13).collect();
    let distances = surface_distances(&mask, &[false; 27], [3, 3, 3], [1.0; 3]);
    assert!(distances
        .distances_gt_to_pred
        .iter()
        .all(|d| d.is_infinite()));
    assert_eq!(surface_dice_at_tolerance(&distances, 5.0), 0.0);
}

fn amos() -> ToleranceConfig {
    ToleranceConfig::load("amos_mri").unwrap()
}

/// Builds an "Aorta" (label 5) on slices 1..=3 of the reference and on slices 1..=4 of the
/// prediction.
fn aorta_case() -> (LabelMap, LabelMap) {
    let inside = |x: usize, y: usize| (2..6).contains(&x) && (2..6).contains(&y);
    let reference = volume([8, 8, 6], [1.0, 1.0, 2.0], |x, y, z| {
        i32::from(inside(x, y) && (1..=3).contains(&z)) * 5
    });
    let prediction = volume([8, 8, 6], [1.0, 1.0, 2.0], |x, y, z| {
        i32::from(inside(x, y) && (1..=4).contains(&z)) * 5
    });
    (reference, prediction)
}

#[test]
fn slice_range_modes_differ() {
    let (reference, prediction) = aorta_case();
    let score = |slice_range| {
        let options = PaperOptions {
            slice_range,
            round: false,
        };
        score_case(&reference, &prediction, &amos(), &options).per_label[&5]
    };
    let official = score(SliceRange::Official);
    let inclusive = score(SliceRange::Inclusive);
    let all = score(SliceRange::All);
    println!("official {official:?} inclusive {inclusive:?} all {all:?}");
    // Slices 1..3 only: the prediction's extra slice 4 and the reference's slice 3 are out.
    assert_eq!(official.dsc, 1.0);
    assert_eq!(inclusive.dsc, 1.0);
    // 3 reference slices against 4 predicted slices of 16 voxels.
    assert!((all.dsc - 2.0 * 48.0 / (48.0 + 64.0)).abs() < 1e-12);
}

#[test]
fn one_slice_organ_scores_nan() {
    // The official DSC script returns NaN here and its NSD script fails on the empty range.
    let reference = volume([6, 6, 4], [1.0; 3], |x, y, z| {
        i32::from(x == 2 && y == 2 && z == 1) * 10
    });
    let options = PaperOptions::default();
    let score = score_case(&reference, &reference, &amos(), &options).per_label[&10];
    assert!(score.dsc.is_nan());
    assert!(score.nsd.is_nan());
}

#[test]
fn absent_labels_follow_official_conventions() {
    let reference = volume([4, 4, 2], [1.0; 3], |x, _, _| i32::from(x < 2));
    let prediction = volume([4, 4, 2], [1.0; 3], |x, _, _| if x < 2 { 1 } else { 7 });
    let case = score_case(&reference, &prediction, &amos(), &PaperOptions::default());
    // Absent from both: 1. Predicted only: 0.
    assert_eq!(case.per_label[&2].dsc, 1.0);
    assert_eq!(case.per_label[&2].nsd, 1.0);
    assert_eq!(case.per_label[&7].dsc, 0.0);
    assert_eq!(case.per_label[&7].nsd, 0.0);
    assert_eq!(case.per_label.len(), 13);
}

#[test]
fn endoscopy_empty_image_scores_nan() {
    let empty = volume([5, 5, 1], [1.0; 3], |_, _, _| 0);
    let config = ToleranceConfig::load("endoscopy").unwrap();
    let case = score_case(&empty, &empty, &config, &PaperOptions::default());
    assert!(case.per_label.is_empty());
    assert!(case.image_mean.unwrap().dsc.is_nan());
}

#[test]
fn tolerance_file_rejects_missing_labels() {
    let error =
        ToleranceConfig::from_yaml("protocol: volume\nspacing: header\n", Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
    println!("{error}");
    assert!(error.contains("t.yaml"));
    assert!(error.contains("labels"));
}

#[test]
fn components_use_eight_connectivity() {
    // Two diagonal pixels form one component; a pixel of another class splits nothing.
    let labels = [1, 0, 0, 0, 1, 0, 2, 0, 1];
    let components = connected_components(&labels, [3, 3], 1);
    assert_eq!(components, vec![1, 0, 0, 0, 1, 0, 0, 0, 1]);
}

#[test]
fn cell_f1_removes_border_cells() {
    // A 10x10 image: cell 1 touches the 2-pixel frame, cell 2 lies inside it.
    let mut reference = vec![0i32; 100];
    let mut prediction = vec![0i32; 100];
    for r in 0..2 {
        for c in 0..2 {
            reference[r * 10 + c] = 1;
        }
    }
    for r in 4..7 {
        for c in 4..7 {
            reference[r * 10 + c] = 2;
            prediction[r * 10 + c] = 1;
        }
    }
    let scores = score_image(&reference, &prediction, [10, 10], &CellF1Options::default());
    assert_eq!(scores.true_count, 1);
    assert_eq!(scores.tp, 1);
    assert_eq!(scores.f1, 1.0);
    let kept = CellF1Options {
        count_border_cells: true,
        ..CellF1Options::default()
    };
    let scores = score_image(&reference, &prediction, [10, 10], &kept);
    assert_eq!(scores.true_count, 2);
    assert_eq!(scores.fn_, 1);
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_swin-umamba")
}

fn cases(kind: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eval")
        .join(kind)
}

#[test]
fn cli_writes_summary_and_tables() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("abdomen.json");
    let dir = cases("abdomen");
    let status = Command::new(binary())
        .arg("evaluate")
        .arg(dir.join("ref"))
        .arg(dir.join("pred"))
        .args(["-djfile".as_ref(), dir.join("dataset.json").as_os_str()])
        .args(["-pfile".as_ref(), dir.join("plans.json").as_os_str()])
        .args(["-o".as_ref(), json.as_os_str()])
        .args(["--metrics", "dice,nsd"])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&json).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text.replace("NaN", "null")).unwrap();
    assert_eq!(summary["metric_per_case"].as_array().unwrap().len(), 16);
    assert!(summary["foreground_mean"]["Dice"].is_f64());
    assert_eq!(summary["paper_metrics"]["protocol"], "volume");
    assert!(summary["paper_metrics"]["overall"]["NSD"].is_f64());
    let markdown = std::fs::read_to_string(out.path().join("abdomen.md")).unwrap();
    assert!(markdown.starts_with("| class | name | Dice | IoU | DSC | NSD |"));
    let csv = std::fs::read_to_string(out.path().join("abdomen.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 + 1, "header, 4 classes, mean");
}

#[test]
fn cli_bad_input_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("summary.json");
    let dir = cases("endoscopy");
    // The abdomen's dataset.json expects .nii.gz files, which the endoscopy folder lacks.
    let output = Command::new(binary())
        .arg("evaluate")
        .arg(dir.join("ref"))
        .arg(dir.join("pred"))
        .args([
            "-djfile".as_ref(),
            cases("abdomen").join("dataset.json").as_os_str(),
        ])
        .args(["-pfile".as_ref(), dir.join("plans.json").as_os_str()])
        .args(["-o".as_ref(), json.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(stderr.contains(".nii.gz"));
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn builtin_tolerance_files_parse() {
    let amos = ToleranceConfig::load("amos_mri").unwrap();
    assert_eq!(amos.labels.len(), 13);
    let sliced: Vec<i32> = amos
        .labels
        .iter()
        .filter(|l| l.reference_slice_range)
        .map(|l| l.label)
        .collect();
    assert_eq!(sliced, vec![5, 6, 10]);
    assert_eq!(ToleranceConfig::load("chaos_t2").unwrap().labels.len(), 4);
    assert_eq!(
        ToleranceConfig::load("endoscopy").unwrap().tolerance,
        Some(2.0)
    );
}

#[test]
fn reader_rejects_colour_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mask.png");
    let mut colour = image::RgbImage::new(4, 4);
    colour.put_pixel(1, 1, image::Rgb([1, 2, 1]));
    colour.save(&path).unwrap();
    let error = swin_umamba::eval::labels::read_label_map(&path)
        .unwrap_err()
        .to_string();
    println!("{error}");
    assert!(error.contains("mask.png"));
    assert!(error.contains("grayscale"));

    let gray = image::RgbImage::from_pixel(4, 4, image::Rgb([2, 2, 2]));
    gray.save(&path).unwrap();
    let labels = swin_umamba::eval::labels::read_label_map(&path).unwrap();
    assert_eq!(labels.shape, [4, 4, 1]);
    assert!(labels.data.iter().all(|&v| v == 2));
}

#[test]
fn reader_reads_nifti_spacing() {
    let path = cases("abdomen").join("ref/chaos1_same.nii.gz");
    let labels = swin_umamba::eval::labels::read_label_map(&path).unwrap();
    println!("shape {:?} spacing {:?}", labels.shape, labels.spacing);
    assert_eq!(labels.shape[0], 128);
    assert_eq!(labels.shape[1], 128);
    assert!((labels.spacing[0] - 2.5).abs() < 1e-6);
    assert!((labels.spacing[2] - 7.7).abs() < 1e-5);
    assert!(labels.data.contains(&4));
}

#[test]
fn cli_f1_with_dice_needs_instance_dir() {
    let out = tempfile::tempdir().unwrap();
    let dir = cases("cells");
    let run = |extra: &[&std::ffi::OsStr]| {
        Command::new(binary())
            .arg("evaluate")
            .arg(dir.join("ref"))
            .arg(dir.join("pred"))
            .args(["-djfile".as_ref(), dir.join("dataset.json").as_os_str()])
            .args(["-pfile".as_ref(), dir.join("plans.json").as_os_str()])
            .args(["-o".as_ref(), out.path().join("summary.json").as_os_str()])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&["--metrics".as_ref(), "dice,f1".as_ref(), "--chill".as_ref()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(stderr.contains("--instance-dir"));

    let output = run(&["--metrics".as_ref(), "f1".as_ref()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out.path().join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text.replace("NaN", "null")).unwrap();
    assert_eq!(summary["cell_f1"]["per_case"].as_array().unwrap().len(), 18);
}
