//! `swin-umamba weights inspect FILE` and `swin-umamba weights convert IN OUT`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::pickle::Value;
use super::{is_safetensors, read_pth, read_safetensors, write_safetensors, PthFormat};

/// Arguments of `swin-umamba weights`.
#[derive(Args, Debug)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// List the keys, dtypes and shapes in a .pth (zip or legacy torch.save) or safetensors
    /// file, with the non-tensor entries of a .pth file.
    Inspect {
        /// Checkpoint file.
        file: PathBuf,
    },
    /// Convert the state dict of a .pth file to safetensors (same names, dtypes and values).
    Convert {
        /// Input .pth file.
        input: PathBuf,
        /// Output safetensors file; written under a temporary name and renamed when complete.
        output: PathBuf,
        /// Top-level entry that contains the state dict (default: the top level if it contains
        /// only tensors, else `model`, `state_dict` or `network_weights`).
        #[arg(long)]
        key: Option<String>,
    },
}

/// Runs a `weights` subcommand.
pub fn run(args: WeightsArgs) -> Result<()> {
    match args.command {
        WeightsCommand::Inspect { file } => inspect(&file),
        WeightsCommand::Convert { input, output, key } => convert(&input, &output, key.as_deref()),
    }
}

fn inspect(path: &Path) -> Result<()> {
    if is_safetensors(path)? {
        let (tensors, metadata) = read_safetensors(path)?;
        println!("{}: safetensors, {} tensors", path.display(), tensors.len());
        let mut keys: Vec<_> = metadata.keys().collect();
        keys.sort();
        for k in keys {
            println!("metadata {k} = {}", metadata[k]);
        }
        let mut total = 0;
        for (name, t) in &tensors {
            total += t.numel();
            println!("{name}\t{:?}\t{:?}", t.kind(), t.size());
        }
        println!("{total} elements");
        return Ok(());
    }
    let file = read_pth(path)?;
    let format = match file.format {
        PthFormat::Zip => "torch.save zip file",
        PthFormat::Legacy => "legacy torch.save file",
        PthFormat::Pickle => "plain pickle",
    };
    println!(
        "{}: {format}, {} storages, top level is a {}",
        path.display(),
        file.storage_count(),
        file.root.type_name()
    );
    let mut total = 0u64;
    print_value("", &file.root, 0, &mut total);
    println!("{total} tensor elements");
    Ok(())
}

/// Maximum nesting shown by `inspect`; deeper containers are summarised.
const INSPECT_DEPTH: usize = 8;

fn print_value(prefix: &str, value: &Value, depth: usize, total: &mut u64) {
    match value {
        Value::Tensor(t) => {
            *total += t.size.iter().product::<i64>().max(0) as u64;
            println!("{prefix}\t{:?}\t{:?}", t.storage.dtype, t.size);
        }
        Value::Dict(items) if depth < INSPECT_DEPTH => {
            if items.is_empty() && !prefix.is_empty() {
                println!("{prefix}\t{{}}");
            }
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(n) => n.to_string(),
                    other => format!("<{}>", other.type_name()),
                };
                let child = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                print_value(&child, v, depth + 1, total);
            }
        }
        Value::List(items) | Value::Tuple(items)
            if depth < INSPECT_DEPTH && items.iter().any(|v| matches!(v, Value::Tensor(_))) =>
        {
            for (i, v) in items.iter().enumerate() {
                print_value(&format!("{prefix}.{i}"), v, depth + 1, total);
            }
        }
        Value::Object {
            class,
            state: Some(state),
            ..
        } if depth < INSPECT_DEPTH => {
            // A pickled object (e.g. a whole nn.Module) keeps its attributes in its state.
            println!("{prefix}\tobject\t{class}");
            print_value(prefix, state, depth + 1, total);
        }
        other => {
            let text = super::nnunet::to_json(other).to_string();
            let preview: String = text.chars().take(100).collect();
            let ellipsis = if preview.len() < text.len() {
                "..."
            } else {
                ""
            };
            println!("{prefix}\t{}\t{preview}{ellipsis}", other.type_name());
        }
    }
}

fn convert(input: &Path, output: &Path, key: Option<&str>) -> Result<()> {
    let file = read_pth(input)?;
    let tensors = file.state_dict(key)?;
    let source = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = HashMap::from([("source".to_string(), source)]);
    write_safetensors(output, &tensors, &metadata)
        .with_context(|| format!("converting {}", input.display()))?;
    println!("wrote {} tensors to {}", tensors.len(), output.display());
    Ok(())
}
