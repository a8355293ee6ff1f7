//! The epoch loop shared by every trainer, after `nnUNetTrainer.run_training`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use super::freeze::{apply_encoder_freeze, frozen_parameter_names};
use super::step::{train_step, validation_step, StepContext, StepOutcome};
use super::TrainerConfig;
use crate::train::checkpoint::{self, CheckpointState, RunInfo};
use crate::train::data::{epoch_rng, epoch_seed, Batch, BatchSource, Stream, TrainPlan};
use crate::train::error::TrainError;
use crate::train::logging::history::{dice_per_class, nan_mean, EpochRecord, History};
use crate::train::logging::progress::write_progress_png;
use crate::train::logging::tensorboard::EventWriter;
use crate::train::logging::text::TextLog;
use crate::train::loss::{DeepSupervisionLoss, DiceCeLoss};
use crate::train::network::{sorted_parameters, SegmentationNetwork};
use crate::train::optim::Optimizer;
use crate::train::precision::{GradScaler, Precision};

/// Checkpoint written after every epoch (nnU-Net's name, as the two below).
pub const LATEST: &str = "checkpoint_latest";
/// Checkpoint with the best moving-average pseudo-Dice.
pub const BEST: &str = "checkpoint_best";
/// Checkpoint written at the end of training.
pub const FINAL: &str = "checkpoint_final";

/// Everything about a run except the network and the data.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The fold folder.
    pub output_dir: PathBuf,
    /// Plan values.
    pub plan: TrainPlan,
    /// Trainer configuration.
    pub trainer: TrainerConfig,
    /// Run identity and seed.
    pub run: RunInfo,
    /// Device to train on.
    pub device: Device,
    /// Continue from the newest checkpoint in `output_dir`.
    pub resume: bool,
    /// Show a progress bar per epoch.
    pub show_progress: bool,
    /// Print log lines to stdout as well.
    pub echo_log: bool,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Per-epoch values, including epochs of earlier runs that were continued.
    pub history: History,
    /// Best moving-average pseudo-Dice.
    pub best_ema: Option<f64>,
    /// Non-finite training losses over the whole run.
    pub nonfinite_steps_total: usize,
    /// Sidecar of `checkpoint_final`.
    pub final_checkpoint: PathBuf,
}

/// Mutable state of a run that checkpoints carry.
struct Progress {
    next_epoch: usize,
    history: History,
    best_ema: Option<f64>,
    nonfinite_steps_total: usize,
}

/// Trains `net` on batches of `train_source`, validates on `validation_source`, and writes
/// checkpoints and logs into `spec.output_dir`.
pub fn train(
    mut spec: RunSpec,
    net: &mut dyn SegmentationNetwork,
    train_source: &mut dyn BatchSource,
    validation_source: &mut dyn BatchSource,
) -> Result<RunOutcome, TrainError> {
    let dir = spec.output_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io("creating", &dir, e))?;
    spec.trainer
        .resolve_loss_weights(net.deep_supervision_heads());
    net.set_deep_supervision(spec.trainer.deep_supervision);

    let precision = spec.trainer.precision.effective(spec.device);
    let mut optimizer = Optimizer::new(spec.trainer.optimizer.clone());
    let mut scaler = (precision == Precision::Fp16).then(GradScaler::default);
    let mut log = TextLog::open(&dir, spec.echo_log)?;
    let mut progress = Progress {
        next_epoch: 0,
        history: History::default(),
        best_ema: None,
        nonfinite_steps_total: 0,
    };
    if spec.resume {
        resume(
            &mut spec,
            net,
            &mut optimizer,
            &mut scaler,
            &mut progress,
            &mut log,
        )?;
    }
    log_start(&spec, net, precision, &mut log)?;

    let loss = DeepSupervisionLoss {
        inner: DiceCeLoss {
            batch_dice: spec.plan.batch_dice,
            ignore_label: spec.plan.ignore_label,
            ..DiceCeLoss::default()
        },
        weights: spec.trainer.loss_weights.clone(),
    };
    let mut events = EventWriter::create(&dir.join("tensorboard"))?;
    let end = spec.trainer.end_epoch();
    for epoch in progress.next_epoch..end {
        let record = run_epoch(
            &spec,
            net,
            &loss,
            precision,
            &mut optimizer,
            scaler.as_mut(),
            train_source,
            validation_source,
            &progress,
            epoch,
            &mut log,
        )?;
        progress.nonfinite_steps_total += record.nonfinite_steps;
        log.epoch(&record)?;
        write_epoch_scalars(&mut events, &record)?;
        progress.history.epochs.push(record.clone());
        write_progress_png(&progress.history, &dir.join("progress.png"))?;
        progress.next_epoch = epoch + 1;
        save_epoch_checkpoints(
            &spec,
            net,
            &optimizer,
            &scaler,
            &mut progress,
            epoch,
            &mut log,
        )?;
    }

    let final_checkpoint = save_named(&spec, net, &optimizer, &scaler, &progress, FINAL)?;
    // nnU-Net deletes checkpoint_latest once checkpoint_final exists.
    checkpoint::remove(&dir, LATEST)?;
    log.line(&format!(
        "training done after {} epochs",
        progress.next_epoch
    ))?;
    Ok(RunOutcome {
        history: progress.history,
        best_ema: progress.best_ema,
        nonfinite_steps_total: progress.nonfinite_steps_total,
        final_checkpoint,
    })
}

fn log_start(
    spec: &RunSpec,
    net: &dyn SegmentationNetwork,
    precision: Precision,
    log: &mut TextLog,
) -> Result<(), TrainError> {
    let config = serde_json::to_string(&spec.trainer).unwrap_or_default();
    log.line(&format!("trainer {config}"))?;
    log.line(&format!(
        "plan {}",
        serde_json::to_string(&spec.plan).unwrap_or_default()
    ))?;
    log.line(&format!(
        "run {} precision {precision:?} parameters {} frozen-during-freeze {}",
        serde_json::to_string(&spec.run).unwrap_or_default(),
        net.var_store().variables().len(),
        frozen_parameter_names(net).len()
    ))
}

/// Finds the checkpoint to continue from in nnU-Net's order: final, latest, best.
fn resume(
    spec: &mut RunSpec,
    net: &mut dyn SegmentationNetwork,
    optimizer: &mut Optimizer,
    scaler: &mut Option<GradScaler>,
    progress: &mut Progress,
    log: &mut TextLog,
) -> Result<(), TrainError> {
    let dir = spec.output_dir.clone();
    let candidate = [FINAL, LATEST, BEST]
        .iter()
        .map(|name| checkpoint::sidecar_path(&dir, name))
        .find(|path| path.exists());
    let Some(sidecar) = candidate else {
        log.line("--continue: no checkpoint found, starting a new run")?;
        return Ok(());
    };

    let loaded = checkpoint::load(&sidecar)?;
    let state = loaded.state;
    if state.trainer.name != spec.trainer.name || state.plan != spec.plan {
        return Err(TrainError::Checkpoint {
            path: sidecar,
            reason: format!(
                "it was written by trainer {:?} with plan {:?}, not trainer {:?} with plan {:?}; \
                 continue with the same --trainer and plan, or use another output folder",
                state.trainer.name, state.plan, spec.trainer.name, spec.plan
            ),
        });
    }

    checkpoint::load_weights(net.var_store(), &loaded.weights, true, &sidecar)?;
    optimizer.load_state(&state.optimizer_steps, loaded.optimizer, spec.device)?;
    if scaler.is_some() {
        *scaler = Some(state.grad_scaler.clone().unwrap_or_default());
    }
    spec.run.seed = state.run.seed;
    progress.next_epoch = state.next_epoch;
    progress.history = state.history;
    progress.best_ema = state.best_ema;
    progress.nonfinite_steps_total = state.nonfinite_steps_total;

    log.line(&format!(
        "continuing from {} at epoch {} with seed {}",
        sidecar.display(),
        progress.next_epoch,
        spec.run.seed
    ))
}

#[allow(clippy::too_many_arguments)]
fn run_epoch(
    spec: &RunSpec,
    net: &dyn SegmentationNetwork,
    loss: &DeepSupervisionLoss,
    precision: Precision,
    optimizer: &mut Optimizer,
    mut scaler: Option<&mut GradScaler>,
    train_source: &mut dyn BatchSource,
    validation_source: &mut dyn BatchSource,
    progress: &Progress,
    epoch: usize,
    log: &mut TextLog,
) -> Result<EpochRecord, TrainError> {
    let started = Instant::now();
    let trainer = &spec.trainer;
    let seed = spec.run.seed;
    tch::manual_seed(epoch_seed(seed, epoch, Stream::Torch) as i64);
    let frozen = apply_encoder_freeze(net, epoch, trainer.freeze_encoder_epochs);
    if trainer.freeze_encoder_epochs > 0 {
        log.line(if frozen {
            "encoder frozen"
        } else {
            "encoder trainable"
        })?;
    }
    let lr = trainer.schedule.lr_at(epoch);
    let params = sorted_parameters(net);
    let ctx = StepContext {
        net,
        params: &params,
        loss,
        precision,
        grad_clip_norm: trainer.grad_clip_norm,
    };

    let bar = progress_bar(spec.show_progress, trainer.iterations_per_epoch, epoch);
    let mut rng = epoch_rng(seed, epoch, Stream::Train);
    let mut data_wait = Duration::ZERO;
    let mut losses = Vec::with_capacity(trainer.iterations_per_epoch);
    let (mut nonfinite, mut consecutive) = (0usize, 0usize);
    for _ in 0..trainer.iterations_per_epoch {
        let waited = Instant::now();
        let batch = to_device(train_source.next_batch(&mut rng)?, spec.device);
        data_wait += waited.elapsed();
        match train_step(&ctx, optimizer, scaler.as_deref_mut(), &batch, lr)? {
            StepOutcome::Trained(value) => {
                losses.push(value);
                consecutive = 0;
            }
            StepOutcome::SkippedNonFinite => {
                nonfinite += 1;
                consecutive += 1;
                log.line(&format!("non-finite loss in epoch {epoch}, step skipped"))?;
                if consecutive >= trainer.max_consecutive_nonfinite {
                    return Err(TrainError::NonFiniteLoss {
                        count: consecutive,
                        epoch,
                    });
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut rng = epoch_rng(seed, epoch, Stream::Validation);
    let (mut tp, mut fp, mut fn_) = (Vec::new(), Vec::new(), Vec::new());
    let mut val_losses = Vec::new();
    for _ in 0..trainer.val_iterations_per_epoch {
        let waited = Instant::now();
        let batch = to_device(validation_source.next_batch(&mut rng)?, spec.device);
        data_wait += waited.elapsed();
        let outcome = validation_step(&ctx, &batch, spec.plan.ignore_label)?;
        val_losses.push(outcome.loss);
        accumulate(&mut tp, &outcome.tp);
        accumulate(&mut fp, &outcome.fp);
        accumulate(&mut fn_, &outcome.fn_);
    }
    let dice = dice_per_class(&tp, &fp, &fn_);
    let mean_fg_dice = nan_mean(&dice);
    Ok(EpochRecord {
        epoch,
        train_loss: mean(&losses),
        val_loss: mean(&val_losses),
        ema_fg_dice: progress.history.next_ema(mean_fg_dice),
        dice_per_class: dice,
        mean_fg_dice,
        lr,
        epoch_time_s: started.elapsed().as_secs_f64(),
        data_wait_s: data_wait.as_secs_f64(),
        nonfinite_steps: nonfinite,
        end_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    })
}

fn progress_bar(show: bool, iterations: usize, epoch: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(iterations as u64);
    if let Ok(style) = ProgressStyle::with_template("epoch {msg} {bar:40} {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(epoch.to_string());
    bar
}

fn to_device(batch: Batch, device: Device) -> Batch {
    Batch {
        data: batch.data.to_device(device),
        targets: batch.targets.iter().map(|t| t.to_device(device)).collect(),
    }
}

fn accumulate(total: &mut Vec<f64>, values: &[f64]) {
    if total.is_empty() {
        total.resize(values.len(), 0.0);
    }
    for (t, v) in total.iter_mut().zip(values) {
        *t += v;
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn write_epoch_scalars(events: &mut EventWriter, r: &EpochRecord) -> Result<(), TrainError> {
    let class_tags: Vec<String> = (1..=r.dice_per_class.len())
        .map(|c| format!("pseudo_dice/class_{c}"))
        .collect();
    let mut scalars: Vec<(&str, f64)> = vec![
        ("loss/train", r.train_loss),
        ("loss/validation", r.val_loss),
        ("pseudo_dice/mean", r.mean_fg_dice),
        ("pseudo_dice/ema", r.ema_fg_dice),
        ("lr", r.lr),
        ("time/epoch_s", r.epoch_time_s),
        ("time/data_wait_s", r.data_wait_s),
        ("nonfinite_steps", r.nonfinite_steps as f64),
    ];
    for (tag, value) in class_tags.iter().zip(&r.dice_per_class) {
        scalars.push((tag, *value));
    }
    events.scalars(r.epoch as i64, &scalars)
}

fn save_epoch_checkpoints(
    spec: &RunSpec,
    net: &dyn SegmentationNetwork,
    optimizer: &Optimizer,
    scaler: &Option<GradScaler>,
    progress: &mut Progress,
    epoch: usize,
    log: &mut TextLog,
) -> Result<(), TrainError> {
    // nnU-Net writes checkpoint_latest every `save_every` epochs; writing it every epoch
    // means a killed run loses at most the epoch in progress.
    save_named(spec, net, optimizer, scaler, progress, LATEST)?;
    let ema = progress
        .history
        .epochs
        .last()
        .map_or(f64::NAN, |r| r.ema_fg_dice);
    if progress.best_ema.is_none_or(|best| ema > best) {
        progress.best_ema = Some(ema);
        log.line(&format!("new best moving-average pseudo-Dice {ema:.4}"))?;
        save_named(spec, net, optimizer, scaler, progress, BEST)?;
    }
    if spec.trainer.save_every > 0 && (epoch + 1).is_multiple_of(spec.trainer.save_every) {
        save_named(
            spec,
            net,
            optimizer,
            scaler,
            progress,
            &format!("checkpoint_{epoch}"),
        )?;
    }
    Ok(())
}

fn save_named(
    spec: &RunSpec,
    net: &dyn SegmentationNetwork,
    optimizer: &Optimizer,
    scaler: &Option<GradScaler>,
    progress: &Progress,
    name: &str,
) -> Result<PathBuf, TrainError> {
    let state = CheckpointState {
        format_version: 0,
        trainer: spec.trainer.clone(),
        plan: spec.plan.clone(),
        run: spec.run.clone(),
        next_epoch: progress.next_epoch,
        best_ema: progress.best_ema,
        history: progress.history.clone(),
        optimizer_steps: Default::default(),
        grad_scaler: scaler.clone(),
        nonfinite_steps_total: progress.nonfinite_steps_total,
        weights_file: String::new(),
        optimizer_file: String::new(),
        weights_crc32c: 0,
        optimizer_crc32c: 0,
    };
    checkpoint::save(
        &spec.output_dir,
        name,
        &sorted_parameters(net),
        optimizer,
        state,
    )
}
