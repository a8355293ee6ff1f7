//! Backward passes through every network (tiny configurations, CPU, train mode), the
//! train/eval switch, input-size errors and strict state-dict loading.

use std::collections::HashMap;

use swin_umamba::nets::plain_unet::PlainUNetConfig;
use swin_umamba::nets::swin_umamba::SwinUMambaConfig;
use swin_umamba::nets::swin_umamba_d::SwinUMambaDConfig;
use swin_umamba::nets::umamba::UMambaConfig;
use swin_umamba::nets::{build, Model, ModelConfig, ModelName, NetsError, SegmentationNet};
use tch::{Device, Kind, Tensor};

/// The smallest size every network takes, to keep the reference-scan backward fast.
const PATCH: (i64, i64) = (32, 32);

fn tiny_config(name: ModelName) -> ModelConfig {
    let dims = vec![8, 16, 32, 64];
    let depths = vec![1, 1, 2, 1];
    let plan = PlainUNetConfig {
        features_per_stage: vec![8, 16, 32, 64],
        kernel_sizes: vec![3; 4],
        strides: vec![1, 2, 2, 2],
        n_conv_per_stage: vec![2; 4],
        n_conv_per_stage_decoder: vec![2; 3],
        conv_bias: true,
    };
    match name {
        ModelName::SwinUMamba => ModelConfig::SwinUMamba(SwinUMambaConfig {
            feat_size: vec![4, 8, 16, 32, 64],
            hidden_size: 64,
            dims,
            depths,
            ..SwinUMambaConfig::default()
        }),
        ModelName::SwinUMambaV1 => ModelConfig::SwinUMamba(SwinUMambaConfig {
            feat_size: vec![4, 8, 16, 32],
            hidden_size: 64,
            dims,
            depths,
            ..SwinUMambaConfig::default()
        }),
        ModelName::SwinUMambaD => ModelConfig::SwinUMambaD(SwinUMambaDConfig {
            dims,
            depths,
            ..SwinUMambaDConfig::default()
        }),
        ModelName::Nnunet => ModelConfig::PlainUNet(plan),
        ModelName::UmambaBot | ModelName::UmambaEnc => ModelConfig::UMamba(UMambaConfig { plan }),
    }
}

fn tiny(name: ModelName, in_channels: i64) -> Model {
    tch::manual_seed(7);
    build(name, &tiny_config(name), in_channels, 3, PATCH, Device::Cpu).unwrap()
}

#[test]
fn backward_gives_finite_gradients() {
    for name in ModelName::ALL {
        let model = tiny(name, 2);
        let start = std::time::Instant::now();
        let x = Tensor::randn([2, 2, PATCH.0, PATCH.1], (Kind::Float, Device::Cpu));
        let heads = model.try_forward(&x, true).unwrap();
        let loss = heads
            .iter()
            .map(|h| h.square().mean(Kind::Float))
            .sum::<Tensor>();
        loss.backward();
        let mut with_gradient = 0;
        for (param, var) in model.var_store().variables() {
            let grad = var.grad();
            if !grad.defined() {
                // v1 computes the last VSS stage (and the merge before it) without using it.
                let unused = name == ModelName::SwinUMambaV1
                    && (param.starts_with("vssm_encoder.layers.3.")
                        || param.starts_with("vssm_encoder.downsamples.2."));
                assert!(unused, "{name}: no gradient for {param}");
                continue;
            }
            let finite = grad.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{name}: non-finite gradient for {param}");
            with_gradient += 1;
        }
        println!(
            "{name}: loss {:.4}, {with_gradient} parameters with gradients, {:.1} s",
            loss.double_value(&[]),
            start.elapsed().as_secs_f64()
        );
        assert!(
            with_gradient > 0,
            "{name}: no parameter received a gradient"
        );
    }
}

#[test]
fn drop_path_only_in_train_mode() {
    let model = tiny(ModelName::SwinUMamba, 1);
    let x = Tensor::randn([4, 1, PATCH.0, PATCH.1], (Kind::Float, Device::Cpu));
    let eval_a = tch::no_grad(|| model.forward_heads(&x, false));
    let eval_b = tch::no_grad(|| model.forward_heads(&x, false));
    let eval_diff = (&eval_a[0] - &eval_b[0]).abs().max().double_value(&[]);
    println!("eval vs eval max abs diff {eval_diff:e}");
    assert_eq!(eval_diff, 0.0, "eval mode must be deterministic");
    let train = tch::no_grad(|| model.forward_heads(&x, true));
    let train_diff = (&eval_a[0] - &train[0]).abs().max().double_value(&[]);
    println!("eval vs train max abs diff {train_diff:e}");
    assert!(train_diff > 0.0, "train mode must apply DropPath");
}

#[test]
fn input_not_divisible_by_32_is_rejected() {
    let model = tiny(ModelName::SwinUMambaD, 1);
    let x = Tensor::zeros([1, 1, 100, 64], (Kind::Float, Device::Cpu));
    match model.try_forward(&x, false) {
        Err(NetsError::InputSize {
            height,
            divisor,
            nearest_height,
            ..
        }) => {
            assert_eq!(height, 100);
            assert_eq!(divisor, 32);
            assert_eq!(nearest_height, 96);
        }
        other => panic!("expected an input-size error, got {other:?}"),
    }
    let message = model.check_input_size(100, 64).unwrap_err().to_string();
    assert!(
        message.contains("100x64") && message.contains("96x64"),
        "{message}"
    );
}

#[test]
fn umamba_enc_rejects_other_input_size() {
    let model = tiny(ModelName::UmambaEnc, 1);
    let error = model.check_input_size(128, 128).unwrap_err();
    assert!(
        matches!(
            error,
            NetsError::FixedInputSize {
                expected_height: 32,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn wrong_channel_count_is_rejected() {
    let model = tiny(ModelName::Nnunet, 1);
    let x = Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let error = model.try_forward(&x, false).unwrap_err();
    assert!(
        matches!(error, NetsError::InputShape { channels: 1, .. }),
        "{error}"
    );
}

fn state_of(model: &Model) -> HashMap<String, Tensor> {
    model
        .var_store()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

#[test]
fn load_rejects_missing_extra_and_reshaped_keys() {
    let model = tiny(ModelName::SwinUMamba, 1);
    let good = state_of(&model);
    model.load_state_dict(&good, "own state").unwrap();

    let mut missing = state_of(&model);
    missing.remove("stem.0.weight");
    let error = model
        .load_state_dict(&missing, "missing.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("stem.0.weight") && error.contains("missing"),
        "{error}"
    );

    let mut extra = state_of(&model);
    extra.insert(
        "head.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    );
    let error = model
        .load_state_dict(&extra, "extra.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("head.weight") && error.contains("unexpected"),
        "{error}"
    );

    let mut reshaped = state_of(&model);
    reshaped.insert(
        "stem.0.bias".into(),
        Tensor::zeros([5], (Kind::Float, Device::Cpu)),
    );
    let error = model
        .load_state_dict(&reshaped, "reshaped.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("stem.0.bias") && error.contains("[5]"),
        "{error}"
    );
}

#[test]
fn loaded_weights_change_the_output() {
    let source = tiny(ModelName::SwinUMambaD, 1);
    tch::manual_seed(8);
    let target = build(
        ModelName::SwinUMambaD,
        &tiny_config(ModelName::SwinUMambaD),
        1,
        3,
        PATCH,
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::randn([1, 1, 32, 32], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| {
        (&source.forward_heads(&x, false)[0] - &target.forward_heads(&x, false)[0])
            .abs()
            .max()
            .double_value(&[])
    });
    target
        .load_state_dict(&state_of(&source), "source")
        .unwrap();
    let after = tch::no_grad(|| {
        (&source.forward_heads(&x, false)[0] - &target.forward_heads(&x, false)[0])
            .abs()
            .max()
            .double_value(&[])
    });
    println!("max abs diff before loading {before:e}, after {after:e}");
    assert!(before > 1e-3, "differently seeded models should differ");
    assert_eq!(after, 0.0, "loading must copy every parameter");
}
