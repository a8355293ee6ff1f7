//! Forward outputs of the tiny networks against the official PyTorch code's outputs
//! (every deep-supervision head), in fp64 and fp32. The fixtures hold the official
//! state dicts, inputs and outputs; the tiny configurations are the ones the fixtures
//! were built with.

use std::collections::HashMap;
use std::path::PathBuf;

use swin_umamba::nets::plain_unet::PlainUNetConfig;
use swin_umamba::nets::state::read_safetensors;
use swin_umamba::nets::swin_umamba::SwinUMambaConfig;
use swin_umamba::nets::swin_umamba_d::SwinUMambaDConfig;
use swin_umamba::nets::umamba::UMambaConfig;
use swin_umamba::nets::{build, Model, ModelConfig, ModelName};
use tch::{Device, Kind, Tensor};

const FP64_MAX_ABS: f64 = 1e-6;
const FP32_MAX_REL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

fn tiny_config(name: ModelName) -> ModelConfig {
    let dims = vec![8, 16, 32, 64];
    let depths = vec![1, 1, 2, 1];
    match name {
        ModelName::SwinUMamba | ModelName::SwinUMambaV1 => {
            let feat_size = if name == ModelName::SwinUMamba {
                vec![4, 8, 16, 32, 64]
            } else {
                vec![4, 8, 16, 32]
            };
            ModelConfig::SwinUMamba(SwinUMambaConfig {
                feat_size,
                hidden_size: 64,
                dims,
                depths,
                ..SwinUMambaConfig::default()
            })
        }
        ModelName::SwinUMambaD => ModelConfig::SwinUMambaD(SwinUMambaDConfig {
            dims,
            depths,
            ..SwinUMambaDConfig::default()
        }),
        ModelName::Nnunet => ModelConfig::PlainUNet(PlainUNetConfig {
            features_per_stage: vec![8, 16, 32, 64],
            kernel_sizes: vec![3; 4],
            strides: vec![1, 2, 2, 2],
            n_conv_per_stage: vec![2; 4],
            n_conv_per_stage_decoder: vec![2; 3],
            conv_bias: true,
        }),
        ModelName::UmambaBot | ModelName::UmambaEnc => ModelConfig::UMamba(UMambaConfig {
            plan: PlainUNetConfig {
                features_per_stage: vec![8, 16, 32, 64],
                kernel_sizes: vec![3; 4],
                strides: vec![1, 2, 2, 2],
                n_conv_per_stage: vec![2; 4],
                n_conv_per_stage_decoder: vec![2; 3],
                conv_bias: true,
            },
        }),
    }
}

fn heads(io: &HashMap<String, Tensor>, prefix: &str) -> Vec<Tensor> {
    (0..)
        .map_while(|i| io.get(&format!("{prefix}.{i}")).map(|t| t.shallow_clone()))
        .collect()
}

/// Builds the model, loads the fixture's state dict and compares every head.
fn check(name: ModelName, dir: &str, stem: &str, in_channels: i64, classes: i64) {
    let root = fixtures().join(dir);
    let state = read_safetensors(&root.join(format!("{stem}_state_dict.safetensors"))).unwrap();
    let io = read_safetensors(&root.join(format!("{stem}_io.safetensors"))).unwrap();
    let input = &io["input"];
    let size = input.size();
    let mut model: Model = build(
        name,
        &tiny_config(name),
        in_channels,
        classes,
        (size[2], size[3]),
        Device::Cpu,
    )
    .unwrap();
    model.load_state_dict(&state, stem).unwrap();

    model.set_kind(Kind::Double);
    let out64 = model
        .try_forward(&input.to_kind(Kind::Double), false)
        .unwrap();
    let expected64 = heads(&io, "output_fp64");
    assert_eq!(out64.len(), expected64.len(), "{stem}: number of heads");
    for (i, (got, want)) in out64.iter().zip(&expected64).enumerate() {
        assert_eq!(got.size(), want.size(), "{stem}: head {i} shape");
        let diff = (got - want).abs().max().double_value(&[]);
        println!("{stem} fp64 head {i}: max abs diff {diff:.3e}");
        assert!(
            diff <= FP64_MAX_ABS,
            "{stem} fp64 head {i}: max abs diff {diff:e}"
        );
    }

    model.set_kind(Kind::Float);
    let out32 = model
        .try_forward(&input.to_kind(Kind::Float), false)
        .unwrap();
    let expected32 = heads(&io, "output_fp32");
    assert_eq!(
        out32.len(),
        expected32.len(),
        "{stem}: number of fp32 heads"
    );
    for (i, (got, want)) in out32.iter().zip(&expected32).enumerate() {
        let want = want.to_kind(Kind::Double);
        let scale = want.abs().max().double_value(&[]).max(1e-12);
        let diff = (got.to_kind(Kind::Double) - &want)
            .abs()
            .max()
            .double_value(&[]);
        let rel = diff / scale;
        println!(
            "{stem} fp32 head {i}: max abs diff {diff:.3e}, max |ref| {scale:.3e}, ratio {rel:.3e}"
        );
        assert!(
            rel <= FP32_MAX_REL,
            "{stem} fp32 head {i}: relative diff {rel:e}"
        );
    }
}

#[test]
fn swin_umamba_tiny_in1_c14() {
    check(
        ModelName::SwinUMamba,
        "networks",
        "swin_umamba_tiny_in1_c14_64x64",
        1,
        14,
    );
}

#[test]
fn swin_umamba_tiny_in3_c4_nonsquare() {
    check(
        ModelName::SwinUMamba,
        "networks",
        "swin_umamba_tiny_in3_c4_64x96",
        3,
        4,
    );
}

#[test]
fn swin_umamba_v1_tiny_in1_c14() {
    check(
        ModelName::SwinUMambaV1,
        "networks",
        "swin_umamba_v1_tiny_in1_c14_64x64",
        1,
        14,
    );
}

#[test]
fn swin_umamba_v1_tiny_in3_c4_nonsquare() {
    check(
        ModelName::SwinUMambaV1,
        "networks",
        "swin_umamba_v1_tiny_in3_c4_64x96",
        3,
        4,
    );
}

#[test]
fn swin_umamba_d_tiny_in1_c14() {
    check(
        ModelName::SwinUMambaD,
        "networks",
        "swin_umamba_d_tiny_in1_c14_64x64",
        1,
        14,
    );
}

#[test]
fn swin_umamba_d_tiny_in3_c4_nonsquare() {
    check(
        ModelName::SwinUMambaD,
        "networks",
        "swin_umamba_d_tiny_in3_c4_64x96",
        3,
        4,
    );
}

#[test]
fn plain_conv_unet_tiny() {
    check(
        ModelName::Nnunet,
        "baselines",
        "plain_conv_unet_tiny_in1_c3_64x64",
        1,
        3,
    );
}

#[test]
fn umamba_bot_tiny() {
    check(
        ModelName::UmambaBot,
        "baselines",
        "umamba_bot_2d_tiny_in1_c3_64x64",
        1,
        3,
    );
}

#[test]
fn umamba_enc_tiny() {
    check(
        ModelName::UmambaEnc,
        "baselines",
        "umamba_enc_2d_tiny_in1_c3_64x64",
        1,
        3,
    );
}
