//! The pretraining loop. It trains a classifier with AdamW, a per-iteration cosine schedule
//! with linear warm-up, label smoothing and drop path, and validates top-1/top-5 every epoch.
//! Checkpoints are resumable, and the final one has VMamba v0's layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

pub use super::classifier::sort_official_order;
use super::classifier::{ClassifierConfig, VmambaClassifier};
use super::data::{self, ClassificationData};
use super::torch_save::{self, PickleValue};
use crate::train::logging::tensorboard::EventWriter;
use crate::train::optim::{Optimizer, OptimizerConfig};

/// Errors of the pretraining run.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Save(#[from] torch_save::TorchSaveError),
    #[error("libtorch operation failed: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{action} {path} failed: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("training step failed: {0}")]
    Train(#[from] crate::train::error::TrainError),
    #[error("cannot continue from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
    #[error("invalid setting {name} = {value}: {reason}")]
    Setting {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("loss became {value} at epoch {epoch}, iteration {iteration}; lower --lr or raise --warmup-epochs")]
    NonFinite {
        value: f64,
        epoch: usize,
        iteration: usize,
    },
}

/// The recipe; every field is a `pretrain` flag, and the defaults are the Swin/VMamba
/// ImageNet recipe scaled as written on each field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub image_size: u32,
    /// Peak learning rate after warm-up.
    pub lr: f64,
    /// Learning rate at the start of the warm-up.
    pub warmup_lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    pub warmup_epochs: usize,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    pub drop_path: f64,
    /// Gradient-norm clipping bound (Swin's recipe uses 5.0); 0 turns it off.
    pub clip_grad: f64,
    pub seed: u64,
    pub workers: usize,
    /// In a flat folder, every `val_every`-th image of a class is held out.
    pub val_every: usize,
}

/// Learning rate at iteration `step` of `total`, with `warmup` warm-up iterations:
/// linear from `warmup_lr` to `lr`, then cosine from `lr` to `min_lr` (timm's
/// CosineLRScheduler stepped per iteration, as the Swin recipe does).
pub fn lr_at(recipe: &Recipe, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return recipe.warmup_lr + (recipe.lr - recipe.warmup_lr) * step as f64 / warmup as f64;
    }
    let span = (total - warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    recipe.min_lr
        + 0.5 * (recipe.lr - recipe.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Parameters that get no weight decay: 1-D tensors (norm weights, biases, `Ds`) and the
/// SSM's `A_logs`, as the VMamba recipe marks them.
pub fn skips_weight_decay(name: &str, tensor: &Tensor) -> bool {
    tensor.dim() <= 1 || name.ends_with(".bias") || name.ends_with("A_logs") || name.ends_with("Ds")
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Everything but tensors that `--continue` needs, written next to the latest weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    pub next_epoch: usize,
    pub recipe: Recipe,
    pub classifier: ClassifierConfig,
    pub classes: Vec<String>,
    pub decay_steps: BTreeMap<String, u64>,
    pub no_decay_steps: BTreeMap<String, u64>,
    pub history: Vec<EpochRecord>,
}

/// The resume point: a JSON that names the weights and optimiser files of its epoch.
/// Those files carry the epoch in their names and the JSON is renamed into place last,
/// so a run killed at any moment leaves a JSON whose files are complete.
const LATEST_STATE: &str = "checkpoint_latest.json";

fn latest_weights(epoch: usize) -> String {
    format!("checkpoint_latest.epoch{epoch}.safetensors")
}

fn latest_optimizer(epoch: usize) -> String {
    format!("checkpoint_latest.epoch{epoch}.optimizer.safetensors")
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PretrainError + 'a {
    move |source| PretrainError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn write_safetensors(tensors: &[(String, Tensor)], path: &Path) -> Result<(), PretrainError> {
    let temporary = path.with_extension("safetensors.tmp");
    let named: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.to_device(Device::Cpu)))
        .collect();
    Tensor::write_safetensors(&named, &temporary)?;
    std::fs::rename(&temporary, path).map_err(io_error("renaming", path))
}

fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<(), PretrainError> {
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    std::fs::write(&temporary, text).map_err(io_error("writing", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error("renaming", path))
}

fn named_parameters(model: &VmambaClassifier) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    super::classifier::sort_official_order(&mut params);
    params
}

/// Runs pretraining on `data_dir`, writing everything into `out`.
pub fn pretrain(
    data_dir: &Path,
    out: &Path,
    recipe: Recipe,
    classifier: ClassifierConfig,
    device: Device,
    resume: bool,
) -> Result<Vec<EpochRecord>, PretrainError> {
    if !recipe.image_size.is_multiple_of(32) {
        let nearest = ((recipe.image_size as f64 / 32.0).round() as u32).max(1) * 32;
        return Err(PretrainError::Setting {
            name: "--image-size",
            value: recipe.image_size.to_string(),
            reason: format!("VMamba needs a multiple of 32; use {nearest}"),
        });
    }
    std::fs::create_dir_all(out).map_err(io_error("creating", out))?;
    let dataset = data::load(data_dir, recipe.val_every)?;
    // The initial weights come from libtorch's global generator, so seed it first: two
    // runs with the same seed start from the same weights.
    tch::manual_seed(recipe.seed as i64);
    let mut model = VmambaClassifier::new(&classifier, dataset.classes.len() as i64, device);
    let (mut recipe, mut history, mut start_epoch) = (recipe, Vec::new(), 0usize);
    let decay_config = OptimizerConfig::AdamW {
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: recipe.weight_decay,
    };
    let no_decay_config = OptimizerConfig::AdamW {
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut decay_opt = Optimizer::new(decay_config);
    let mut no_decay_opt = Optimizer::new(no_decay_config);

    let state_path = out.join(LATEST_STATE);
    if resume && state_path.exists() {
        let text =
            std::fs::read_to_string(&state_path).map_err(io_error("reading", &state_path))?;
        let state: ResumeState =
            serde_json::from_str(&text).map_err(|e| PretrainError::Resume {
                path: state_path.clone(),
                reason: e.to_string(),
            })?;
        if state.classes != dataset.classes {
            return Err(PretrainError::Resume {
                path: state_path,
                reason: format!(
                    "the checkpoint has {} classes but {} has {}; continue with the same data or start a new --out folder",
                    state.classes.len(),
                    data_dir.display(),
                    dataset.classes.len()
                ),
            });
        }
        model = VmambaClassifier::new(&state.classifier, dataset.classes.len() as i64, device);
        let weights = out.join(latest_weights(state.next_epoch));
        model.vs.load(&weights).map_err(|e| PretrainError::Resume {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
        let moments = Tensor::read_safetensors(out.join(latest_optimizer(state.next_epoch)))?;
        let (decay_moments, no_decay_moments): (Vec<_>, Vec<_>) = moments
            .into_iter()
            .partition(|(k, _)| k.starts_with("decay."));
        let strip = |v: Vec<(String, Tensor)>, prefix: &str| -> Vec<(String, Tensor)> {
            v.into_iter()
                .map(|(k, t)| (k.trim_start_matches(prefix).to_string(), t))
                .collect()
        };
        decay_opt.load_state(&state.decay_steps, strip(decay_moments, "decay."), device)?;
        no_decay_opt.load_state(
            &state.no_decay_steps,
            strip(no_decay_moments, "no_decay."),
            device,
        )?;
        recipe = Recipe {
            epochs: recipe.epochs.max(state.recipe.epochs),
            ..state.recipe
        };
        history = state.history;
        start_epoch = state.next_epoch;
        eprintln!(
            "[pretrain] continuing at epoch {start_epoch} from {}",
            state_path.display()
        );
    }

    let mut events = EventWriter::create(&out.join("tensorboard"))?;
    let log_path = out.join("pretrain_log.txt");
    let iterations = dataset.train.len() / recipe.batch_size.max(1);
    if iterations == 0 {
        return Err(PretrainError::Setting {
            name: "--batch-size",
            value: recipe.batch_size.to_string(),
            reason: format!(
                "larger than the {} training images; use at most that many",
                dataset.train.len()
            ),
        });
    }
    let total = iterations * recipe.epochs;
    let warmup = iterations * recipe.warmup_epochs.min(recipe.epochs);
    eprintln!(
        "[pretrain] {} classes, {} training and {} validation images, {} iterations per epoch at {}×{} pixels, batch {}",
        dataset.classes.len(),
        dataset.train.len(),
        dataset.val.len(),
        iterations,
        recipe.image_size,
        recipe.image_size,
        recipe.batch_size
    );
    for epoch in start_epoch..recipe.epochs {
        let started = Instant::now();
        tch::manual_seed(recipe.seed as i64 + epoch as i64);
        let train_loss = train_epoch(
            &model,
            &dataset,
            &recipe,
            epoch,
            iterations,
            warmup,
            total,
            &mut decay_opt,
            &mut no_decay_opt,
        )?;
        let (val_loss, top1, top5) = validate(&model, &dataset, &recipe, epoch)?;
        let lr = lr_at(&recipe, (epoch + 1) * iterations - 1, warmup, total);
        let record = EpochRecord {
            epoch,
            train_loss,
            val_loss,
            top1,
            top5,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        let line = format!(
            "epoch {:4}  train_loss {:.4}  val_loss {:.4}  top1 {:.4}  top5 {:.4}  lr {:.3e}  time {:.1} s",
            record.epoch, record.train_loss, record.val_loss, record.top1, record.top5, record.lr, record.seconds
        );
        history.push(record);
        // The checkpoint goes first: a run killed after it resumes at the next epoch, so
        // the log and TensorBoard never get an epoch twice.
        save_latest(
            out,
            &model,
            &recipe,
            &dataset,
            &decay_opt,
            &no_decay_opt,
            epoch + 1,
            &history,
        )?;
        eprintln!("[pretrain] {line}");
        append_line(&log_path, &line)?;
        events.scalars(
            epoch as i64,
            &[
                ("train/loss", train_loss),
                ("val/loss", val_loss),
                ("val/top1", top1),
                ("val/top5", top5),
                ("train/lr", lr),
            ],
        )?;
    }
    save_final(out, &model)?;
    Ok(history)
}

#[allow(clippy::too_many_arguments)]
fn train_epoch(
    model: &VmambaClassifier,
    dataset: &ClassificationData,
    recipe: &Recipe,
    epoch: usize,
    iterations: usize,
    warmup: usize,
    total: usize,
    decay_opt: &mut Optimizer,
    no_decay_opt: &mut Optimizer,
) -> Result<f64, PretrainError> {
    let device = model.vs.device();
    let params = named_parameters(model);
    let (no_decay, decay): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(name, t)| skips_weight_decay(name, t));
    let batches = data::epoch_batches(
        &dataset.train,
        recipe.batch_size,
        recipe.image_size,
        true,
        recipe.seed,
        epoch as u64,
        recipe.workers,
    );
    let bar = progress_bar(iterations as u64, &format!("epoch {epoch} train"));
    let mut losses = Vec::new();
    for (iteration, batch) in batches.into_iter().enumerate() {
        let batch = batch?;
        let lr = lr_at(recipe, epoch * iterations + iteration, warmup, total);
        let logits = model.forward(&batch.images.to_device(device), true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &batch.labels.to_device(device),
            None,
            Reduction::Mean,
            -100,
            recipe.label_smoothing,
        );
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(PretrainError::NonFinite {
                value,
                epoch,
                iteration,
            });
        }
        for (_, p) in decay.iter().chain(no_decay.iter()) {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        loss.backward();
        if recipe.clip_grad > 0.0 {
            let all: Vec<(String, Tensor)> = decay
                .iter()
                .chain(no_decay.iter())
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect();
            crate::train::optim::clip_grad_norm(&all, recipe.clip_grad)?;
        }
        decay_opt.step(&decay, lr)?;
        no_decay_opt.step(&no_decay, lr)?;
        losses.push(value);
        bar.set_message(format!("loss {value:.4} lr {lr:.2e}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(losses.iter().sum::<f64>() / losses.len().max(1) as f64)
}

fn validate(
    model: &VmambaClassifier,
    dataset: &ClassificationData,
    recipe: &Recipe,
    epoch: usize,
) -> Result<(f64, f64, f64), PretrainError> {
    let device = model.vs.device();
    let batches = data::epoch_batches(
        &dataset.val,
        recipe.batch_size,
        recipe.image_size,
        false,
        recipe.seed,
        epoch as u64,
        recipe.workers,
    );
    let (mut loss_sum, mut top1, mut top5, mut count) = (0.0, 0.0, 0.0, 0usize);
    tch::no_grad(|| -> Result<(), PretrainError> {
        for batch in batches {
            let batch = batch?;
            let labels = batch.labels.to_device(device);
            let logits = model.forward(&batch.images.to_device(device), false);
            let n = labels.size()[0] as usize;
            let loss =
                logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, -100, 0.0);
            loss_sum += loss.double_value(&[]);
            let k = 5.min(logits.size()[1]);
            let (_, top) = logits.topk(k, 1, true, true);
            let hits = top.eq_tensor(&labels.unsqueeze(1)).to_kind(Kind::Float);
            top1 += hits.select(1, 0).sum(Kind::Double).double_value(&[]);
            top5 += hits.sum(Kind::Double).double_value(&[]);
            count += n;
        }
        Ok(())
    })?;
    let n = count.max(1) as f64;
    Ok((loss_sum / n, top1 / n, top5 / n))
}

#[allow(clippy::too_many_arguments)]
fn save_latest(
    out: &Path,
    model: &VmambaClassifier,
    recipe: &Recipe,
    dataset: &ClassificationData,
    decay_opt: &Optimizer,
    no_decay_opt: &Optimizer,
    next_epoch: usize,
    history: &[EpochRecord],
) -> Result<(), PretrainError> {
    write_safetensors(
        &named_parameters(model),
        &out.join(latest_weights(next_epoch)),
    )?;
    let mut moments: Vec<(String, Tensor)> = decay_opt
        .state_tensors()
        .into_iter()
        .map(|(k, t)| (format!("decay.{k}"), t))
        .collect();
    moments.extend(
        no_decay_opt
            .state_tensors()
            .into_iter()
            .map(|(k, t)| (format!("no_decay.{k}"), t)),
    );
    write_safetensors(&moments, &out.join(latest_optimizer(next_epoch)))?;
    let state = ResumeState {
        next_epoch,
        recipe: recipe.clone(),
        classifier: model.config.clone(),
        classes: dataset.classes.clone(),
        decay_steps: decay_opt.step_counts(),
        no_decay_steps: no_decay_opt.step_counts(),
        history: history.to_vec(),
    };
    write_json(&state, &out.join(LATEST_STATE))?;
    if next_epoch > 0 {
        for old in [
            latest_weights(next_epoch - 1),
            latest_optimizer(next_epoch - 1),
        ] {
            let _ = std::fs::remove_file(out.join(old));
        }
    }
    Ok(())
}

/// Writes `checkpoint_final.pth` (a dict with `model`, the official VMamba v0 layout that
/// `torch.load` and the Swin-UMamba loaders read) and `checkpoint_final.safetensors`.
fn save_final(out: &Path, model: &VmambaClassifier) -> Result<(), PretrainError> {
    let params = named_parameters(model);
    write_safetensors(&params, &out.join("checkpoint_final.safetensors"))?;
    let state: Vec<(PickleValue, PickleValue)> = params
        .iter()
        .map(|(k, t)| {
            (
                PickleValue::str(k),
                PickleValue::Tensor(t.to_device(Device::Cpu).to_kind(Kind::Float)),
            )
        })
        .collect();
    let root = PickleValue::Dict(vec![(
        PickleValue::str("model"),
        PickleValue::OrderedDict(state),
    )]);
    torch_save::save(&root, &out.join("checkpoint_final.pth"))?;
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<(), PretrainError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error("opening", path))?;
    writeln!(
        file,
        "{} {line}",
        crate::train::logging::text::utc_timestamp(std::time::SystemTime::now())
    )
    .map_err(io_error("writing", path))
}

fn progress_bar(length: u64, prefix: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}
