//! Runs the tasks of a grid with up to N at a time, skipping finished ones, and prints a
//! live status table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::tasks::Task;
use super::AblateError;

/// State of a task in the status table.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    Pending,
    Running(Instant),
    /// Finished by an earlier call; skipped.
    Skipped,
    Done(Duration),
    Failed {
        log: PathBuf,
        message: String,
    },
    /// Not started because a task it depends on failed.
    Blocked(String),
}

impl TaskState {
    fn label(&self) -> String {
        match self {
            TaskState::Pending => "pending".into(),
            TaskState::Running(start) => format!("running {}", format_duration(start.elapsed())),
            TaskState::Skipped => "done (earlier run)".into(),
            TaskState::Done(took) => format!("done in {}", format_duration(*took)),
            TaskState::Failed { log, message } => {
                format!("FAILED: {message}; log {}", log.display())
            }
            TaskState::Blocked(dep) => format!("blocked by failed `{dep}`"),
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self, TaskState::Skipped | TaskState::Done(_))
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Outcome of a whole call.
#[derive(Debug)]
pub struct RunSummary {
    pub states: BTreeMap<String, TaskState>,
}

impl RunSummary {
    pub fn failed(&self) -> Vec<&str> {
        self.states
            .iter()
            .filter(|(_, s)| matches!(s, TaskState::Failed { .. } | TaskState::Blocked(_)))
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

/// Runs `tasks` with `binary` (the `swin-umamba` executable), `jobs` at a time.
pub fn run_tasks(binary: &Path, tasks: &[Task], jobs: usize) -> Result<RunSummary, AblateError> {
    let jobs = jobs.max(1);
    let mut states: BTreeMap<String, TaskState> = BTreeMap::new();
    for task in tasks {
        let state = if task.is_done() {
            TaskState::Skipped
        } else {
            TaskState::Pending
        };
        states.insert(task.id.clone(), state);
    }
    let order: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let mut printer = StatusPrinter::new(&order);
    printer.print(&states);

    let (sender, receiver) = mpsc::channel::<(String, Result<Duration, String>)>();
    let mut running = 0usize;
    loop {
        block_dependents_of_failures(tasks, &mut states);
        for task in tasks {
            if running >= jobs {
                break;
            }
            if states[&task.id] != TaskState::Pending {
                continue;
            }
            let ready = task
                .depends_on
                .iter()
                .all(|dep| states.get(dep).is_none_or(|s| s.is_finished()));
            if !ready {
                continue;
            }
            states.insert(task.id.clone(), TaskState::Running(Instant::now()));
            running += 1;
            let task = task.clone();
            let binary = binary.to_path_buf();
            let sender = sender.clone();
            std::thread::spawn(move || {
                let outcome = execute(&binary, &task);
                let _ = sender.send((task.id.clone(), outcome));
            });
            printer.print(&states);
        }
        if running == 0 {
            break;
        }
        match receiver.recv_timeout(Duration::from_secs(5)) {
            Ok((id, outcome)) => {
                running -= 1;
                let task = tasks.iter().find(|t| t.id == id).expect("known task");
                let state = match outcome {
                    Ok(took) => TaskState::Done(took),
                    Err(message) => TaskState::Failed {
                        log: task.log_path(),
                        message,
                    },
                };
                states.insert(id, state);
                printer.print(&states);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => printer.refresh(&states),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    block_dependents_of_failures(tasks, &mut states);
    printer.print(&states);
    Ok(RunSummary { states })
}

fn block_dependents_of_failures(tasks: &[Task], states: &mut BTreeMap<String, TaskState>) {
    loop {
        let mut changed = false;
        for task in tasks {
            if states[&task.id] != TaskState::Pending {
                continue;
            }
            let failed_dep = task.depends_on.iter().find(|dep| {
                matches!(
                    states.get(*dep),
                    Some(TaskState::Failed { .. } | TaskState::Blocked(_))
                )
            });
            if let Some(dep) = failed_dep {
                states.insert(task.id.clone(), TaskState::Blocked(dep.clone()));
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// Runs a task's commands in order, appending their output to `task.log`; writes the
/// `task.done` marker (through a temporary name) only when every command succeeded.
pub fn execute(binary: &Path, task: &Task) -> Result<Duration, String> {
    let start = Instant::now();
    std::fs::create_dir_all(&task.dir)
        .map_err(|e| format!("cannot create {}: {e}", task.dir.display()))?;
    // Two runners, or a runner and a Slurm job, must not run one task into one folder.
    let _lock = lock_exclusive(&task.dir.join("task.lock")).map_err(|holder| {
        format!("another swin-umamba process is running this task ({holder}); wait for it to end")
    })?;
    if task.is_done() {
        return Ok(start.elapsed());
    }
    let log_path = task.log_path();
    let mut log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    for args in &task.commands {
        let _ = writeln!(log, "\n$ swin-umamba {}", shell_words(args));
        let stdout = log.try_clone().map_err(|e| e.to_string())?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let status = Command::new(binary)
            .args(args)
            .envs(task.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        if !status.success() {
            return Err(format!("`{}` exited with {status}", args[0]));
        }
    }
    let marker = task.done_marker();
    let temporary = marker.with_extension("done.tmp");
    std::fs::write(
        &temporary,
        format!("{:.1} s\n", start.elapsed().as_secs_f64()),
    )
    .and_then(|()| std::fs::rename(&temporary, &marker))
    .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(start.elapsed())
}

/// Takes an exclusive advisory lock (flock) on `path`. The kernel releases it when the
/// returned file is dropped or the process ends, also by SIGKILL, so no stale lock stays
/// behind. Returns an error text when another process has the lock or the file cannot be
/// opened.
pub fn lock_exclusive(path: &Path) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if status != 0 {
        return Err(format!("{} is locked", path.display()));
    }
    Ok(file)
}

/// Quotes arguments for display so a logged command can be pasted into a shell.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "'\"$`\\".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the status table: redrawn in place on a terminal, else a line per change.
struct StatusPrinter {
    order: Vec<String>,
    terminal: bool,
    lines_drawn: usize,
    last: BTreeMap<String, String>,
}

impl StatusPrinter {
    fn new(order: &[&str]) -> Self {
        Self {
            order: order.iter().map(|s| s.to_string()).collect(),
            terminal: std::io::stderr().is_terminal(),
            lines_drawn: 0,
            last: BTreeMap::new(),
        }
    }

    fn print(&mut self, states: &BTreeMap<String, TaskState>) {
        if self.terminal {
            self.redraw(states);
            return;
        }
        let width = self.order.iter().map(|s| s.len()).max().unwrap_or(0);
        for id in &self.order {
            let label = states[id].label();
            let shown = match &states[id] {
                TaskState::Running(_) => "running".to_string(),
                _ => label.clone(),
            };
            if self.last.get(id) != Some(&shown) {
                eprintln!("[ablate] {id:<width$}  {label}");
                self.last.insert(id.clone(), shown);
            }
        }
    }

    fn refresh(&mut self, states: &BTreeMap<String, TaskState>) {
        if self.terminal {
            self.redraw(states);
        }
    }

    fn redraw(&mut self, states: &BTreeMap<String, TaskState>) {
        let mut err = std::io::stderr().lock();
        if self.lines_drawn > 0 {
            let _ = write!(err, "\x1b[{}A\x1b[J", self.lines_drawn);
        }
        let width = self.order.iter().map(|s| s.len()).max().unwrap_or(0);
        for id in &self.order {
            let _ = writeln!(err, "{id:<width$}  {}", states[id].label());
        }
        self.lines_drawn = self.order.len();
    }
}
