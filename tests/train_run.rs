//! Whole training runs of the tiny synthetic U-Net through the library: loss goes down and
//! every output file appears, encoder freezing, non-finite losses, and TensorBoard's reader.
//!
//! Runs are sized for CPU: 32x32 patches, batch 4, a few iterations per epoch.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use swin_umamba::train::checkpoint::{self, RunInfo};
use swin_umamba::train::data::{Batch, BatchSource, TrainPlan};
use swin_umamba::train::error::TrainError;
use swin_umamba::train::loss::{DeepSupervisionLoss, DiceCeLoss};
use swin_umamba::train::network::{sorted_parameters, SegmentationNetwork};
use swin_umamba::train::optim::Optimizer;
use swin_umamba::train::precision::Precision;
use swin_umamba::train::synthetic::{SyntheticSource, TinyUNet};
use swin_umamba::train::trainer::freeze::{apply_encoder_freeze, frozen_parameter_names};
use swin_umamba::train::trainer::run::{train, RunSpec};
use swin_umamba::train::trainer::step::{train_step, StepContext, StepOutcome};
use swin_umamba::train::trainer::{self, TrainerConfig};
use tch::{Device, Tensor};

fn plan() -> TrainPlan {
    TrainPlan {
        patch_size: [32, 32],
        batch_size: 4,
        num_input_channels: 1,
        num_classes: 3,
        ignore_label: None,
        batch_dice: true,
    }
}

fn small(mut config: TrainerConfig, epochs: usize, iterations: usize) -> TrainerConfig {
    config.num_epochs = epochs;
    config.schedule = config.schedule.laid_over(epochs);
    config.iterations_per_epoch = iterations;
    config.val_iterations_per_epoch = 2;
    config.precision = Precision::Fp32;
    config
}

fn spec(dir: &Path, trainer: TrainerConfig, resume: bool) -> RunSpec {
    RunSpec {
        output_dir: dir.to_path_buf(),
        plan: plan(),
        trainer,
        run: RunInfo {
            dataset: "synthetic".into(),
            configuration: "2d".into(),
            fold: "0".into(),
            model: "tiny-unet".into(),
            pretrained: None,
            device: "cpu".into(),
            seed: 7,
        },
        device: Device::Cpu,
        resume,
        show_progress: false,
        echo_log: false,
    }
}

fn sources() -> (SyntheticSource, SyntheticSource) {
    let make = || SyntheticSource::new(plan(), vec![1, 2], Duration::ZERO);
    (make(), make())
}

fn snapshot(net: &dyn SegmentationNetwork) -> BTreeMap<String, Tensor> {
    sorted_parameters(net)
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

fn max_change(before: &BTreeMap<String, Tensor>, net: &dyn SegmentationNetwork, name: &str) -> f64 {
    let now = &net.var_store().variables()[name];
    f64::try_from((now - &before[name]).abs().max()).unwrap()
}

#[test]
fn short_run_lowers_loss_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(1);
    let mut net = TinyUNet::new(1, 3, Device::Cpu);
    let (mut tr, mut val) = sources();
    let trainer = small(trainer::nnunet::config(), 6, 12);
    let outcome = train(
        spec(dir.path(), trainer, false),
        &mut net,
        &mut tr,
        &mut val,
    )
    .unwrap();

    let losses: Vec<f64> = outcome
        .history
        .epochs
        .iter()
        .map(|r| r.train_loss)
        .collect();
    println!("train losses per epoch: {losses:?}");
    assert_eq!(losses.len(), 6, "one record per epoch");
    let first = losses[0];
    let last = losses[losses.len() - 1];
    assert!(
        last < first - 0.05,
        "training loss did not fall: {first} -> {last}"
    );

    for file in [
        "training_log.txt",
        "progress.png",
        "checkpoint_final.json",
        "checkpoint_best.json",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    assert!(
        !dir.path().join("checkpoint_latest.json").exists(),
        "latest must be removed at the end"
    );
    let log = std::fs::read_to_string(dir.path().join("training_log.txt")).unwrap();
    let epoch_lines = log.lines().filter(|l| l.contains(": epoch ")).count();
    assert_eq!(epoch_lines, 6, "epoch lines in training_log.txt:\n{log}");
    let png = image::open(dir.path().join("progress.png")).unwrap();
    assert!(
        png.width() > 100 && png.height() > 100,
        "progress.png is {}x{}",
        png.width(),
        png.height()
    );
    let events: Vec<_> = std::fs::read_dir(dir.path().join("tensorboard"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(events.len(), 1, "one event file");

    let final_state = checkpoint::load(&dir.path().join("checkpoint_final.json")).unwrap();
    assert_eq!(final_state.state.next_epoch, 6);
    assert_eq!(final_state.state.history.epochs.len(), 6);
    assert!(
        !final_state.optimizer.is_empty(),
        "optimiser moments are saved"
    );
}

#[test]
fn freeze_keeps_encoder_fixed_then_trains_it() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(2);
    let net = TinyUNet::new(1, 3, Device::Cpu);
    let frozen = frozen_parameter_names(&net);
    println!("frozen during the freeze epochs: {frozen:?}");
    assert!(!frozen.is_empty());
    assert!(
        frozen.iter().all(|n| !n.contains("patch_embed")),
        "patch_embed must stay trainable"
    );

    // One step by hand in a freeze epoch: frozen parameters get no gradient.
    let mut config = small(trainer::swin_umamba::config(true), 4, 3);
    config.freeze_encoder_epochs = 2;
    config.resolve_loss_weights(net.deep_supervision_heads());
    let loss = DeepSupervisionLoss {
        inner: DiceCeLoss::default(),
        weights: config.loss_weights.clone(),
    };
    let (mut tr, mut val) = sources();
    let mut rng =
        swin_umamba::train::data::epoch_rng(1, 0, swin_umamba::train::data::Stream::Train);
    let batch = tr.next_batch(&mut rng).unwrap();
    let mut optimizer = Optimizer::new(config.optimizer.clone());
    for (epoch, expect_frozen) in [(0usize, true), (2usize, false)] {
        assert_eq!(apply_encoder_freeze(&net, epoch, 2), expect_frozen);
        let params = sorted_parameters(&net);
        let ctx = StepContext {
            net: &net,
            params: &params,
            loss: &loss,
            precision: Precision::Fp32,
            grad_clip_norm: 12.0,
        };
        let outcome = train_step(&ctx, &mut optimizer, None, &batch, 1e-4).unwrap();
        assert!(matches!(outcome, StepOutcome::Trained(_)));
        let vars = net.var_store().variables();
        for name in &frozen {
            let grad = vars[name].grad();
            let norm = if grad.defined() {
                f64::try_from(grad.abs().sum(tch::Kind::Float)).unwrap()
            } else {
                0.0
            };
            println!("epoch {epoch} {name}: |grad| sum {norm:e}");
            if expect_frozen {
                assert_eq!(norm, 0.0, "{name} has a gradient in a freeze epoch");
            } else {
                assert!(norm > 0.0, "{name} has no gradient after the freeze epochs");
            }
        }
    }

    // Whole epochs: the first two leave the frozen weights unchanged, the third trains them.
    tch::manual_seed(2);
    let mut net = TinyUNet::new(1, 3, Device::Cpu);
    let before = snapshot(&net);
    let mut two = config.clone();
    two.stop_epoch = Some(2);
    train(spec(dir.path(), two, false), &mut net, &mut tr, &mut val).unwrap();
    for name in &frozen {
        let change = max_change(&before, &net, name);
        println!("after freeze epochs {name}: max change {change:e}");
        assert_eq!(change, 0.0, "{name} changed while frozen");
    }
    for name in ["encoder.patch_embed.weight", "decoder.head_full.weight"] {
        let change = max_change(&before, &net, name);
        println!("after freeze epochs {name}: max change {change:e}");
        assert!(
            change > 0.0,
            "{name} did not train during the freeze epochs"
        );
    }
    let mut three = config.clone();
    three.stop_epoch = Some(3);
    train(spec(dir.path(), three, true), &mut net, &mut tr, &mut val).unwrap();
    for name in &frozen {
        let change = max_change(&before, &net, name);
        println!("after epoch 2 {name}: max change {change:e}");
        assert!(change > 0.0, "{name} did not train after the freeze epochs");
    }
}

/// Wraps a source and replaces the images of selected batches with NaN.
struct PoisonedSource {
    inner: SyntheticSource,
    poison: fn(usize) -> bool,
    count: usize,
}

impl BatchSource for PoisonedSource {
    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Batch, TrainError> {
        let mut batch = self.inner.next_batch(rng)?;
        if (self.poison)(self.count) {
            batch.data = batch.data.fill(f64::NAN);
        }
        self.count += 1;
        Ok(batch)
    }
}

#[test]
fn nonfinite_losses_are_skipped_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(3);
    let mut net = TinyUNet::new(1, 3, Device::Cpu);
    let before = snapshot(&net);
    let (_, mut val) = sources();
    let mut always = PoisonedSource {
        inner: sources().0,
        poison: |_| true,
        count: 0,
    };
    let mut config = small(trainer::nnunet::config(), 2, 8);
    config.max_consecutive_nonfinite = 5;
    let err = train(
        spec(dir.path(), config.clone(), false),
        &mut net,
        &mut always,
        &mut val,
    )
    .unwrap_err();
    println!("{err}");
    assert!(
        matches!(err, TrainError::NonFiniteLoss { count: 5, epoch: 0 }),
        "{err:?}"
    );
    for name in before.keys() {
        assert_eq!(
            max_change(&before, &net, name),
            0.0,
            "{name} changed by a skipped step"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let mut every_other = PoisonedSource {
        inner: sources().0,
        poison: |i| i % 2 == 0,
        count: 0,
    };
    let outcome = train(
        spec(dir.path(), config, false),
        &mut net,
        &mut every_other,
        &mut val,
    )
    .unwrap();
    let skipped: Vec<usize> = outcome
        .history
        .epochs
        .iter()
        .map(|r| r.nonfinite_steps)
        .collect();
    println!("non-finite steps per epoch {skipped:?}");
    assert_eq!(skipped, vec![4, 4]);
    assert_eq!(outcome.nonfinite_steps_total, 8);
    assert!(outcome
        .history
        .epochs
        .iter()
        .all(|r| r.train_loss.is_finite()));
}

/// Python interpreter with the `tensorboard` package, from this environment variable.
const TENSORBOARD_PYTHON_VAR: &str = "SWIN_UMAMBA_TENSORBOARD_PYTHON";

#[test]
fn tensorboard_reader_finds_scalars() {
    let Some(python) = std::env::var_os(TENSORBOARD_PYTHON_VAR) else {
        println!(
            "skipped: set {TENSORBOARD_PYTHON_VAR} to a Python with the tensorboard package \
             (python3 -m venv DIR && DIR/bin/pip install tensorboard)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(4);
    let mut net = TinyUNet::new(1, 3, Device::Cpu);
    let (mut tr, mut val) = sources();
    let outcome = train(
        spec(dir.path(), small(trainer::nnunet::config(), 3, 3), false),
        &mut net,
        &mut tr,
        &mut val,
    )
    .unwrap();
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}
print(json.dumps(out))
"#;
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("tensorboard"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().last().unwrap_or_default();
    let scalars: BTreeMap<String, Vec<(i64, f64)>> = serde_json::from_str(last_line).unwrap();
    println!(
        "tags read by TensorBoard: {:?}",
        scalars.keys().collect::<Vec<_>>()
    );
    for (tag, field) in [
        ("loss/train", 0usize),
        ("loss/validation", 1),
        ("lr", 2),
        ("pseudo_dice/ema", 3),
    ] {
        let series = scalars
            .get(tag)
            .unwrap_or_else(|| panic!("tag {tag} missing"));
        assert_eq!(series.len(), 3, "{tag}: one value per epoch");
        for (record, (step, value)) in outcome.history.epochs.iter().zip(series) {
            let expected = [
                record.train_loss,
                record.val_loss,
                record.lr,
                record.ema_fg_dice,
            ][field];
            let diff = (value - expected).abs();
            println!("{tag} step {step}: {value} vs {expected} |diff| {diff:e}");
            assert_eq!(*step as usize, record.epoch, "{tag}: step");
            assert!(diff <= expected.abs() * 1e-6 + 1e-9, "{tag}: value");
        }
    }
    assert!(
        scalars.contains_key("pseudo_dice/class_2"),
        "per-class pseudo-Dice missing"
    );
}
