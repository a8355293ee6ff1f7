//! Loading the ImageNet VMamba v0 checkpoint (a dict with `model`) into the Swin-UMamba
//! encoders, mirroring the official `load_pretrained_ckpt` functions of Swin-UMamba
//! (github.com/JiarunLiu/Swin-UMamba, `SwinUMamba.py` and `SwinUMambaD.py` at commit 2c1f72e,
//! and the first-commit `SwinUMamba.py` at 6855410, whose loader equals the current one).
//!
//! Each checkpoint key is handled in checkpoint order:
//! 1. Keys on the skip list are skipped.
//! 2. The model key is `vssm_encoder.<key>`, with `layers.<i>.downsample` renamed to
//!    `downsamples.<i>`, and a renamed key must exist in the model.
//! 3. For Swin-UMamba†, every `patch_embed` key is passed over when the checkpoint's patch
//!    embedding has a different number of input channels than the model.
//! 4. A key whose model key exists must match its shape and is copied. Any other key is passed
//!    over.
//!
//! Nothing is copied unless every key passes these checks. The official code has the same
//! effect because it asserts before its final `load_state_dict`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use super::WeightsError;

/// Checkpoint keys both official loaders skip: the classifier's final norm and head.
const CLASSIFIER_KEYS: [&str; 4] = ["norm.weight", "norm.bias", "head.weight", "head.bias"];

/// Extra keys the Swin-UMamba (and v1) loader skips, because its encoder's patch embedding
/// takes the stem's output rather than the image. The official list names
/// `patch_embed.norm.weight` twice and never `patch_embed.norm.bias`, so that bias is loaded
/// whenever its shape matches; this is kept for fidelity.
const SWIN_UMAMBA_PATCH_EMBED_KEYS: [&str; 3] = [
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "patch_embed.norm.weight",
];

/// Prefix of the encoder's keys inside the segmentation networks.
const ENCODER_PREFIX: &str = "vssm_encoder.";

/// Official loader to mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmambaTarget {
    /// Swin-UMamba (`SwinUMamba.py:load_pretrained_ckpt`, commit 2c1f72e).
    SwinUMamba,
    /// The first Swin-UMamba (`SwinUMamba.py:load_pretrained_ckpt`, commit 6855410).
    SwinUMambaV1,
    /// Swin-UMamba† (`SwinUMambaD.py:load_pretrained_ckpt(num_input_channels)`), whose patch
    /// embedding is loaded only when the checkpoint's input channels equal the model's.
    SwinUMambaD { num_input_channels: i64 },
}

/// Record of a load, key by key, in checkpoint order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Checkpoint keys copied into the model, with the model key each went to.
    pub loaded: Vec<(String, String)>,
    /// Checkpoint keys on the loader's skip list, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Checkpoint keys passed over because the model has no such key or the input channels
    /// differ (the official loader prints these as "Passing weights"), with the reason.
    pub passed: Vec<(String, String)>,
    /// Model keys that no checkpoint key was copied into, sorted.
    pub model_keys_left_at_init: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (key, target) in &self.loaded {
            writeln!(f, "loaded  {key} -> {target}")?;
        }
        for (key, reason) in &self.skipped {
            writeln!(f, "skipped {key}: {reason}")?;
        }
        for (key, reason) in &self.passed {
            writeln!(f, "passed  {key}: {reason}")?;
        }
        write!(
            f,
            "{} loaded, {} skipped, {} passed, {} model keys left at init",
            self.loaded.len(),
            self.skipped.len(),
            self.passed.len(),
            self.model_keys_left_at_init.len()
        )
    }
}

/// Renames `layers.<i>.downsample` to `downsamples.<i>`, as the official loaders do.
fn rename_downsample(model_key: &str) -> Option<String> {
    let at = model_key.find(".downsample")?;
    let head = &model_key[..at];
    let layer_at = head.rfind("layers.")?;
    let index = &head[layer_at + "layers.".len()..];
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let from = format!("layers.{index}.downsample");
    Some(model_key.replacen(&from, &format!("downsamples.{index}"), 1))
}

/// Maps an ImageNet VMamba v0 checkpoint into `vs` as the chosen official loader does.
///
/// `checkpoint` is the `model` dict in file order (see [`super::PthFile::ordered_tensors`]).
/// Values are cast to each variable's dtype on copy, as `load_state_dict` does. On error
/// (a shape mismatch, a renamed downsample key the model lacks, a missing patch embedding
/// for the in-channel check) nothing in `vs` changes.
pub fn load_vmamba_imagenet(
    checkpoint: &[(String, Tensor)],
    vs: &mut VarStore,
    target: VmambaTarget,
) -> Result<LoadReport, WeightsError> {
    let variables = vs.variables();
    let mut report = LoadReport::default();
    let mut assignments: Vec<(&Tensor, &Tensor)> = Vec::new();
    let mut assigned = BTreeSet::new();

    let patch_embed_in_chans = match target {
        VmambaTarget::SwinUMambaD { .. } => {
            let proj = checkpoint
                .iter()
                .find(|(k, _)| k == "patch_embed.proj.weight")
                .map(|(_, t)| t)
                .ok_or_else(|| {
                    WeightsError::Load(
                        "checkpoint has no `patch_embed.proj.weight`, which the Swin-UMamba† \
                         loader needs for its input-channel check; pass the `model` dict of a \
                         VMamba v0 checkpoint"
                            .into(),
                    )
                })?;
            proj.size().get(1).copied()
        }
        _ => None,
    };

    for (key, value) in checkpoint {
        let skip = CLASSIFIER_KEYS.contains(&key.as_str())
            || (matches!(
                target,
                VmambaTarget::SwinUMamba | VmambaTarget::SwinUMambaV1
            ) && SWIN_UMAMBA_PATCH_EMBED_KEYS.contains(&key.as_str()));
        if skip {
            let reason = if CLASSIFIER_KEYS.contains(&key.as_str()) {
                "ImageNet classifier norm/head, not part of the encoder"
            } else {
                "patch embedding replaced by the stem in Swin-UMamba"
            };
            report.skipped.push((key.clone(), reason.to_string()));
            continue;
        }
        let mut model_key = format!("{ENCODER_PREFIX}{key}");
        if let VmambaTarget::SwinUMambaD { num_input_channels } = target {
            if key.contains("patch_embed") && patch_embed_in_chans != Some(num_input_channels) {
                let reason = format!(
                    "checkpoint patch embedding takes {} input channels, the model {}",
                    patch_embed_in_chans.unwrap_or(-1),
                    num_input_channels
                );
                report.passed.push((key.clone(), reason));
                continue;
            }
        }
        if model_key.contains("downsample") {
            model_key = rename_downsample(&model_key).ok_or_else(|| {
                WeightsError::Load(format!(
                    "checkpoint key `{key}` mentions downsample but not `layers.<i>.downsample`"
                ))
            })?;
            if !variables.contains_key(&model_key) {
                return Err(WeightsError::Load(format!(
                    "checkpoint key `{key}` maps to `{model_key}`, which the model lacks; \
                     the official loader asserts this key exists"
                )));
            }
        }
        match variables.get(&model_key) {
            Some(variable) => {
                if variable.size() != value.size() {
                    return Err(WeightsError::Load(format!(
                        "shape mismatch for `{key}`: checkpoint {:?}, model `{model_key}` {:?}; \
                         the checkpoint was made for another encoder width or depth",
                        value.size(),
                        variable.size()
                    )));
                }
                assignments.push((variable, value));
                assigned.insert(model_key.clone());
                report.loaded.push((key.clone(), model_key));
            }
            None => {
                let reason = format!("model has no `{model_key}`");
                report.passed.push((key.clone(), reason));
            }
        }
    }

    tch::no_grad(|| -> Result<(), WeightsError> {
        for (variable, value) in &assignments {
            let mut variable = variable.shallow_clone();
            variable.f_copy_(value)?;
        }
        Ok(())
    })?;
    let mut left: Vec<String> = variables
        .keys()
        .filter(|k| !assigned.contains(*k))
        .cloned()
        .collect();
    left.sort();
    report.model_keys_left_at_init = left;
    Ok(report)
}

/// Reads an ImageNet VMamba v0 checkpoint file and loads it into `vs` with
/// [`load_vmamba_imagenet`], printing the report to stdout.
///
/// A `.pth` file must contain a `model` dict, read in file order. A safetensors file (for
/// example one written by `weights convert`) is read in name order, so the report lists keys
/// in that order, but the loaded weights are the same.
pub fn load_vmamba_imagenet_file(
    path: &Path,
    vs: &mut VarStore,
    target: VmambaTarget,
) -> Result<LoadReport, WeightsError> {
    println!("Loading weights from: {}", path.display());
    let checkpoint: Vec<(String, Tensor)> = if super::is_safetensors(path)? {
        super::read_safetensors(path)?.0.into_iter().collect()
    } else {
        let file = super::read_pth(path)?;
        let model = file.root.get("model").ok_or_else(|| {
            WeightsError::format(
                path,
                "no `model` entry; an ImageNet VMamba v0 checkpoint is a dict with `model`",
            )
        })?;
        file.ordered_tensors(model)?
    };
    let report = load_vmamba_imagenet(&checkpoint, vs, target)?;
    println!("{report}");
    Ok(report)
}

/// Creates a VarStore on CPU whose variables are copies of the given state dict's tensors,
/// under the same dotted names. Useful to load weights without building the network.
pub fn var_store_from_state_dict(state: &BTreeMap<String, Tensor>) -> VarStore {
    let vs = VarStore::new(tch::Device::Cpu);
    for (name, tensor) in state {
        let mut parts: Vec<&str> = name.split('.').collect();
        let leaf = parts.pop().unwrap_or_default();
        let mut path = vs.root();
        for part in parts {
            path = path.sub(part);
        }
        let _variable = path.add(leaf, tensor.copy(), false);
    }
    vs
}
