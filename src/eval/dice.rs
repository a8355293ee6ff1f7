//! Confusion counts, Dice and IoU per label or region, as nnU-Net v2 computes them
//! (`nnunetv2/evaluation/evaluate_predictions.py::compute_metrics`).

use std::collections::BTreeMap;

/// A label or a region (a set of labels scored together), as dataset.json defines them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LabelOrRegion {
    Label(i32),
    Region(Vec<i32>),
}

impl LabelOrRegion {
    /// Returns true when `value` belongs to this label or region.
    pub fn contains(&self, value: i32) -> bool {
        match self {
            LabelOrRegion::Label(label) => *label == value,
            LabelOrRegion::Region(labels) => labels.contains(&value),
        }
    }

    /// Returns the key nnU-Net writes in summary.json: `"1"` for a label, and Python's
    /// tuple syntax, `"(1, 2)"` or `"(3,)"`, for a region.
    pub fn key(&self) -> String {
        match self {
            LabelOrRegion::Label(label) => label.to_string(),
            LabelOrRegion::Region(labels) if labels.len() == 1 => format!("({},)", labels[0]),
            LabelOrRegion::Region(labels) => {
                let parts: Vec<String> = labels.iter().map(i32::to_string).collect();
                format!("({})", parts.join(", "))
            }
        }
    }
}

/// nnU-Net's per-class metrics of one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfusionMetrics {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    /// 2TP / (2TP + FP + FN), NaN when TP + FP + FN = 0.
    pub dice: f64,
    /// TP / (TP + FP + FN), NaN when TP + FP + FN = 0.
    pub iou: f64,
}

impl ConfusionMetrics {
    /// Builds the metrics from the four counts.
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Self {
        let (dice, iou) = if tp + fp + fn_ == 0 {
            (f64::NAN, f64::NAN)
        } else {
            let (tp_f, fp_f, fn_f) = (tp as f64, fp as f64, fn_ as f64);
            (
                2.0 * tp_f / (2.0 * tp_f + fp_f + fn_f),
                tp_f / (tp_f + fp_f + fn_f),
            )
        };
        ConfusionMetrics {
            tp,
            fp,
            fn_,
            tn,
            dice,
            iou,
        }
    }

    /// Returns the metrics under nnU-Net's names, in its order of insertion.
    pub fn named_values(&self) -> [(&'static str, f64); 8] {
        [
            ("Dice", self.dice),
            ("IoU", self.iou),
            ("FP", self.fp as f64),
            ("TP", self.tp as f64),
            ("FN", self.fn_ as f64),
            ("TN", self.tn as f64),
            ("n_pred", (self.fp + self.tp) as f64),
            ("n_ref", (self.fn_ + self.tp) as f64),
        ]
    }
}

/// Computes TP, FP, FN, TN, Dice and IoU for each class over the voxels whose reference
/// value is not `ignore_label`.
///
/// `reference` and `prediction` must have the same length.
pub fn confusion_metrics(
    reference: &[i32],
    prediction: &[i32],
    classes: &[LabelOrRegion],
    ignore_label: Option<i32>,
) -> BTreeMap<LabelOrRegion, ConfusionMetrics> {
    assert_eq!(
        reference.len(),
        prediction.len(),
        "reference and prediction sizes differ"
    );
    let mut results = BTreeMap::new();
    for class in classes {
        let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
        for (&r, &p) in reference.iter().zip(prediction) {
            if ignore_label == Some(r) {
                continue;
            }
            match (class.contains(r), class.contains(p)) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        results.insert(
            class.clone(),
            ConfusionMetrics::from_counts(tp, fp, fn_, tn),
        );
    }
    results
}
