//! `swin-umamba evaluate`: score a prediction folder against a reference folder.

use std::path::PathBuf;

use super::cell_f1::CellF1Options;
use super::evaluate::{evaluate_folders, write_all_atomically, EvaluateConfig, MetricSet};
use super::folder::DatasetLabels;
use super::paper::{PaperOptions, SliceRange, ToleranceConfig};
use super::EvalError;

/// Arguments of `swin-umamba evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Folder of reference label files, named like the predictions.
    pub reference_dir: PathBuf,
    /// Folder of predicted label files.
    pub prediction_dir: PathBuf,
    /// dataset.json giving the labels, the ignore label and the file ending.
    #[arg(long = "djfile", short = 'd', alias = "dataset-json")]
    pub dataset_json: PathBuf,
    /// plans.json of the trained configuration (read to check it exists and parses, as
    /// nnU-Net requires it).
    #[arg(long = "pfile", short = 'p', alias = "plans")]
    pub plans: PathBuf,
    /// Output summary.json; the Markdown and CSV tables get the same stem. Default:
    /// PRED_DIR/summary.json.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Comma-separated metrics: dice (nnU-Net's Dice, IoU and counts), nsd (DSC and NSD
    /// as Swin-UMamba's evaluation scripts compute them), f1 (cell instance F1).
    #[arg(long, default_value = "dice")]
    pub metrics: String,
    /// NSD tolerance YAML file, or a built-in name: amos_mri (the official abdomen
    /// protocol, mm with the header spacing), chaos_t2 (the CHAOS stand-in's four organs)
    /// or endoscopy (2 pixels). Default: amos_mri for NIfTI datasets, endoscopy otherwise.
    #[arg(long = "nsd-tolerance")]
    pub nsd_tolerance: Option<String>,
    /// Slices scored for labels marked `reference_slice_range` (aorta, IVC, esophagus):
    /// official reproduces the scripts' [z_min, z_max) of the reference.
    #[arg(long, value_enum, default_value = "official")]
    pub slice_range: SliceRange,
    /// Report unrounded DSC, NSD and cell metrics (the official scripts round to 4 decimals).
    #[arg(long)]
    pub no_round: bool,
    /// Folder of instance-id reference masks for f1 (`<case>_label.tiff`, `<case>.tif[f]`
    /// or `<case><file_ending>`). Default: REF_DIR when f1 is the only metric; required
    /// when f1 is combined with dice or nsd.
    #[arg(long)]
    pub instance_dir: Option<PathBuf>,
    /// Keep cells touching the 2-pixel image border in the F1 (the challenge removes them).
    #[arg(long)]
    pub count_border_cells: bool,
    /// Score only the predictions present instead of requiring one per reference.
    #[arg(long)]
    pub chill: bool,
}

/// Runs the evaluation and writes summary.json, summary.md and summary.csv.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let labels = DatasetLabels::read(&args.dataset_json)?;
    let plans_text = std::fs::read_to_string(&args.plans).map_err(|e| EvalError::Read {
        path: args.plans.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_str::<serde_json::Value>(&plans_text).map_err(|e| EvalError::Read {
        path: args.plans.clone(),
        message: format!("not valid JSON ({e}); pass the plans.json of the trained model"),
    })?;

    let metrics = MetricSet::parse(&args.metrics)?;
    let tolerances = if metrics.nsd {
        let name = args
            .nsd_tolerance
            .clone()
            .unwrap_or_else(|| EvaluateConfig::default_tolerances(&labels.file_ending).to_string());
        let config = ToleranceConfig::load(&name)?;
        Some((name, config))
    } else {
        None
    };

    let config = EvaluateConfig {
        labels,
        metrics,
        tolerances,
        paper: PaperOptions {
            slice_range: args.slice_range,
            round: !args.no_round,
        },
        cells: CellF1Options {
            count_border_cells: args.count_border_cells,
            round: !args.no_round,
            ..CellF1Options::default()
        },
        instance_dir: args.instance_dir.clone(),
        chill: args.chill,
    };

    let output = evaluate_folders(&args.reference_dir, &args.prediction_dir, &config)?;
    let json_path = args
        .output
        .clone()
        .unwrap_or_else(|| args.prediction_dir.join("summary.json"));
    let markdown_path = json_path.with_extension("md");
    let csv_path = json_path.with_extension("csv");
    write_all_atomically(&[
        (json_path.clone(), output.summary_json.as_str()),
        (markdown_path.clone(), output.table_markdown.as_str()),
        (csv_path.clone(), output.table_csv.as_str()),
    ])?;
    print!("{}", output.table_markdown);
    println!(
        "{} case(s) scored; wrote {}, {} and {}",
        output.cases.len(),
        json_path.display(),
        markdown_path.display(),
        csv_path.display()
    );
    Ok(())
}

/// Rewrites nnU-Net's single-dash long flags (`-djfile`, `-pfile`) to the `--` form clap
/// parses, so `nnUNetv2_evaluate_folder` command lines work unchanged.
pub fn nnunet_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|arg| match arg.as_str() {
            "-djfile" => "--djfile".to_string(),
            "-pfile" => "--pfile".to_string(),
            _ => arg,
        })
        .collect()
}
