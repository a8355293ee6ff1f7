//! Aggregation of per-case results into summary.json, in nnU-Net v2's structure
//! (`metric_per_case`, `mean`, `foreground_mean`) plus `paper_metrics` and `cell_f1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cell_f1::CellScores;
use super::dice::{ConfusionMetrics, LabelOrRegion};
use super::paper::{PaperCase, Protocol};

/// A JSON value written the way Python's `json.dump(..., sort_keys=True, indent=4)` does,
/// including the non-standard `NaN` and `Infinity` tokens nnU-Net writes and reads back.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Float(f64),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// Formats the value with 4-space indentation and sorted keys.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let indent = |n: usize| " ".repeat(4 * n);
        match self {
            Json::Float(v) if v.is_nan() => out.push_str("NaN"),
            Json::Float(v) if v.is_infinite() => {
                out.push_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Json::Float(v) => {
                let _ = write!(out, "{v:?}");
            }
            Json::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Json::Str(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&indent(depth + 1));
                    item.write(out, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&indent(depth));
                out.push(']');
            }
            Json::Object(map) if map.is_empty() => out.push_str("{}"),
            Json::Object(map) => {
                out.push_str("{\n");
                for (i, (key, value)) in map.iter().enumerate() {
                    out.push_str(&indent(depth + 1));
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push_str(": ");
                    value.write(out, depth + 1);
                    out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
                }
                out.push_str(&indent(depth));
                out.push('}');
            }
        }
    }
}

fn object<const N: usize>(entries: [(&str, Json); N]) -> Json {
    Json::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Mean over the values that are not NaN; NaN when none is (`np.nanmean`).
pub fn nan_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for v in values.into_iter().filter(|v| !v.is_nan()) {
        sum += v;
        count += 1;
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Results of one case, for whichever metrics were requested.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub reference_file: String,
    pub prediction_file: String,
    pub confusion: Option<BTreeMap<LabelOrRegion, ConfusionMetrics>>,
    pub paper: Option<PaperCase>,
    pub cells: Option<CellScores>,
}

/// Class means of the nnU-Net metrics: `mean[class][metric]` and `foreground_mean[metric]`.
pub struct ConfusionMeans {
    pub mean: BTreeMap<LabelOrRegion, Vec<(&'static str, f64)>>,
    pub foreground_mean: Vec<(&'static str, f64)>,
}

/// Averages nnU-Net's metrics as `compute_metrics_on_folder`: a NaN-skipping mean over
/// cases per class, then a plain mean over classes (NaN if any class mean is NaN).
pub fn confusion_means(cases: &[CaseResult], classes: &[LabelOrRegion]) -> ConfusionMeans {
    let mut mean = BTreeMap::new();
    for class in classes {
        let per_case: Vec<[(&'static str, f64); 8]> = cases
            .iter()
            .filter_map(|c| c.confusion.as_ref().map(|m| m[class].named_values()))
            .collect();
        let names = ConfusionMetrics::from_counts(0, 0, 0, 0)
            .named_values()
            .map(|(n, _)| n);
        let values = names
            .iter()
            .enumerate()
            .map(|(i, &name)| (name, nan_mean(per_case.iter().map(|v| v[i].1))))
            .collect::<Vec<_>>();
        mean.insert(class.clone(), values);
    }
    let names = ConfusionMetrics::from_counts(0, 0, 0, 0)
        .named_values()
        .map(|(n, _)| n);
    let foreground_mean = names
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let class_means: Vec<f64> = mean.values().map(|v: &Vec<(&str, f64)>| v[i].1).collect();
            (
                name,
                class_means.iter().sum::<f64>() / class_means.len() as f64,
            )
        })
        .collect();
    ConfusionMeans {
        mean,
        foreground_mean,
    }
}

/// Means of Swin-UMamba's DSC and NSD: per label over cases, and the overall figure the official
/// scripts print.
#[derive(Debug, Clone)]
pub struct PaperMeans {
    pub per_label_dsc: BTreeMap<i32, f64>,
    pub per_label_nsd: BTreeMap<i32, f64>,
    pub overall_dsc: f64,
    pub overall_nsd: f64,
}

/// Averages as the official scripts' pandas code. The volume protocol prints the mean over
/// labels of the per-label means over cases. The image protocol prints the mean over images
/// of the image scores. Both skip NaN, as pandas does.
pub fn paper_means(cases: &[CaseResult], protocol: Protocol) -> PaperMeans {
    let papers: Vec<&PaperCase> = cases.iter().filter_map(|c| c.paper.as_ref()).collect();
    let mut labels: Vec<i32> = papers
        .iter()
        .flat_map(|p| p.per_label.keys().copied())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let label_mean = |label: i32, nsd: bool| {
        nan_mean(
            papers
                .iter()
                .filter_map(|p| p.per_label.get(&label))
                .map(|s| if nsd { s.nsd } else { s.dsc }),
        )
    };
    let per_label_dsc: BTreeMap<i32, f64> =
        labels.iter().map(|&l| (l, label_mean(l, false))).collect();
    let per_label_nsd: BTreeMap<i32, f64> =
        labels.iter().map(|&l| (l, label_mean(l, true))).collect();
    let (overall_dsc, overall_nsd) = match protocol {
        Protocol::Volume => (
            nan_mean(per_label_dsc.values().copied()),
            nan_mean(per_label_nsd.values().copied()),
        ),
        Protocol::Image => (
            nan_mean(papers.iter().filter_map(|p| p.image_mean).map(|s| s.dsc)),
            nan_mean(papers.iter().filter_map(|p| p.image_mean).map(|s| s.nsd)),
        ),
    };
    PaperMeans {
        per_label_dsc,
        per_label_nsd,
        overall_dsc,
        overall_nsd,
    }
}

/// Means of the cell scores over images, and the median F1 the challenge script prints.
#[derive(Debug, Clone, Copy)]
pub struct CellMeans {
    pub f1: f64,
    pub median_f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub dice: f64,
}

/// Averages the per-image cell scores.
pub fn cell_means(cases: &[CaseResult]) -> CellMeans {
    let scores: Vec<CellScores> = cases.iter().filter_map(|c| c.cells).collect();
    let mut f1: Vec<f64> = scores.iter().map(|s| s.f1).collect();
    f1.sort_by(f64::total_cmp);
    let median_f1 = match f1.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => f1[n / 2],
        n => (f1[n / 2 - 1] + f1[n / 2]) / 2.0,
    };
    CellMeans {
        f1: nan_mean(scores.iter().map(|s| s.f1)),
        median_f1,
        precision: nan_mean(scores.iter().map(|s| s.precision)),
        recall: nan_mean(scores.iter().map(|s| s.recall)),
        dice: nan_mean(scores.iter().map(|s| s.dice)),
    }
}

fn label_map(values: &BTreeMap<i32, f64>) -> Json {
    Json::Object(
        values
            .iter()
            .map(|(l, v)| (l.to_string(), Json::Float(*v)))
            .collect(),
    )
}

fn confusion_json(metrics: &ConfusionMetrics) -> Json {
    let mut map = BTreeMap::new();
    for (name, value) in metrics.named_values() {
        let json = if name == "Dice" || name == "IoU" {
            Json::Float(value)
        } else {
            Json::Int(value as i64)
        };
        map.insert(name.to_string(), json);
    }
    Json::Object(map)
}

/// Settings of Swin-UMamba's DSC and NSD, stored next to their values.
pub struct PaperSettings {
    pub protocol: Protocol,
    pub tolerances: String,
    pub slice_range: String,
    pub rounded: bool,
}

/// Builds the summary.json document.
pub fn build_summary(
    cases: &[CaseResult],
    classes: &[LabelOrRegion],
    paper: Option<&PaperSettings>,
    cell_threshold: Option<f64>,
) -> Json {
    let mut root = BTreeMap::new();
    let confusion_present = cases.iter().any(|c| c.confusion.is_some());
    let mut per_case = Vec::new();
    for case in cases {
        let mut entry = BTreeMap::new();
        entry.insert(
            "reference_file".into(),
            Json::Str(case.reference_file.clone()),
        );
        entry.insert(
            "prediction_file".into(),
            Json::Str(case.prediction_file.clone()),
        );
        let metrics = case.confusion.as_ref().map_or_else(BTreeMap::new, |m| {
            m.iter()
                .map(|(class, values)| (class.key(), confusion_json(values)))
                .collect()
        });
        entry.insert("metrics".into(), Json::Object(metrics));
        per_case.push(Json::Object(entry));
    }
    root.insert("metric_per_case".into(), Json::Array(per_case));
    if confusion_present {
        let means = confusion_means(cases, classes);
        let mean = means
            .mean
            .iter()
            .map(|(class, values)| {
                let inner = values
                    .iter()
                    .map(|(n, v)| (n.to_string(), Json::Float(*v)))
                    .collect();
                (class.key(), Json::Object(inner))
            })
            .collect();
        root.insert("mean".into(), Json::Object(mean));
        let foreground = means
            .foreground_mean
            .iter()
            .map(|(n, v)| (n.to_string(), Json::Float(*v)))
            .collect();
        root.insert("foreground_mean".into(), Json::Object(foreground));
    }
    if let Some(settings) = paper {
        root.insert("paper_metrics".into(), paper_json(cases, settings));
    }
    if let Some(threshold) = cell_threshold {
        root.insert("cell_f1".into(), cell_json(cases, threshold));
    }
    Json::Object(root)
}

fn paper_json(cases: &[CaseResult], settings: &PaperSettings) -> Json {
    let means = paper_means(cases, settings.protocol);
    let per_case = cases
        .iter()
        .filter_map(|case| {
            let paper = case.paper.as_ref()?;
            let dsc = paper.per_label.iter().map(|(l, s)| (*l, s.dsc)).collect();
            let nsd = paper.per_label.iter().map(|(l, s)| (*l, s.nsd)).collect();
            let mut entry = BTreeMap::new();
            entry.insert(
                "reference_file".into(),
                Json::Str(case.reference_file.clone()),
            );
            entry.insert(
                "prediction_file".into(),
                Json::Str(case.prediction_file.clone()),
            );
            entry.insert("DSC".into(), label_map(&dsc));
            entry.insert("NSD".into(), label_map(&nsd));
            if let Some(image) = paper.image_mean {
                entry.insert("DSC_image".into(), Json::Float(image.dsc));
                entry.insert("NSD_image".into(), Json::Float(image.nsd));
            }
            Some(Json::Object(entry))
        })
        .collect();
    let protocol = match settings.protocol {
        Protocol::Volume => "volume",
        Protocol::Image => "image",
    };
    object([
        ("protocol", Json::Str(protocol.into())),
        ("tolerances", Json::Str(settings.tolerances.clone())),
        ("slice_range", Json::Str(settings.slice_range.clone())),
        ("rounded", Json::Int(i64::from(settings.rounded))),
        ("per_case", Json::Array(per_case)),
        (
            "mean",
            object([
                ("DSC", label_map(&means.per_label_dsc)),
                ("NSD", label_map(&means.per_label_nsd)),
            ]),
        ),
        (
            "overall",
            object([
                ("DSC", Json::Float(means.overall_dsc)),
                ("NSD", Json::Float(means.overall_nsd)),
            ]),
        ),
    ])
}

fn cell_json(cases: &[CaseResult], threshold: f64) -> Json {
    let per_case = cases
        .iter()
        .filter_map(|case| {
            let s = case.cells?;
            Some(object([
                ("reference_file", Json::Str(case.reference_file.clone())),
                ("prediction_file", Json::Str(case.prediction_file.clone())),
                ("true_num", Json::Int(s.true_count as i64)),
                ("pred_num", Json::Int(s.pred_count as i64)),
                ("TP", Json::Int(s.tp as i64)),
                ("FP", Json::Int(s.fp as i64)),
                ("FN", Json::Int(s.fn_ as i64)),
                ("precision", Json::Float(s.precision)),
                ("recall", Json::Float(s.recall)),
                ("dice", Json::Float(s.dice)),
                ("F1", Json::Float(s.f1)),
            ]))
        })
        .collect();
    let means = cell_means(cases);
    object([
        ("iou_threshold", Json::Float(threshold)),
        ("per_case", Json::Array(per_case)),
        (
            "mean",
            object([
                ("F1", Json::Float(means.f1)),
                ("precision", Json::Float(means.precision)),
                ("recall", Json::Float(means.recall)),
                ("dice", Json::Float(means.dice)),
            ]),
        ),
        ("median_F1", Json::Float(means.median_f1)),
    ])
}
