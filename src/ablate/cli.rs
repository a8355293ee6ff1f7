//! Command-line glue of `swin-umamba ablate`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::aggregate::{self, DatasetTable};
use super::config::Experiment;
use super::grid::{self, Layout};
use super::runner::{self, shell_words};
use super::slurm;
use super::tasks::{self, Task};
use super::AblateError;
use crate::plot::{self, Bar};

/// Arguments of `swin-umamba ablate`.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    /// Experiment YAML (see `experiments/`).
    pub experiment: PathBuf,
    /// Print the grid and every command without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Tasks run at the same time (each training run uses all intra-op threads).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Run only the cells whose id (`DatasetXXX_Name/model/init/fold_F`) matches this
    /// pattern; `*` matches any run of characters.
    #[arg(long)]
    pub only: Option<String>,
    /// Only rebuild the tables from finished cells.
    #[arg(long)]
    pub aggregate_only: bool,
    /// Submit every unfinished task as a Slurm batch job (sbatch), each waiting for the
    /// jobs of the tasks it depends on, instead of running the tasks here. Resources come
    /// from the YAML's `slurm` block; a last job rebuilds the tables.
    #[arg(long, conflicts_with = "aggregate_only")]
    pub slurm: bool,
    /// Run the one task with this id here and exit (the command each Slurm job runs).
    #[arg(long, value_name = "TASK_ID", conflicts_with_all = ["slurm", "aggregate_only", "dry_run"])]
    pub run_task: Option<String>,
}

/// Output folders of an experiment: the YAML's `output_dir`, else `runs/<name>`.
pub fn layout_for(experiment: &Experiment) -> Layout {
    let root = experiment
        .output_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&experiment.name));
    let raw = experiment
        .raw_dir
        .clone()
        .or_else(|| std::env::var_os("nnUNet_raw").map(PathBuf::from))
        .unwrap_or_else(|| root.join("nnUNet_raw"));
    let preprocessed = experiment
        .preprocessed_dir
        .clone()
        .or_else(|| std::env::var_os("nnUNet_preprocessed").map(PathBuf::from))
        .unwrap_or_else(|| root.join("nnUNet_preprocessed"));
    Layout {
        root,
        raw,
        preprocessed,
    }
}

/// Runs `swin-umamba ablate`.
pub fn run(args: AblateArgs) -> Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    let binary = std::env::current_exe().context("cannot locate the swin-umamba executable")?;
    let layout = layout_for(&experiment);
    let cells = grid::filter(grid::expand(&experiment), args.only.as_deref());
    if cells.is_empty() {
        bail!(
            "no cell of {} matches --only {:?}; cell ids look like Dataset042_Name/swin-umamba/imagenet/fold_0",
            args.experiment.display(),
            args.only.unwrap_or_default()
        );
    }
    let task_list = tasks::build_tasks(&experiment, &layout, &cells);
    // Rebuilding the tables reads only the finished cells, so it needs no inputs.
    let mut missing = Vec::new();
    if !args.aggregate_only {
        missing.extend(experiment.missing_inputs());
        missing.extend(missing_raw_datasets(&experiment, &layout));
    }
    if !missing.is_empty() {
        if !args.dry_run {
            bail!(
                "{} names inputs that do not exist (relative paths start at the YAML's \
                 folder); fix them or provide the files, then run again:\n  {}",
                args.experiment.display(),
                missing.join("\n  ")
            );
        }
        for problem in &missing {
            eprintln!("[ablate] warning: {problem}; a run would stop here");
        }
    }
    if let Some(id) = &args.run_task {
        return run_one_task(&experiment, &layout, &binary, &task_list, id);
    }
    if args.slurm {
        return submit_to_slurm(&args, &experiment, &layout, &binary, &cells, &task_list);
    }
    if args.dry_run {
        print_plan(&experiment, &layout, &cells, &task_list);
        return Ok(());
    }
    if !args.aggregate_only {
        eprintln!(
            "[ablate] {}: {} cells, {} tasks, output in {}",
            experiment.name,
            cells.len(),
            task_list.len(),
            layout.root.display()
        );
        std::fs::create_dir_all(&layout.root)
            .with_context(|| format!("cannot create {}", layout.root.display()))?;
        let lock_path = layout.root.join("ablate.lock");
        let _runner_lock = runner::lock_exclusive(&lock_path).map_err(|problem| {
            anyhow::anyhow!(
                "another `swin-umamba ablate` is running on {} ({problem}); wait for it to \
                 end, or give this grid another output_dir",
                layout.root.display()
            )
        })?;
        let summary = {
            write_overrides(&experiment, &layout)?;
            runner::run_tasks(&binary, &task_list, args.jobs)?
        };
        let failed = summary.failed();
        write_tables(&experiment, &layout, &cells)?;
        if !failed.is_empty() {
            bail!(
                "{} task(s) failed or were blocked: {}; read each failed task's task.log, fix the cause and run the same command again (finished work is skipped)",
                failed.len(),
                failed.join(", ")
            );
        }
        return Ok(());
    }
    write_tables(&experiment, &layout, &cells)?;
    Ok(())
}

/// Writes the plan overrides of the grid's training budget, which plan tasks read.
pub(super) fn write_overrides(experiment: &Experiment, layout: &Layout) -> Result<()> {
    tasks::write_budget_overrides(experiment, layout).with_context(|| {
        format!(
            "cannot write plan overrides under {}",
            layout.root.display()
        )
    })
}

/// Lists the datasets that have no `convert` block and are not in the raw folder either,
/// so that their prepare task could only fail.
fn missing_raw_datasets(experiment: &Experiment, layout: &Layout) -> Vec<String> {
    experiment
        .datasets
        .iter()
        .filter(|d| d.convert.is_none())
        .filter(|d| crate::dataset::find_dataset(&layout.raw, &d.id.to_string()).is_err())
        .map(|d| {
            format!(
                "datasets: {} not found in {}; add a `convert:` block, or point raw_dir or \
                 $nnUNet_raw at the folder that contains it",
                d.folder_name(),
                layout.raw.display()
            )
        })
        .collect()
}

/// Runs one task in this process, as a Slurm job does, after writing the plan overrides
/// that its commands may read.
fn run_one_task(
    experiment: &Experiment,
    layout: &Layout,
    binary: &Path,
    task_list: &[Task],
    id: &str,
) -> Result<()> {
    let Some(task) = task_list.iter().find(|t| t.id == id) else {
        bail!(
            "--run-task {id:?} is not a task of {}; `--dry-run` lists the task ids",
            experiment.name
        );
    };
    if task.is_done() {
        eprintln!("[ablate] {id}: done by an earlier run, nothing to do");
        return Ok(());
    }
    write_overrides(experiment, layout)?;
    eprintln!("[ablate] {id}: running, log {}", task.log_path().display());
    match runner::execute(binary, task) {
        Ok(took) => {
            eprintln!("[ablate] {id}: done in {:.1} s", took.as_secs_f64());
            Ok(())
        }
        Err(message) => bail!("{id} failed: {message}; log {}", task.log_path().display()),
    }
}

/// Submits the unfinished tasks as Slurm jobs and prints each task's job.
fn submit_to_slurm(
    args: &AblateArgs,
    experiment: &Experiment,
    layout: &Layout,
    binary: &Path,
    cells: &[grid::Cell],
    task_list: &[Task],
) -> Result<()> {
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let experiment_path = std::path::absolute(&args.experiment)
        .with_context(|| format!("cannot resolve {}", args.experiment.display()))?;
    if !args.dry_run {
        write_overrides(experiment, layout)?;
    }
    let submitter = slurm::Submitter {
        binary,
        experiment: &experiment_path,
        workdir: &workdir,
        only: args.only.as_deref(),
        config: &experiment.slurm,
        tables_dir: layout.root.join("tables"),
    };
    let (states, aggregate) = submitter.submit(task_list, args.dry_run)?;
    for task in task_list {
        let label = match &states[&task.id] {
            slurm::JobState::Done => "done (earlier run)".to_string(),
            slurm::JobState::Queued(job) => format!("job {job} (queued earlier)"),
            slurm::JobState::Submitted(job) => format!("job {job}"),
            slurm::JobState::Planned => "would be submitted".to_string(),
        };
        eprintln!("[ablate] {:<64} {label}", task.id);
    }
    match aggregate {
        Some(job) => eprintln!(
            "[ablate] tables: job {job} writes {} once every job has ended; `squeue --me` \
             shows progress, each task's log is task.log in its folder",
            layout.root.join("tables").display()
        ),
        None if !args.dry_run => {
            eprintln!("[ablate] every task is done; no job submitted");
            write_tables(experiment, layout, cells)?;
        }
        None => {}
    }
    Ok(())
}

fn print_plan(experiment: &Experiment, layout: &Layout, cells: &[grid::Cell], tasks: &[Task]) {
    println!(
        "experiment {} ({} cells, {} tasks)",
        experiment.name,
        cells.len(),
        tasks.len()
    );
    println!("output      {}", layout.root.display());
    println!("raw         {}", layout.raw.display());
    println!("preprocessed {}", layout.preprocessed.display());
    println!("\ncells:");
    for cell in cells {
        println!("  {}  (trainer {})", cell.id(), cell.trainer);
    }
    println!("\ntasks:");
    for task in tasks {
        let state = if task.is_done() { " [done]" } else { "" };
        println!("  {}{}", task.id, state);
        if !task.depends_on.is_empty() {
            println!("    after: {}", task.depends_on.join(", "));
        }
        let env: Vec<String> = task.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for command in &task.commands {
            let prefix = if env.is_empty() {
                String::new()
            } else {
                format!("{} ", env.join(" "))
            };
            println!("    $ {prefix}swin-umamba {}", shell_words(command));
        }
    }
}

/// Writes the Markdown and CSV tables and one bar chart per dataset; returns the tables.
pub fn write_tables(
    experiment: &Experiment,
    layout: &Layout,
    cells: &[grid::Cell],
) -> Result<Vec<DatasetTable>> {
    let tables =
        aggregate::build_tables(experiment, layout, cells, &|cell| model_cost(layout, cell));
    let dir = layout.tables_dir();
    std::fs::create_dir_all(&dir).map_err(|source| AblateError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut markdown = format!("# {}\n\n{}\n\n", experiment.name, experiment.description);
    let mut csv = String::new();
    for (index, table) in tables.iter().enumerate() {
        markdown.push_str(&aggregate::to_markdown(table));
        markdown.push('\n');
        let table_csv = aggregate::to_csv(table);
        if index == 0 {
            csv.push_str(&table_csv);
        } else {
            csv.extend(table_csv.lines().skip(1).map(|l| format!("{l}\n")));
        }
        let chart = dir.join(format!("{}.png", table.dataset));
        bar_chart(table, &chart)?;
        println!("chart       {}", chart.display());
    }
    let markdown_path = dir.join("results.md");
    let csv_path = dir.join("results.csv");
    write_atomic(&markdown_path, &markdown)?;
    write_atomic(&csv_path, &csv)?;
    println!("table       {}", markdown_path.display());
    println!("table (csv) {}", csv_path.display());
    println!("\n{markdown}");
    Ok(tables)
}

fn bar_chart(table: &DatasetTable, path: &Path) -> Result<()> {
    let Some(metric) = table.metrics.first() else {
        return Ok(());
    };
    let models: Vec<&String> = {
        let mut seen = Vec::new();
        for row in &table.rows {
            if !seen.contains(&&row.model) {
                seen.push(&row.model);
            }
        }
        seen
    };
    let bars: Vec<Bar> = table
        .rows
        .iter()
        .filter_map(|row| {
            let (mean, std) = row.metrics.get(metric)?;
            let colour = models.iter().position(|m| *m == &row.model).unwrap_or(0);
            Some(Bar {
                label: format!("{}\n{}", row.model, row.initialisation),
                value: mean * 100.0,
                error: std * 100.0,
                colour,
            })
        })
        .collect();
    let title = format!("{} {}", table.dataset, metric.to_uppercase());
    plot::bar_chart(path, &title, "percent, mean and std over folds", &bars).map_err(|source| {
        AblateError::Chart {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Parameter count and FLOPs of a cell's network at its plan's patch size, built from the
/// configuration `train-fold` wrote next to its checkpoints; None before the cell trained.
fn model_cost(layout: &Layout, cell: &grid::Cell) -> Option<aggregate::ModelCost> {
    use crate::nets::{self, ModelName};
    let fold_dir = layout.fold_dir(cell);
    let name: ModelName = cell.model.parse().ok()?;
    let config = name.read_config(&fold_dir.join("model_config.yaml")).ok()?;
    let trainer_dir = fold_dir.parent()?;
    let plans = crate::plan::Plans::load(&trainer_dir.join("plans.json")).ok()?;
    let patch = plans.configuration("2d").ok()?.patch_size;
    let dataset = crate::dataset::DatasetJson::load(&trainer_dir.join("dataset.json")).ok()?;
    let classes = dataset.foreground_labels().len() as i64 + 1;
    let channels = dataset.num_channels() as i64;
    let model = nets::build(
        name,
        &config,
        channels,
        classes,
        (patch[0], patch[1]),
        tch::Device::Cpu,
    )
    .ok()?;
    Some(aggregate::ModelCost {
        parameters: model.parameter_count() as u64,
        gflops: model.flops(patch[0], patch[1]).total() / 1e9,
    })
}
