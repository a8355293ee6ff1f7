//! `swin-umamba demo`: the embedded default. Writes a synthetic organ dataset and
//! synthetic texture images, then runs `experiments/demo.yaml` (compiled into the binary)
//! end to end and prints where every output went.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cli::{layout_for, write_tables};
use super::config::Experiment;
use super::grid;
use super::runner;
use super::synthetic;
use super::tasks;

/// The embedded experiment.
pub const DEMO_YAML: &str = include_str!("../../experiments/demo.yaml");

/// Arguments of `swin-umamba demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for every output (data, checkpoints, predictions, tables).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Tasks run at the same time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Print the grid and commands without running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Number of synthetic cases and their size in pixels.
const DEMO_CASES: usize = 20;
const DEMO_SIZE: u32 = 96;
/// Texture images per class for the pretraining, and their size.
const DEMO_TEXTURES_PER_CLASS: usize = 24;
const DEMO_TEXTURE_SIZE: u32 = 64;

/// Builds the demo experiment with every path under `out`.
pub fn demo_experiment(out: &Path) -> Result<Experiment> {
    let mut experiment: Experiment =
        serde_yaml_ng::from_str(DEMO_YAML).context("embedded experiments/demo.yaml is invalid")?;
    experiment.output_dir = Some(out.to_path_buf());
    experiment.raw_dir = Some(out.join("nnUNet_raw"));
    experiment.preprocessed_dir = Some(out.join("nnUNet_preprocessed"));
    for init in &mut experiment.initialisations {
        if let Some(spec) = init.pretrain.as_mut() {
            spec.data = out.join("sources").join(&spec.data);
        }
    }
    experiment.validate(Path::new("experiments/demo.yaml (embedded)"))?;
    Ok(experiment)
}

/// Writes the synthetic inputs unless they exist already.
pub fn write_sources(experiment: &Experiment) -> Result<()> {
    let raw = experiment.raw_dir.as_ref().expect("demo sets raw_dir");
    for dataset in &experiment.datasets {
        let folder = raw.join(dataset.folder_name());
        if !folder.join("dataset.json").exists() {
            synthetic::write_organ_dataset(&folder, DEMO_CASES, DEMO_SIZE, experiment.seed)
                .with_context(|| {
                    format!(
                        "cannot write the synthetic dataset into {}",
                        folder.display()
                    )
                })?;
            println!(
                "dataset     {} ({DEMO_CASES} synthetic cases)",
                folder.display()
            );
        }
    }
    for init in &experiment.initialisations {
        if let Some(spec) = &init.pretrain {
            let marker = spec.data.join(".complete");
            if !marker.exists() {
                synthetic::write_texture_images(
                    &spec.data,
                    DEMO_TEXTURES_PER_CLASS,
                    DEMO_TEXTURE_SIZE,
                    experiment.seed + 1,
                )
                .with_context(|| {
                    format!("cannot write texture images into {}", spec.data.display())
                })?;
                std::fs::write(&marker, b"")?;
                println!("textures    {}", spec.data.display());
            }
        }
    }
    Ok(())
}

/// Runs `swin-umamba demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let experiment = demo_experiment(&args.out)?;
    let layout = layout_for(&experiment);
    let cells = grid::expand(&experiment);
    let task_list = tasks::build_tasks(&experiment, &layout, &cells);
    if args.dry_run {
        for task in &task_list {
            let env: Vec<String> = task.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
            for command in &task.commands {
                println!(
                    "{}: {}swin-umamba {}",
                    task.id,
                    env.concat(),
                    runner::shell_words(command)
                );
            }
        }
        return Ok(());
    }
    println!("demo: synthetic data, CPU-sized budget (see experiments/demo.yaml)");
    write_sources(&experiment)?;
    let binary = std::env::current_exe().context("cannot locate the swin-umamba executable")?;
    let summary = {
        super::cli::write_overrides(&experiment, &layout)?;
        runner::run_tasks(&binary, &task_list, args.jobs)?
    };
    write_tables(&experiment, &layout, &cells)?;
    println!("raw data    {}", layout.raw.display());
    println!("preprocessed {}", layout.preprocessed.display());
    println!("results     {}", layout.root.join("results").display());
    println!("cell logs   {}", layout.root.join("cells").display());
    println!("took        {:.0} s", started.elapsed().as_secs_f64());
    let failed = summary.failed();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} demo task(s) failed: {}; each failed task's log path is printed above",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
