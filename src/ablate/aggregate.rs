//! Aggregation of cell results into the table format of Swin-UMamba (arXiv 2402.03302):
//! per dataset, one row per model and initialisation with each metric's mean and standard deviation over folds,
//! and the pretrained-minus-scratch gain as its own column.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::config::Experiment;
use super::grid::{Cell, Layout};

/// Parameter count and FLOPs (one multiply-add counted as one FLOP, batch 1) of a model at
/// a dataset's patch size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ModelCost {
    pub parameters: u64,
    pub gflops: f64,
}

/// One row of a dataset's table.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    pub model: String,
    pub initialisation: String,
    pub folds: usize,
    /// metric name → (mean, standard deviation) over the folds that finished.
    pub metrics: BTreeMap<String, (f64, f64)>,
    /// metric name → this row's mean minus the same model's scratch mean.
    pub gain_over_scratch: BTreeMap<String, f64>,
    pub cost: Option<ModelCost>,
}

/// One dataset's table.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetTable {
    pub dataset: String,
    pub metrics: Vec<String>,
    pub rows: Vec<TableRow>,
}

/// Reads one metric's value from a cell's `summary.json`, or None when absent: the
/// DSC and NSD of Swin-UMamba's evaluation scripts from `paper_metrics.overall`, the cell F1 from `cell_f1.mean`, and
/// nnU-Net's foreground-mean Dice when that DSC was not computed.
pub fn read_metric(summary: &serde_json::Value, metric: &str) -> Option<f64> {
    let value = match metric {
        "dice" => summary
            .pointer("/paper_metrics/overall/DSC")
            .or_else(|| summary.pointer("/foreground_mean/Dice")),
        "nsd" => summary.pointer("/paper_metrics/overall/NSD"),
        "f1" => summary.pointer("/cell_f1/mean/F1"),
        _ => None,
    };
    value.and_then(|v| v.as_f64()).filter(|v| v.is_finite())
}

fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    // Sample standard deviation over folds (n - 1), 0 for a single fold.
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, std)
}

/// Builds every dataset's table from the cells' summaries; cells without a summary are
/// left out of the means (their count shows in `folds`).
pub fn build_tables(
    experiment: &Experiment,
    layout: &Layout,
    cells: &[Cell],
    cost: &dyn Fn(&Cell) -> Option<ModelCost>,
) -> Vec<DatasetTable> {
    let mut tables = Vec::new();
    for dataset in &experiment.datasets {
        let mut rows: Vec<TableRow> = Vec::new();
        for model in &experiment.models {
            for init in &experiment.initialisations {
                let group: Vec<&Cell> = cells
                    .iter()
                    .filter(|c| {
                        c.dataset.id == dataset.id
                            && &c.model == model
                            && c.initialisation.name == init.name
                    })
                    .collect();
                if group.is_empty() {
                    continue;
                }
                let summaries: Vec<serde_json::Value> = group
                    .iter()
                    .filter_map(|c| read_json(&layout.cell_dir(c).join("summary.json")))
                    .collect();
                let mut metrics = BTreeMap::new();
                for metric in &dataset.metrics {
                    let values: Vec<f64> = summaries
                        .iter()
                        .filter_map(|s| read_metric(s, metric))
                        .collect();
                    if !values.is_empty() {
                        metrics.insert(metric.clone(), mean_and_std(&values));
                    }
                }
                rows.push(TableRow {
                    model: model.clone(),
                    initialisation: init.name.clone(),
                    folds: summaries.len(),
                    metrics,
                    gain_over_scratch: BTreeMap::new(),
                    cost: cost(group[0]),
                });
            }
        }
        fill_gains(&mut rows);
        tables.push(DatasetTable {
            dataset: dataset.folder_name(),
            metrics: dataset.metrics.clone(),
            rows,
        });
    }
    tables
}

fn fill_gains(rows: &mut [TableRow]) {
    let scratch: BTreeMap<String, BTreeMap<String, (f64, f64)>> = rows
        .iter()
        .filter(|r| r.initialisation == "scratch")
        .map(|r| (r.model.clone(), r.metrics.clone()))
        .collect();
    for row in rows.iter_mut().filter(|r| r.initialisation != "scratch") {
        if let Some(base) = scratch.get(&row.model) {
            for (metric, (mean, _)) in &row.metrics {
                if let Some((base_mean, _)) = base.get(metric) {
                    row.gain_over_scratch
                        .insert(metric.clone(), mean - base_mean);
                }
            }
        }
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn metric_label(metric: &str) -> &'static str {
    match metric {
        "dice" => "DSC",
        "nsd" => "NSD",
        "f1" => "F1",
        _ => "?",
    }
}

/// Renders one table as Markdown, with metrics in percent as Swin-UMamba's tables print them.
pub fn to_markdown(table: &DatasetTable) -> String {
    let mut header = vec!["Model".to_string(), "Init".into(), "Folds".into()];
    for metric in &table.metrics {
        header.push(format!("{} (%)", metric_label(metric)));
    }
    for metric in &table.metrics {
        header.push(format!("Δ{} vs scratch", metric_label(metric)));
    }
    header.extend(["Params (M)".into(), "FLOPs (G)".into()]);
    let mut out = format!("### {}\n\n| {} |\n|", table.dataset, header.join(" | "));
    out.push_str(&"---|".repeat(header.len()));
    out.push('\n');
    for row in &table.rows {
        let mut cells = vec![
            row.model.clone(),
            row.initialisation.clone(),
            row.folds.to_string(),
        ];
        for metric in &table.metrics {
            // One fold has no spread, so its mean is shown alone rather than with ± 0.00.
            cells.push(match row.metrics.get(metric) {
                Some((mean, _)) if row.folds == 1 => format!("{:.2}", mean * 100.0),
                Some((mean, std)) => format!("{:.2} ± {:.2}", mean * 100.0, std * 100.0),
                None => "–".into(),
            });
        }
        for metric in &table.metrics {
            cells.push(match row.gain_over_scratch.get(metric) {
                Some(gain) => format!("{:+.2}", gain * 100.0),
                None => "–".into(),
            });
        }
        match row.cost {
            Some(cost) => {
                cells.push(format!("{:.2}", cost.parameters as f64 / 1e6));
                cells.push(format!("{:.2}", cost.gflops));
            }
            None => cells.extend(["–".into(), "–".into()]),
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Renders one table as CSV with raw fractions (not percent) and empty cells for gaps.
pub fn to_csv(table: &DatasetTable) -> String {
    let mut header = vec!["dataset", "model", "initialisation", "folds"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for metric in &table.metrics {
        header.push(format!("{metric}_mean"));
        header.push(format!("{metric}_std"));
    }
    for metric in &table.metrics {
        header.push(format!("{metric}_gain_over_scratch"));
    }
    header.extend(["parameters".into(), "gflops".into()]);
    let mut out = header.join(",");
    out.push('\n');
    for row in &table.rows {
        let mut cells = vec![
            table.dataset.clone(),
            row.model.clone(),
            row.initialisation.clone(),
            row.folds.to_string(),
        ];
        for metric in &table.metrics {
            match row.metrics.get(metric) {
                Some((mean, std)) => cells.extend([format!("{mean:.6}"), format!("{std:.6}")]),
                None => cells.extend([String::new(), String::new()]),
            }
        }
        for metric in &table.metrics {
            cells.push(
                row.gain_over_scratch
                    .get(metric)
                    .map(|g| format!("{g:.6}"))
                    .unwrap_or_default(),
            );
        }
        match row.cost {
            Some(cost) => {
                cells.extend([cost.parameters.to_string(), format!("{:.3}", cost.gflops)])
            }
            None => cells.extend([String::new(), String::new()]),
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
