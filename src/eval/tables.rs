//! Markdown and CSV tables of an evaluation: one row per class and a mean row.

use super::dice::LabelOrRegion;
use super::paper::Protocol;
use super::summary::{cell_means, confusion_means, paper_means, CaseResult};

/// A table with a header row, as plain strings.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn format_value(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_nan() => "NaN".into(),
        Some(v) => format!("{v:.4}"),
        None => String::new(),
    }
}

/// Builds the per-class table: nnU-Net's mean Dice and IoU, Swin-UMamba's mean DSC and NSD
/// per label, and in the mean row the foreground means, Swin-UMamba's overall figures and
/// the mean cell F1. Columns of metrics that were not computed are left out.
pub fn class_table(
    cases: &[CaseResult],
    classes: &[LabelOrRegion],
    names: &[String],
    paper_protocol: Option<Protocol>,
) -> Table {
    let has_confusion = cases.iter().any(|c| c.confusion.is_some());
    let has_cells = cases.iter().any(|c| c.cells.is_some());
    let mut header = vec!["class".to_string(), "name".to_string()];
    if has_confusion {
        header.extend(["Dice".to_string(), "IoU".to_string()]);
    }
    if paper_protocol.is_some() {
        header.extend(["DSC".to_string(), "NSD".to_string()]);
    }
    if has_cells {
        header.push("F1".to_string());
    }

    let confusion = has_confusion.then(|| confusion_means(cases, classes));
    let paper = paper_protocol.map(|p| paper_means(cases, p));
    let mut rows = Vec::new();
    for (class, name) in classes.iter().zip(names) {
        let mut row = vec![class.key(), name.clone()];
        if let Some(means) = &confusion {
            let values = &means.mean[class];
            row.push(format_value(Some(values[0].1)));
            row.push(format_value(Some(values[1].1)));
        }
        if let Some(paper) = &paper {
            let label = match class {
                LabelOrRegion::Label(l) => Some(*l),
                LabelOrRegion::Region(_) => None,
            };
            row.push(format_value(
                label.and_then(|l| paper.per_label_dsc.get(&l).copied()),
            ));
            row.push(format_value(
                label.and_then(|l| paper.per_label_nsd.get(&l).copied()),
            ));
        }
        if has_cells {
            row.push(String::new());
        }
        rows.push(row);
    }

    let mut mean_row = vec!["mean".to_string(), String::new()];
    if let Some(means) = &confusion {
        mean_row.push(format_value(Some(means.foreground_mean[0].1)));
        mean_row.push(format_value(Some(means.foreground_mean[1].1)));
    }
    if let Some(paper) = &paper {
        mean_row.push(format_value(Some(paper.overall_dsc)));
        mean_row.push(format_value(Some(paper.overall_nsd)));
    }
    if has_cells {
        mean_row.push(format_value(Some(cell_means(cases).f1)));
    }
    rows.push(mean_row);
    Table { header, rows }
}

impl Table {
    /// Formats the table as GitHub Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }

    /// Formats the table as CSV, quoting fields that contain a comma or a quote.
    pub fn to_csv(&self) -> String {
        let quote = |field: &String| {
            if field.contains([',', '"', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            out.push_str(&row.iter().map(quote).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}
