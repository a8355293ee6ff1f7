//! The Slurm back-end of `swin-umamba ablate --slurm`: every unfinished task becomes one
//! batch job, chained to the jobs of the tasks it depends on with `afterok`, plus a last job
//! that rebuilds the tables once every other job has ended.
//!
//! A job runs `swin-umamba ablate EXPERIMENT --run-task ID`, which executes the task in
//! the job exactly as the local runner does: same commands, same `task.log`, and the
//! `task.done` marker only on success. A second `--slurm` call therefore skips finished
//! tasks, reuses the jobs still queued or running (their ids are kept in `slurm_job`
//! beside `task.log`) and resubmits the rest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::runner::shell_words;
use super::tasks::{Task, TaskKind};
use super::AblateError;

/// Resources of the batch jobs, from the experiment YAML's `slurm` block.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `--partition` of every job.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account` of every job.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos` of every job.
    #[serde(default)]
    pub qos: Option<String>,
    /// `--time` limit of every job, in any format sbatch takes (`2-00:00:00`, `90`).
    #[serde(default)]
    pub time: Option<String>,
    /// `--cpus-per-task` of every job.
    #[serde(default)]
    pub cpus_per_task: Option<u32>,
    /// `--mem` of every job (`32G`).
    #[serde(default)]
    pub mem: Option<String>,
    /// `--gres` of the jobs that run a network (pretrain, train and predict), for example
    /// `gpu:1`; planning, preprocessing and evaluation jobs get none.
    #[serde(default)]
    pub gres: Option<String>,
    /// Further `#SBATCH` options, one per entry (`--constraint=a100`).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// Outcome of `--slurm` for one task.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Finished by an earlier run; not submitted.
    Done,
    /// Still queued or running from an earlier call; its job id is reused.
    Queued(String),
    /// Submitted by this call.
    Submitted(String),
    /// Would be submitted (`--dry-run`).
    Planned,
}

/// Settings of one `--slurm` call: the binary, the experiment and the job resources.
pub struct Submitter<'a> {
    /// The `swin-umamba` executable the jobs run; it must be reachable from every node.
    pub binary: &'a Path,
    /// Absolute path of the experiment YAML.
    pub experiment: &'a Path,
    /// Working directory of every job: the submitting call's, so that relative paths
    /// in the tasks mean the same in the jobs.
    pub workdir: &'a Path,
    /// The `--only` pattern of the submitting call, passed on to the jobs.
    pub only: Option<&'a str>,
    pub config: &'a SlurmConfig,
    /// Folder for the aggregation job's script and log.
    pub tables_dir: PathBuf,
}

impl Submitter<'_> {
    /// Writes `job.sbatch` of every unfinished task and submits it with sbatch, in
    /// dependency order; returns each task's state and the aggregation job's id.
    pub fn submit(
        &self,
        tasks: &[Task],
        dry_run: bool,
    ) -> Result<(BTreeMap<String, JobState>, Option<String>), AblateError> {
        let mut states: BTreeMap<String, JobState> = BTreeMap::new();
        // `build_tasks` lists every task after the tasks it depends on, so one pass sees
        // each dependency's job id before the task that waits for it.
        for task in tasks {
            let state = if task.is_done() {
                JobState::Done
            } else if let Some(job) = live_job(&task.dir.join("slurm_job")) {
                JobState::Queued(job)
            } else {
                let dependencies = job_ids(&task.depends_on, &states);
                let placement = self.placement(&job_name(&task.id), &task.dir.join("slurm-%j.out"));
                let script = self.task_script(task, &placement);
                let script_path = task.dir.join("job.sbatch");
                if dry_run {
                    println!("# {} -> {}", task.id, script_path.display());
                    println!("{script}");
                    JobState::Planned
                } else {
                    write_file(&script_path, &script)?;
                    let job = sbatch(&script_path, &placement, &dependencies, "afterok")?;
                    write_file(&task.dir.join("slurm_job"), &format!("{job}\n"))?;
                    JobState::Submitted(job)
                }
            };
            states.insert(task.id.clone(), state);
        }

        let pending: Vec<String> = states
            .values()
            .filter_map(|s| match s {
                JobState::Queued(job) | JobState::Submitted(job) => Some(job.clone()),
                _ => None,
            })
            .collect();
        let placement = self.placement(
            "swin-umamba-aggregate",
            &self.tables_dir.join("aggregate-%j.out"),
        );
        let script = self.aggregate_script(&placement);
        let script_path = self.tables_dir.join("aggregate.sbatch");
        if dry_run {
            println!("# aggregate -> {}", script_path.display());
            println!("{script}");
            return Ok((states, None));
        }
        if pending.is_empty() {
            // Every task is done: the caller rebuilds the tables itself, no job needed.
            return Ok((states, None));
        }
        write_file(&script_path, &script)?;
        // `afterany`: the tables list whatever finished, also when some jobs failed.
        let aggregate = sbatch(&script_path, &placement, &pending, "afterany")?;
        Ok((states, Some(aggregate)))
    }

    /// Returns the sbatch options that name the job, its output file and its working
    /// directory. They go on sbatch's command line rather than into `#SBATCH` lines,
    /// because sbatch splits a directive at spaces and these paths may contain them.
    pub fn placement(&self, name: &str, output: &Path) -> Vec<String> {
        vec![
            format!("--job-name={name}"),
            format!("--output={}", output.display()),
            format!("--chdir={}", self.workdir.display()),
        ]
    }

    /// Returns the batch script of one task.
    pub fn task_script(&self, task: &Task, placement: &[String]) -> String {
        let runs_network = matches!(
            task.kind,
            TaskKind::Pretrain(_) | TaskKind::Train(_) | TaskKind::Predict(_)
        );
        let mut script = self.header(placement);
        if runs_network {
            if let Some(gres) = &self.config.gres {
                let _ = writeln!(script, "#SBATCH --gres={gres}");
            }
        }
        let mut args = vec![
            "ablate".to_string(),
            self.experiment.to_string_lossy().into_owned(),
            "--run-task".to_string(),
            task.id.clone(),
        ];
        if let Some(only) = self.only {
            args.extend(["--only".to_string(), only.to_string()]);
        }
        self.body(&mut script, &args);
        script
    }

    /// Returns the batch script that rebuilds the tables after every task job.
    pub fn aggregate_script(&self, placement: &[String]) -> String {
        let mut script = self.header(placement);
        let mut args = vec![
            "ablate".to_string(),
            self.experiment.to_string_lossy().into_owned(),
            "--aggregate-only".to_string(),
        ];
        if let Some(only) = self.only {
            args.extend(["--only".to_string(), only.to_string()]);
        }
        self.body(&mut script, &args);
        script
    }

    fn header(&self, placement: &[String]) -> String {
        let mut script = String::from("#!/bin/bash\n");
        let _ = writeln!(
            script,
            "# Submitted with: sbatch {} <this script>",
            shell_words(placement)
        );
        let mut option = |text: String| {
            script.push_str("#SBATCH ");
            script.push_str(&text);
            script.push('\n');
        };
        let settings = [
            ("partition", self.config.partition.clone()),
            ("account", self.config.account.clone()),
            ("qos", self.config.qos.clone()),
            ("time", self.config.time.clone()),
            (
                "cpus-per-task",
                self.config.cpus_per_task.map(|n| n.to_string()),
            ),
            ("mem", self.config.mem.clone()),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                option(format!("--{key}={value}"));
            }
        }
        for extra in &self.config.extra_args {
            option(extra.clone());
        }
        script
    }

    fn body(&self, script: &mut String, args: &[String]) {
        script.push_str("set -euo pipefail\n");
        let _ = writeln!(
            script,
            "exec {} {}",
            shell_words(&[self.binary.to_string_lossy().into_owned()]),
            shell_words(args)
        );
    }
}

fn job_ids(dependencies: &[String], states: &BTreeMap<String, JobState>) -> Vec<String> {
    dependencies
        .iter()
        .filter_map(|dep| match states.get(dep) {
            Some(JobState::Queued(job) | JobState::Submitted(job)) => Some(job.clone()),
            _ => None,
        })
        .collect()
}

/// Returns a job name Slurm shows in `squeue`: the task id with `/` and spaces replaced.
fn job_name(task_id: &str) -> String {
    let name: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("swin-umamba_{name}")
}

/// Returns the job id kept in `path` when squeue still lists that job as waiting or
/// running, so that a second `--slurm` call does not submit the task twice.
fn live_job(path: &Path) -> Option<String> {
    let job = std::fs::read_to_string(path).ok()?.trim().to_string();
    if job.is_empty() {
        return None;
    }
    let output = Command::new("squeue")
        .args(["--noheader", "--jobs", &job, "--format=%T"])
        .output()
        .ok()?;
    let state = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let live = [
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
    ];
    (output.status.success() && live.contains(&state.as_str())).then_some(job)
}

/// Submits `script` and returns the job id; `dependencies` wait with `kind`
/// (`afterok` or `afterany`), and a job whose dependency can never be met is cancelled.
fn sbatch(
    script: &Path,
    placement: &[String],
    dependencies: &[String],
    kind: &str,
) -> Result<String, AblateError> {
    let mut command = Command::new("sbatch");
    command.arg("--parsable").args(placement);
    if !dependencies.is_empty() {
        command.arg(format!("--dependency={kind}:{}", dependencies.join(":")));
        command.arg("--kill-on-invalid-dep=yes");
    }
    command.arg(script);
    let output = command.output().map_err(|source| AblateError::Slurm {
        script: script.to_path_buf(),
        message: format!(
            "cannot start sbatch ({source}); run on a Slurm login node, or without --slurm \
             to run the tasks here"
        ),
    })?;
    if !output.status.success() {
        return Err(AblateError::Slurm {
            script: script.to_path_buf(),
            message: format!(
                "sbatch exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let text = String::from_utf8_lossy(&output.stdout);
    let job = text.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err(AblateError::Slurm {
            script: script.to_path_buf(),
            message: format!("sbatch printed {:?} instead of a job id", text.trim()),
        });
    }
    Ok(job)
}

fn write_file(path: &Path, text: &str) -> Result<(), AblateError> {
    let io = |source| AblateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
