//! `bench model`: wall-clock time of training steps of a network on the CPU. A step is
//! a train-mode forward, the cross-entropy summed over every deep-supervision head
//! (targets down-sampled by striding), and the backward pass; no optimizer step.

use std::time::Instant;

use anyhow::Result;
use tch::{Device, Kind, Reduction, Tensor};

use crate::nets::{build, ModelName, SegmentationNet};

/// Arguments of `bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelBenchArgs {
    /// Models to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [ModelName::SwinUMamba, ModelName::SwinUMambaD])]
    pub models: Vec<ModelName>,
    /// Batch size.
    #[arg(long, default_value_t = 2)]
    pub batch: i64,
    /// Input channels.
    #[arg(long, default_value_t = 1)]
    pub in_channels: i64,
    /// Number of classes.
    #[arg(long, default_value_t = 14)]
    pub classes: i64,
    /// Input height and width in pixels.
    #[arg(long, num_args = 2, value_names = ["H", "W"], default_values_t = [256, 256])]
    pub patch: Vec<i64>,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    /// Intra-op threads (0 keeps libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
}

/// Loss and timings of one step.
struct StepReport {
    loss: f64,
    forward_s: f64,
    backward_s: f64,
}

/// Runs one step: forward with its loss, then backward.
fn training_step(model: &dyn SegmentationNet, x: &Tensor, target: &Tensor) -> StepReport {
    let start = Instant::now();
    let heads = model.forward_heads(x, true);
    let full = x.size()[2];
    let mut loss = Tensor::zeros([], (Kind::Float, x.device()));
    for head in &heads {
        let stride = full / head.size()[2];
        let t = target.slice(1, 0, None, stride).slice(2, 0, None, stride);
        loss += head.cross_entropy_loss::<Tensor>(&t, None, Reduction::Mean, -100, 0.0);
    }
    let loss_value = loss.double_value(&[]);
    let forward_s = start.elapsed().as_secs_f64();
    loss.backward();
    let backward_s = start.elapsed().as_secs_f64() - forward_s;
    StepReport {
        loss: loss_value,
        forward_s,
        backward_s,
    }
}

fn zero_gradients(model: &dyn SegmentationNet) {
    for var in model.var_store().variables().values() {
        let mut grad = var.grad();
        if grad.defined() {
            let _ = grad.zero_();
        }
    }
}

pub fn run(args: ModelBenchArgs) -> Result<()> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let (height, width) = (args.patch[0], args.patch[1]);
    println!(
        "bench model: batch {}, {}x{height}x{width}, {} classes, {} warm-up + {} timed steps, \
         {} threads, CPU",
        args.batch,
        args.in_channels,
        args.classes,
        args.warmup,
        args.steps,
        tch::get_num_threads()
    );
    for name in &args.models {
        tch::manual_seed(0);
        let model = build(
            *name,
            &name.default_config(),
            args.in_channels,
            args.classes,
            (height, width),
            Device::Cpu,
        )?;
        model.check_input_size(height, width)?;
        let x = Tensor::randn(
            [args.batch, args.in_channels, height, width],
            (Kind::Float, Device::Cpu),
        );
        let target = Tensor::randint(
            args.classes,
            [args.batch, height, width],
            (Kind::Int64, Device::Cpu),
        );
        for _ in 0..args.warmup {
            training_step(&model, &x, &target);
            zero_gradients(&model);
        }
        let mut times = Vec::new();
        for _ in 0..args.steps {
            let report = training_step(&model, &x, &target);
            zero_gradients(&model);
            let total = report.forward_s + report.backward_s;
            times.push(total);
            println!(
                "{name}: step {total:.2} s (forward {:.2} s, backward {:.2} s), loss {:.4}",
                report.forward_s, report.backward_s, report.loss
            );
        }
        times.sort_by(f64::total_cmp);
        if let Some(median) = median_of_sorted(&times) {
            println!(
                "{name}: median step {median:.2} s over {} steps",
                times.len()
            );
        }
    }
    Ok(())
}

/// Median of sorted values (the mean of the middle two for an even count).
fn median_of_sorted(values: &[f64]) -> Option<f64> {
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}
