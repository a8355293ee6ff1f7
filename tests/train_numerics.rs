//! The loss, optimisers and schedules against values computed by nnunetv2 2.8.1 and
//! PyTorch (scripts and JSON in tests/data/train).

use std::path::PathBuf;

use serde_json::Value;
use swin_umamba::train::loss::{nnunet_deep_supervision_weights, DeepSupervisionLoss, DiceCeLoss};
use swin_umamba::train::optim::{Optimizer, OptimizerConfig};
use swin_umamba::train::schedule::LrSchedule;
use tch::{Kind, Tensor};

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/train")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<i64> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    Tensor::from_slice(&floats(&v["values"])).view(shape.as_slice())
}

#[test]
fn loss_matches_nnunet() {
    let case_file = load("loss_case.json");
    for case in case_file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let logits: Vec<Tensor> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(tensor)
            .collect();
        let targets: Vec<Tensor> = case["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(tensor)
            .collect();
        let ours = nnunet_deep_supervision_weights(logits.len());
        let theirs: Vec<f64> = case["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: weight count");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() < 1e-12,
                "{name}: weights {ours:?} vs nnU-Net {theirs:?}"
            );
        }
        let loss = DeepSupervisionLoss {
            inner: DiceCeLoss {
                ignore_label: case["ignore_label"].as_i64(),
                ..DiceCeLoss::default()
            },
            weights: ours,
        };
        let value = f64::try_from(loss.forward(&logits, &targets).unwrap()).unwrap();
        let expected = case["expected_loss"].as_f64().unwrap();
        let diff = (value - expected).abs();
        println!("{name}: ours {value:.7} nnU-Net {expected:.7} |diff| {diff:.2e}");
        assert!(
            diff < 1e-5,
            "{name}: loss {value} differs from nnU-Net's {expected}"
        );
    }
}

#[test]
fn loss_gradient_flows_to_logits() {
    let logits =
        Tensor::randn([2, 3, 8, 8], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let target = Tensor::randint(3, [2, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
    let loss = DiceCeLoss::default().forward(&logits, &target).unwrap();
    loss.backward();
    let grad_norm = f64::try_from(logits.grad().norm()).unwrap();
    println!("gradient norm {grad_norm}");
    assert!(grad_norm > 0.0, "the loss has no gradient");
}

#[test]
fn loss_rejects_mismatched_target() {
    let logits = Tensor::zeros([2, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
    let target = Tensor::zeros([2, 1, 4, 4], (Kind::Float, tch::Device::Cpu));
    let err = DiceCeLoss::default().forward(&logits, &target).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

fn run_optimizer(config: OptimizerConfig, case: &Value) -> Vec<Vec<(String, Vec<f32>)>> {
    let init = &case["init"];
    let names = ["a", "b"];
    let params: Vec<(String, Tensor)> = names
        .iter()
        .map(|n| (n.to_string(), tensor(&init[*n]).set_requires_grad(true)))
        .collect();
    let lrs: Vec<f64> = case["lrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut optimizer = Optimizer::new(config);
    let mut history = Vec::new();
    for (step, lr) in lrs.iter().enumerate() {
        for (name, p) in &params {
            // Parameter b has no gradient in the first two steps, like a frozen parameter.
            if *name == "b" && step < 2 {
                continue;
            }
            let grad = Tensor::from_slice(&floats(&case["grads"][step][name.as_str()]))
                .view(p.size().as_slice());
            let mut existing = p.grad();
            if existing.defined() {
                existing.copy_(&grad);
            } else {
                // Create the gradient through autograd, so that it is defined on the leaf.
                (p * &grad).sum(Kind::Float).backward();
            }
        }
        optimizer.step(&params, *lr).unwrap();
        history.push(
            params
                .iter()
                .map(|(n, p)| (n.clone(), Vec::<f32>::try_from(p.flatten(0, -1)).unwrap()))
                .collect(),
        );
    }
    history
}

fn compare(kind: &str, ours: &[Vec<(String, Vec<f32>)>], theirs: &Value) {
    for (step, params) in ours.iter().enumerate() {
        for (name, values) in params {
            let expected = floats(&theirs[step][name.as_str()]);
            let max_diff = values
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            println!("{kind} step {step} param {name}: max |diff| {max_diff:.2e}");
            assert!(
                max_diff < 1e-6,
                "{kind} step {step} param {name} differs from PyTorch"
            );
        }
    }
}

#[test]
fn adamw_matches_pytorch() {
    let case = load("optim_case.json");
    let config = OptimizerConfig::AdamW {
        betas: (0.9, 0.999),
        eps: 1e-5,
        weight_decay: 5e-2,
    };
    // The case steps with learning rates 1e-2..2e-3 although the optimiser was built with
    // lr 1e-4: PyTorch reads the lr from the parameter group at each step.
    compare("adamw", &run_optimizer(config, &case), &case["adamw"]);
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    let case = load("optim_case.json");
    let config = OptimizerConfig::Sgd {
        momentum: 0.99,
        nesterov: true,
        weight_decay: 3e-5,
    };
    compare("sgd", &run_optimizer(config, &case), &case["sgd"]);
}

#[test]
fn schedules_match_pytorch() {
    let case = load("optim_case.json");
    let epochs: Vec<usize> = case["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let poly = LrSchedule::Poly {
        initial: 1e-2,
        max_epochs: 1000,
        exponent: 0.9,
    };
    let cosine = LrSchedule::Cosine {
        initial: 1e-4,
        t_max: 1000,
        eta_min: 1e-6,
    };
    for (schedule, key) in [(poly, "poly_lrs"), (cosine, "cosine_lrs")] {
        for (epoch, expected) in epochs.iter().zip(case[key].as_array().unwrap()) {
            let expected = expected.as_f64().unwrap();
            let ours = schedule.lr_at(*epoch);
            let rel = (ours - expected).abs() / expected;
            println!("{key} epoch {epoch}: ours {ours:e} PyTorch {expected:e} rel diff {rel:.1e}");
            assert!(rel < 1e-9, "{key} epoch {epoch}");
        }
    }
}

#[test]
fn optimizer_state_round_trips() {
    let case = load("optim_case.json");
    let config = OptimizerConfig::AdamW {
        betas: (0.9, 0.999),
        eps: 1e-5,
        weight_decay: 5e-2,
    };
    let param = tensor(&case["init"]["a"]).set_requires_grad(true);
    let params = vec![("a".to_string(), param.shallow_clone())];
    let mut first = Optimizer::new(config.clone());
    (&param * 2.0).sum(Kind::Float).backward();
    first.step(&params, 1e-3).unwrap();
    let mut second = Optimizer::new(config);
    second
        .load_state(
            &first.step_counts(),
            first.state_tensors(),
            tch::Device::Cpu,
        )
        .unwrap();
    assert_eq!(first.step_counts(), second.step_counts(), "step counts");
    let a = first.state_tensors();
    let b = second.state_tensors();
    assert_eq!(a.len(), b.len(), "tensor count");
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the round trip");
    }
}

#[test]
fn grad_scaler_follows_pytorch_rules() {
    use swin_umamba::train::precision::GradScaler;
    let mut scaler = GradScaler::default();
    assert_eq!(scaler.scale, 65536.0, "PyTorch's initial scale");

    let param = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let params = vec![("p".to_string(), param.shallow_clone())];
    scaler
        .scale_loss(&(&param * 2.0).sum(Kind::Float))
        .backward();
    let found_inf = scaler.unscale(&params).unwrap();
    let grad = Vec::<f32>::try_from(param.grad()).unwrap();
    println!("unscaled gradient {grad:?}");
    assert!(!found_inf);
    assert_eq!(grad, vec![2.0, 2.0, 2.0], "unscale divides by the scale");

    scaler.update(true);
    assert_eq!(scaler.scale, 32768.0, "back-off halves the scale");
    assert_eq!(scaler.growth_tracker, 0);
    for _ in 0..1999 {
        scaler.update(false);
    }
    assert_eq!(scaler.scale, 32768.0, "no growth before 2000 clean steps");
    scaler.update(false);
    assert_eq!(
        scaler.scale, 65536.0,
        "growth doubles the scale after 2000 clean steps"
    );

    let mut grad = param.grad();
    let _ = grad.fill_(f64::INFINITY);
    assert!(
        scaler.unscale(&params).unwrap(),
        "an infinite gradient is found"
    );
}

#[test]
fn log_timestamps_are_utc_dates() {
    use std::time::{Duration, UNIX_EPOCH};
    use swin_umamba::train::logging::text::utc_timestamp;
    // Expected strings from Python's datetime.fromtimestamp(t, timezone.utc).
    let cases = [
        (0, 0, "1970-01-01 00:00:00.000"),
        (951_782_400, 0, "2000-02-29 00:00:00.000"),
        (1_796_400_000, 123, "2026-12-04 16:00:00.123"),
        (4_107_542_399, 0, "2100-02-28 23:59:59.000"),
    ];
    for (seconds, millis, expected) in cases {
        let time = UNIX_EPOCH + Duration::new(seconds, millis * 1_000_000);
        assert_eq!(utc_timestamp(time), expected, "{seconds} s after the epoch");
    }
}
