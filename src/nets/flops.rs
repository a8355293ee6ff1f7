//! FLOP counting by shape, in fvcore's convention: one multiply-add is one FLOP,
//! element-wise ops (SiLU, add, exp, flip, ...) are not counted, an affine norm costs
//! 5 per element (4 without affine), and one SS2D selective scan over the four
//! directions costs 9·B·L·D·N with D = 4·d_inner (VMamba's `flops_selective_scan_ref`
//! without its D and z terms).

use std::collections::BTreeMap;

/// FLOP totals per operator class and per top-level module, in insertion order.
#[derive(Debug, Default, Clone)]
pub struct FlopCounter {
    /// Totals per operator class (`conv`, `linear`, `einsum`, `layer_norm`,
    /// `instance_norm`, `selective_scan`, `interpolate`).
    pub by_operator: BTreeMap<&'static str, f64>,
    /// Totals per top-level module, named as in the state dict (`vssm_encoder`, ...).
    pub by_module: Vec<(String, f64)>,
    section: Option<String>,
}

impl FlopCounter {
    /// Starts attributing counts to the top-level module `name`.
    pub fn section(&mut self, name: &str) {
        self.section = Some(name.to_string());
        if !self.by_module.iter().any(|(n, _)| n == name) {
            self.by_module.push((name.to_string(), 0.0));
        }
    }

    /// Adds `flops` of operator class `op` to the current module.
    pub fn add(&mut self, op: &'static str, flops: f64) {
        *self.by_operator.entry(op).or_insert(0.0) += flops;
        if let Some(section) = &self.section {
            if let Some(entry) = self.by_module.iter_mut().find(|(n, _)| n == section) {
                entry.1 += flops;
            }
        }
    }

    pub fn total(&self) -> f64 {
        self.by_operator.values().sum()
    }
}
