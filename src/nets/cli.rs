//! The `model-info` and `forward` subcommands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::state::read_safetensors;
use super::{build, Model, ModelConfig, ModelName, SegmentationNet};

/// Arguments of `model-info`.
#[derive(Debug, clap::Args)]
pub struct ModelInfoArgs {
    /// Model name: swin-umamba, swin-umamba-v1, swin-umamba-d, nnunet, umamba-bot,
    /// umamba-enc.
    #[arg(long)]
    pub model: ModelName,
    /// Number of input channels.
    #[arg(long, default_value_t = 1)]
    pub in_channels: i64,
    /// Number of output classes (segmentation heads' channels).
    #[arg(long, default_value_t = 14)]
    pub classes: i64,
    /// Input height and width in pixels.
    #[arg(long, num_args = 2, value_names = ["H", "W"], default_values_t = [320, 320])]
    pub patch: Vec<i64>,
    /// Model configuration YAML; fields left out keep the official defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `forward`.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Model name (see `model-info --help`).
    #[arg(long)]
    pub model: ModelName,
    /// Model configuration YAML; fields left out keep the official defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State dict with the official PyTorch names.
    #[arg(long)]
    pub weights: PathBuf,
    /// Safetensors file with the input (B, C, H, W) under the name `input`, or as its
    /// only tensor.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors file; heads are written as `output.0` (full resolution),
    /// `output.1`, ...
    #[arg(long)]
    pub output: PathBuf,
    /// Compute dtype: f32 or f64.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f64"])]
    pub dtype: String,
    /// Number of classes; by default read from the last head's bias in the weights.
    #[arg(long)]
    pub classes: Option<i64>,
}

fn resolve_config(model: ModelName, path: Option<&Path>) -> Result<ModelConfig> {
    Ok(match path {
        Some(path) => model.read_config(path)?,
        None => model.default_config(),
    })
}

/// Prints parameter count, FLOPs by operator and a per-module table.
pub fn run_model_info(args: ModelInfoArgs) -> Result<()> {
    let (height, width) = (args.patch[0], args.patch[1]);
    let config = resolve_config(args.model, args.config.as_deref())?;
    let model = build(
        args.model,
        &config,
        args.in_channels,
        args.classes,
        (height, width),
        Device::Cpu,
    )?;
    model.check_input_size(height, width)?;
    let counter = model.flops(height, width);
    println!(
        "model {} ({} input channels, {} classes, {height}x{width})",
        args.model, args.in_channels, args.classes
    );
    println!("parameters: {}", model.parameter_count());
    println!(
        "FLOPs at batch 1: {:.3} G (one multiply-add = one FLOP; selective scan 9*B*L*D*N)",
        counter.total() / 1e9
    );
    println!("\n{:<16} {:>16}", "operator", "GFLOPs");
    for (op, flops) in &counter.by_operator {
        println!("{op:<16} {:>16.3}", flops / 1e9);
    }
    let parameters = parameters_by_module(&model);
    println!("\n{:<16} {:>14} {:>12}", "module", "parameters", "GFLOPs");
    for (module, flops) in &counter.by_module {
        let count = parameters.get(module.as_str()).copied().unwrap_or(0);
        println!("{module:<16} {count:>14} {:>12.3}", flops / 1e9);
    }
    print!("\nconfiguration:\n{}", config.to_yaml());
    Ok(())
}

/// Sums parameters by the first component of their name.
fn parameters_by_module(model: &Model) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for (name, var) in model.var_store().variables() {
        let module = name.split('.').next().unwrap_or("").to_string();
        *counts.entry(module).or_insert(0) += var.numel() as i64;
    }
    counts
}

/// Reads the number of classes from the bias of the last head in the state dict.
fn classes_from_weights(model: ModelName, weights: &HashMap<String, Tensor>) -> Option<i64> {
    let key = match model {
        ModelName::SwinUMamba | ModelName::SwinUMambaV1 => "out_layers.0.conv.conv.bias",
        _ => "decoder.seg_layers.0.bias",
    };
    weights.get(key).map(|bias| bias.size()[0])
}

/// Reads the tensor named `input`, or the only tensor, from a safetensors file.
fn read_input(path: &Path) -> Result<Tensor> {
    let inputs = read_safetensors(path)?;
    if let Some(input) = inputs.get("input") {
        return Ok(input.shallow_clone());
    }
    match inputs.values().next() {
        Some(only) if inputs.len() == 1 => Ok(only.shallow_clone()),
        _ => bail!(
            "{}: expected a tensor named `input` or exactly one tensor, found {:?}",
            path.display(),
            inputs.keys().collect::<Vec<_>>()
        ),
    }
}

/// Runs one eval-mode forward and writes every head.
pub fn run_forward(args: ForwardArgs) -> Result<()> {
    let kind = if args.dtype == "f64" {
        Kind::Double
    } else {
        Kind::Float
    };
    let config = resolve_config(args.model, args.config.as_deref())?;
    let weights = read_safetensors(&args.weights)?;
    let input = read_input(&args.input)?;

    let shape = input.size();
    if shape.len() != 4 {
        bail!(
            "{}: input has shape {shape:?}, expected (B, C, H, W)",
            args.input.display()
        );
    }
    let classes = match args
        .classes
        .or_else(|| classes_from_weights(args.model, &weights))
    {
        Some(classes) => classes,
        None => bail!(
            "{}: cannot read the number of classes from the weights; pass --classes",
            args.weights.display()
        ),
    };
    let mut model = build(
        args.model,
        &config,
        shape[1],
        classes,
        (shape[2], shape[3]),
        Device::Cpu,
    )?;
    model.load_state_dict(&weights, &args.weights.display().to_string())?;
    model.set_kind(kind);

    let heads = tch::no_grad(|| model.try_forward(&input.to_kind(kind), false))?;
    let named: Vec<(String, Tensor)> = heads
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("output.{i}"), t.contiguous()))
        .collect();

    write_atomically(&args.output, &named)?;
    for (name, tensor) in &named {
        println!("{name}: {:?}", tensor.size());
    }
    Ok(())
}

/// Writes safetensors to a temporary name next to `path`, then renames it.
fn write_atomically(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let file_name = path.file_name().context("output path has no file name")?;
    let mut temporary = path.to_path_buf();
    temporary.set_file_name(format!(".{}.partial", file_name.to_string_lossy()));
    if let Err(error) = Tensor::write_safetensors(tensors, &temporary) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("writing {}", temporary.display()));
    }
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))?;
    Ok(())
}
