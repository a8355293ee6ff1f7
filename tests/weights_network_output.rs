//! Networks after loading official weights give the official outputs: the ImageNet VMamba
//! v0 checkpoint loaded into the tiny Swin-UMamba and Swin-UMamba† as the official loaders
//! do, and an nnU-Net result checkpoint (`network_weights`) of the tiny Swin-UMamba.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use swin_umamba::nets::swin_umamba::SwinUMambaConfig;
use swin_umamba::nets::swin_umamba_d::SwinUMambaDConfig;
use swin_umamba::nets::{build, Model, ModelConfig, ModelName, SegmentationNet};
use swin_umamba::weights::{load_vmamba_imagenet, read_nnunet_checkpoint, read_pth, VmambaTarget};
use tch::{Device, Kind, Tensor};

const FP64_MAX_ABS: f64 = 1e-6;

fn checkpoints() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/checkpoints")
}

fn read(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(checkpoints().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

/// The tiny configurations the fixtures were built with (dims [8, 16, 32, 64]).
fn tiny(name: ModelName, in_channels: i64, classes: i64) -> Model {
    let (dims, depths) = (vec![8, 16, 32, 64], vec![1, 1, 2, 1]);
    let config = match name {
        ModelName::SwinUMamba => ModelConfig::SwinUMamba(SwinUMambaConfig {
            feat_size: vec![4, 8, 16, 32, 64],
            hidden_size: 64,
            dims,
            depths,
            ..SwinUMambaConfig::default()
        }),
        _ => ModelConfig::SwinUMambaD(SwinUMambaDConfig {
            dims,
            depths,
            ..SwinUMambaDConfig::default()
        }),
    };
    build(name, &config, in_channels, classes, (64, 64), Device::Cpu).unwrap()
}

/// Runs the model in fp64 eval mode on the fixture input and compares every head.
fn assert_heads_match(model: &mut Model, io: &HashMap<String, Tensor>, what: &str) {
    model.set_kind(Kind::Double);
    let heads = model
        .try_forward(&io["input"].to_kind(Kind::Double), false)
        .unwrap();
    let expected: Vec<&Tensor> = (0..)
        .map_while(|i| io.get(&format!("output_fp64.{i}")))
        .collect();
    assert_eq!(heads.len(), expected.len(), "{what}: number of heads");
    for (i, (head, want)) in heads.iter().zip(expected).enumerate() {
        assert_eq!(head.size(), want.size(), "{what}: head {i} shape");
        let diff = (head - want).abs().max().double_value(&[]);
        println!("{what}: head {i} max |ours - official| = {diff:e}");
        assert!(diff <= FP64_MAX_ABS, "{what}: head {i} differs by {diff}");
    }
}

#[test]
fn imagenet_load_gives_official_outputs() {
    let pth = read_pth(&checkpoints().join("vmamba_v0_tiny_reduced_ckpt.pth")).unwrap();
    let checkpoint = pth.ordered_tensors(pth.root.get("model").unwrap()).unwrap();
    let loads = [
        (
            "swin_umamba_tiny_in1_c14",
            ModelName::SwinUMamba,
            1,
            14,
            VmambaTarget::SwinUMamba,
        ),
        (
            "swin_umamba_d_tiny_in3_c4",
            ModelName::SwinUMambaD,
            3,
            4,
            VmambaTarget::SwinUMambaD {
                num_input_channels: 3,
            },
        ),
        (
            "swin_umamba_d_tiny_in1_c4",
            ModelName::SwinUMambaD,
            1,
            4,
            VmambaTarget::SwinUMambaD {
                num_input_channels: 1,
            },
        ),
    ];
    for (stem, name, in_channels, classes, target) in loads {
        let mut model = tiny(name, in_channels, classes);
        let before = read(&format!(
            "{stem}_before_pretrained_load_state_dict.safetensors"
        ));
        model.load_state_dict(&before, stem).unwrap();
        load_vmamba_imagenet(&checkpoint, model.var_store_mut(), target).unwrap();
        let io = read(&format!("{stem}_after_pretrained_load_io.safetensors"));
        assert_heads_match(&mut model, &io, stem);
    }
}

#[test]
fn nnunet_checkpoint_gives_official_outputs() {
    let checkpoint = read_nnunet_checkpoint(&checkpoints().join("checkpoint_final.pth")).unwrap();
    assert_eq!(
        checkpoint.trainer_name.as_deref(),
        Some("nnUNetTrainerSwinUMamba")
    );
    let weights: HashMap<String, Tensor> = checkpoint.network_weights.into_iter().collect();
    let mut model = tiny(ModelName::SwinUMamba, 1, 14);
    model
        .load_state_dict(&weights, "checkpoint_final.pth")
        .unwrap();
    let io = read("checkpoint_final_expected_io.safetensors");
    assert_heads_match(&mut model, &io, "checkpoint_final.pth");
}
