//! `evaluate` against the official implementations on reference cases built from real
//! masks (CHAOS, Kvasir-SEG, NeurIPS cell-seg and scellseg): nnU-Net v2.8.1's
//! `compute_metrics_on_folder2`, the Swin-UMamba abdomen and endoscopy scripts, and the
//! cell-segmentation F1 script. tests/data/eval/README.md describes how the cases and the
//! expected files were made.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use swin_umamba::eval::cell_f1::CellF1Options;
use swin_umamba::eval::evaluate::{evaluate_folders, EvaluateConfig, MetricSet};
use swin_umamba::eval::folder::DatasetLabels;
use swin_umamba::eval::paper::{PaperOptions, SliceRange, ToleranceConfig};
use swin_umamba::eval::summary::CaseResult;

const TOLERANCE: f64 = 1e-6;

fn case_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eval")
        .join(kind)
}

fn config(kind: &str, metrics: &str, tolerances: Option<&str>, round: bool) -> EvaluateConfig {
    let labels = DatasetLabels::read(&case_dir(kind).join("dataset.json")).unwrap();
    EvaluateConfig {
        labels,
        metrics: MetricSet::parse(metrics).unwrap(),
        tolerances: tolerances.map(|name| (name.to_string(), ToleranceConfig::load(name).unwrap())),
        paper: PaperOptions {
            slice_range: SliceRange::Official,
            round,
        },
        cells: CellF1Options {
            round,
            ..CellF1Options::default()
        },
        instance_dir: None,
        chill: false,
    }
}

fn run(kind: &str, config: &EvaluateConfig) -> Vec<CaseResult> {
    let dir = case_dir(kind);
    evaluate_folders(&dir.join("ref"), &dir.join("pred"), config)
        .unwrap()
        .cases
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Splits one CSV line, honouring double quotes.
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().unwrap().push(ch),
        }
    }
    fields
}

/// Reads a CSV file into rows keyed by column name.
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = split_csv_line(lines.next().unwrap());
    lines
        .filter(|l| !l.is_empty())
        .map(|l| header.iter().cloned().zip(split_csv_line(l)).collect())
        .collect()
}

fn parse_value(text: &str) -> f64 {
    if text.is_empty() {
        f64::NAN
    } else {
        text.parse().unwrap()
    }
}

/// Asserts closeness, treating two NaNs as equal, after printing the difference.
fn assert_close(actual: f64, expected: f64, label: &str) {
    let difference = (actual - expected).abs();
    println!("{label}: actual {actual} expected {expected} |diff| {difference:e}");
    if expected.is_nan() {
        assert!(actual.is_nan(), "{label}: expected NaN, got {actual}");
    } else {
        assert!(difference <= TOLERANCE, "{label}: {actual} vs {expected}");
    }
}

/// Reads nnU-Net's summary.json, whose `NaN` tokens serde_json rejects, as null.
fn read_nnunet_summary(kind: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(case_dir(kind).join("expected/nnunet_summary.json")).unwrap();
    serde_json::from_str(&text.replace("NaN", "null")).unwrap()
}

fn json_f64(value: &serde_json::Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn check_nnunet(kind: &str) {
    let config = config(kind, "dice", None, true);
    let cases = run(kind, &config);
    let expected = read_nnunet_summary(kind);
    let expected_cases = expected["metric_per_case"].as_array().unwrap();
    assert_eq!(cases.len(), expected_cases.len(), "case count");
    let mut max_difference: f64 = 0.0;
    for expected_case in expected_cases {
        let name = file_name(expected_case["prediction_file"].as_str().unwrap());
        let case = cases
            .iter()
            .find(|c| file_name(&c.prediction_file) == name)
            .unwrap();
        let metrics = case.confusion.as_ref().unwrap();
        let expected_metrics = expected_case["metrics"].as_object().unwrap();
        assert_eq!(metrics.len(), expected_metrics.len(), "{name}: class count");
        for (class, values) in metrics {
            let expected_values = &expected_metrics[&class.key()];
            for (metric, value) in values.named_values() {
                let expected_value = json_f64(&expected_values[metric]);
                if !expected_value.is_nan() {
                    max_difference = max_difference.max((value - expected_value).abs());
                }
                assert_close(
                    value,
                    expected_value,
                    &format!("{kind} {name} {} {metric}", class.key()),
                );
            }
        }
    }
    println!("{kind}: max |diff| per case {max_difference:e}");

    let summary = swin_umamba::eval::summary::confusion_means(&cases, &config.labels.classes);
    for (class, values) in &summary.mean {
        for (metric, value) in values {
            let expected_value = json_f64(&expected["mean"][class.key()][metric]);
            assert_close(
                *value,
                expected_value,
                &format!("{kind} mean {} {metric}", class.key()),
            );
        }
    }
    for (metric, value) in &summary.foreground_mean {
        let expected_value = json_f64(&expected["foreground_mean"][metric]);
        assert_close(
            *value,
            expected_value,
            &format!("{kind} foreground_mean {metric}"),
        );
    }
}

#[test]
fn nnunet_metrics_abdomen() {
    check_nnunet("abdomen");
}

#[test]
fn nnunet_metrics_endoscopy() {
    check_nnunet("endoscopy");
}

#[test]
fn nnunet_metrics_ignore_label() {
    check_nnunet("ignore");
}

#[test]
fn nnunet_metrics_regions() {
    check_nnunet("regions");
}

/// Compares the volume protocol's per-organ values with an official CSV, column
/// `<Organ>_<DSC|NSD>`, and the overall average the script prints.
fn check_abdomen(csv: &str, nsd: bool, round: bool) {
    let config = config("abdomen", "nsd", Some("amos_mri"), round);
    let cases = run("abdomen", &config);
    let (_, tolerances) = config.tolerances.as_ref().unwrap();
    let rows = read_csv(&case_dir("abdomen").join("expected").join(csv));
    assert_eq!(rows.len(), cases.len(), "case count");
    let suffix = if nsd { "NSD" } else { "DSC" };

    let mut column_sums: HashMap<i32, (f64, usize)> = HashMap::new();
    for row in &rows {
        let case = cases
            .iter()
            .find(|c| file_name(&c.prediction_file) == row["Name"])
            .unwrap();
        let paper = case.paper.as_ref().unwrap();
        for entry in &tolerances.labels {
            let score = paper.per_label[&entry.label];
            let actual = if nsd { score.nsd } else { score.dsc };
            let expected = parse_value(&row[&format!("{}_{suffix}", entry.name)]);
            assert_close(
                actual,
                expected,
                &format!("{} {} {suffix}", row["Name"], entry.name),
            );
            if !expected.is_nan() {
                let sum = column_sums.entry(entry.label).or_default();
                sum.0 += expected;
                sum.1 += 1;
            }
        }
    }

    let column_means: Vec<f64> = column_sums.values().map(|(s, n)| s / *n as f64).collect();
    let expected_overall = column_means.iter().sum::<f64>() / column_means.len() as f64;
    let means = swin_umamba::eval::summary::paper_means(&cases, tolerances.protocol);
    let actual_overall = if nsd {
        means.overall_nsd
    } else {
        means.overall_dsc
    };
    assert_close(
        actual_overall,
        expected_overall,
        &format!("abdomen overall {suffix}"),
    );
}

#[test]
fn abdomen_dsc_matches_official() {
    check_abdomen("official_dsc.csv", false, true);
}

#[test]
fn abdomen_nsd_matches_official() {
    check_abdomen("official_nsd.csv", true, true);
}

#[test]
fn abdomen_unrounded_matches_official() {
    check_abdomen("official_dsc_unrounded.csv", false, false);
    check_abdomen("official_nsd_unrounded.csv", true, false);
}

fn check_endoscopy(csv: &str, nsd: bool, round: bool) {
    let config = config("endoscopy", "nsd", Some("endoscopy"), round);
    let cases = run("endoscopy", &config);
    let rows = read_csv(&case_dir("endoscopy").join("expected").join(csv));
    assert_eq!(rows.len(), cases.len(), "case count");
    let column = if nsd { "NSD" } else { "DSC" };
    for row in &rows {
        let case = cases
            .iter()
            .find(|c| file_name(&c.prediction_file) == row["Name"])
            .unwrap();
        let image = case.paper.as_ref().unwrap().image_mean.unwrap();
        let actual = if nsd { image.nsd } else { image.dsc };
        assert_close(
            actual,
            parse_value(&row[column]),
            &format!("{} {column}", row["Name"]),
        );
    }
    let expected_overall =
        rows.iter().map(|r| parse_value(&r[column])).sum::<f64>() / rows.len() as f64;
    let means =
        swin_umamba::eval::summary::paper_means(&cases, config.tolerances.unwrap().1.protocol);
    let actual_overall = if nsd {
        means.overall_nsd
    } else {
        means.overall_dsc
    };
    assert_close(
        actual_overall,
        expected_overall,
        &format!("endoscopy overall {column}"),
    );
}

#[test]
fn endoscopy_dsc_matches_official() {
    check_endoscopy("official_dsc.csv", false, true);
}

#[test]
fn endoscopy_nsd_matches_official() {
    check_endoscopy("official_nsd.csv", true, true);
}

#[test]
fn endoscopy_unrounded_matches_official() {
    check_endoscopy("official_dsc_unrounded.csv", false, false);
    check_endoscopy("official_nsd_unrounded.csv", true, false);
}

fn check_cells(kind: &str) {
    let config = config(kind, "f1", None, true);
    let cases = run(kind, &config);
    let rows = read_csv(&case_dir(kind).join("expected/official_f1-0.5.csv"));
    assert_eq!(rows.len(), cases.len(), "case count");
    for row in &rows {
        let name = &row["names"];
        let case = cases
            .iter()
            .find(|c| &file_name(&c.prediction_file) == name)
            .unwrap();
        let scores = case.cells.unwrap();
        let counts = [
            ("true_num", scores.true_count),
            ("pred_num", scores.pred_count),
            ("correct_num(TP)", scores.tp),
            ("missed_num(FN)", scores.fn_),
            ("wrong_num(FP)", scores.fp),
        ];
        for (column, actual) in counts {
            assert_eq!(actual.to_string(), row[column], "{name} {column}");
        }
        let ratios = [
            ("precision", scores.precision),
            ("recall", scores.recall),
            ("dice", scores.dice),
            ("F1", scores.f1),
        ];
        for (column, actual) in ratios {
            assert_close(
                actual,
                parse_value(&row[column]),
                &format!("{name} {column}"),
            );
        }
    }
}

#[test]
fn cell_f1_matches_official() {
    check_cells("cells");
}

#[test]
fn cell_f1_tiled_large_image() {
    check_cells("cells_large");
}
