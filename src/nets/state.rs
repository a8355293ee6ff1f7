//! Loading flat name → tensor maps (e.g. safetensors) into a model's VarStore with strict
//! checking of names and shapes, and nnU-Net's He re-initialisation.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use super::layers::LEAKY_RELU_SLOPE;
use super::NetsError;

/// Copies `tensors` into the VarStore. Every variable must be present with its exact
/// shape, and every tensor must name a variable; values are converted to the
/// VarStore's dtype and device. `source_name` appears in errors (a file name).
pub fn load_named_tensors(
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
    source_name: &str,
) -> Result<(), NetsError> {
    let variables = vs.variables();
    let error = |message: String| NetsError::StateDict {
        source_name: source_name.into(),
        message,
    };
    let missing: BTreeSet<&String> = variables
        .keys()
        .filter(|name| !tensors.contains_key(*name))
        .collect();
    let unexpected: BTreeSet<&String> = tensors
        .keys()
        .filter(|name| !variables.contains_key(*name))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(error(format!(
            "state dict does not match the model: {} missing key(s) {:?}, {} unexpected key(s) \
             {:?}; check the model name and its configuration",
            missing.len(),
            missing.iter().take(8).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(8).collect::<Vec<_>>()
        )));
    }
    for (name, var) in &variables {
        let value = &tensors[name];
        if value.size() != var.size() {
            return Err(error(format!(
                "`{name}` has shape {:?} but the model expects {:?}; check the model configuration",
                value.size(),
                var.size()
            )));
        }
    }
    tch::no_grad(|| {
        for (name, var) in &variables {
            var.shallow_clone()
                .copy_(&tensors[name].to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
}

/// Reads a safetensors file into a name → tensor map.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, NetsError> {
    let tensors = Tensor::read_safetensors(path).map_err(|source| NetsError::Tch {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(tensors.into_iter().collect())
}

/// Loads a safetensors state dict into the VarStore (see [`load_named_tensors`]).
pub fn load_safetensors(vs: &VarStore, path: &Path) -> Result<(), NetsError> {
    let tensors = read_safetensors(path)?;
    load_named_tensors(vs, &tensors, &path.display().to_string())
}

/// nnU-Net's `InitWeights_He(1e-2)` over the whole model: every convolution weight (the
/// 4-D variables) gets `kaiming_normal_(a=0.01)` with fan-in from dims 1..3, and the bias
/// of the same module is zeroed.
pub fn reinit_convs_he(vs: &VarStore) {
    let variables = vs.variables();
    let gain = (2.0 / (1.0 + LEAKY_RELU_SLOPE * LEAKY_RELU_SLOPE)).sqrt();
    tch::no_grad(|| {
        for (name, var) in &variables {
            let size = var.size();
            if size.len() != 4 || !name.ends_with(".weight") {
                continue;
            }
            let fan_in = size[1] * size[2] * size[3];
            let std = gain / (fan_in as f64).sqrt();
            let _ = var.shallow_clone().normal_(0.0, std);
            let bias_name = format!("{}bias", name.trim_end_matches("weight"));
            if let Some(bias) = variables.get(&bias_name) {
                let _ = bias.shallow_clone().zero_();
            }
        }
    });
}
