"""Builds a tiny nnU-Net v2 results folder and runs nnUNetv2_predict on it.

Run with nnunetv2 2.8.1 (torch on CPU) from the repository root:

    python tests/data/infer_predict/generate.py /path/to/kvasir-seg/images

With `--bench OUT` it instead writes a larger results folder and 10 images of 256x224
into OUT (not into the repository) for `scripts/bench-predict`.

Without `--bench` it writes, next to this script:
  - imagesTs/<case>_0000.png: three Kvasir-SEG photos resized to small RGB images, one
    smaller than the patch so that padding is exercised;
  - results/Dataset901_KvasirTiny/nnUNetTrainer__nnUNetPlans__2d/{plans.json,
    dataset.json, fold_0/checkpoint_final.pth}: a PlainConvUNet with three stages and
    seeded random weights, saved in nnU-Net's checkpoint layout;
  - expected/<case>.png and expected/<case>_probabilities.npy: the segmentation and the
    float32 class probabilities (K, 1, H, W) that nnUNetv2_predict writes with its
    default settings (step 0.5, Gaussian weighting, mirroring on axes 0 and 1).
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
CASES = {  # case id: (source photo, width, height)
    "kvasir_a": ("cju0qkwl35piu0993l0dewei2.jpg", 96, 80),
    "kvasir_b": ("cju0qoxqj9q6s0835b43399p4.jpg", 72, 120),
    "kvasir_c": ("cju0qx73cjw570799j4n5cjze.jpg", 56, 48),
}
PATCH = [64, 64]
FEATURES = [8, 16, 32]
# The benchmark's network and images: a four-stage PlainConvUNet on 128x128 tiles.
BENCH_PATCH = [128, 128]
BENCH_FEATURES = [32, 64, 128, 256]
BENCH_IMAGES = 10
BENCH_SIZE = (256, 224)  # width, height


def plans():
    stages = len(FEATURES)
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": stages,
            "features_per_stage": FEATURES,
            "conv_op": "torch.nn.modules.conv.Conv2d",
            "kernel_sizes": [[3, 3]] * stages,
            "strides": [[1, 1]] + [[2, 2]] * (stages - 1),
            "n_conv_per_stage": [2] * stages,
            "n_conv_per_stage_decoder": [2] * (stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    stats = {"max": 255.0, "mean": 100.0, "median": 100.0, "min": 0.0,
             "percentile_00_5": 0.0, "percentile_99_5": 255.0, "std": 50.0}
    return {
        "dataset_name": "Dataset901_KvasirTiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, 80, 80],
        "image_reader_writer": "NaturalImage2DIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "2d": {
                "data_identifier": "nnUNetPlans_2d",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH,
                "median_image_size_in_voxels": [80.0, 80.0],
                "spacing": [1.0, 1.0],
                "normalization_schemes": ["RGBTo01Normalization"] * 3,
                "use_mask_for_norm": [False] * 3,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": resampling,
                "resampling_fn_seg_kwargs": dict(resampling, is_seg=True, order=1),
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": dict(resampling, order=1),
                "architecture": arch,
                "batch_dice": True,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): stats for c in range(3)},
    }


def dataset_json():
    return {
        "channel_names": {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"},
        "labels": {"background": 0, "polyp": 1},
        "numTraining": 3,
        "file_ending": ".png",
        "name": "KvasirTiny",
    }


def main(source_images: Path, out: Path, cases: dict, run_predictor: bool):
    images = out / "imagesTs"
    images.mkdir(parents=True, exist_ok=True)
    for case, (name, width, height) in cases.items():
        photo = Image.open(source_images / name).convert("RGB")
        photo.resize((width, height), Image.BILINEAR).save(images / f"{case}_0000.png")

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    trainer_dir = out / "results/Dataset901_KvasirTiny/nnUNetTrainer__nnUNetPlans__2d"
    (trainer_dir / "fold_0").mkdir(parents=True, exist_ok=True)
    p, d = plans(), dataset_json()
    (trainer_dir / "plans.json").write_text(json.dumps(p, indent=2))
    (trainer_dir / "dataset.json").write_text(json.dumps(d, indent=2))
    arch = p["configurations"]["2d"]["architecture"]
    torch.manual_seed(901)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                     arch["_kw_requires_import"], 3, 2, deep_supervision=True)
    # Random InstanceNorm affine values make the test sensitive to their loading.
    with torch.no_grad():
        for name, param in network.named_parameters():
            if "norm" in name:
                param.copy_(torch.rand_like(param) + 0.5 if name.endswith("weight")
                            else torch.randn_like(param) * 0.1)
    checkpoint = {
        "network_weights": network.state_dict(),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {},
        "_best_ema": None,
        "current_epoch": 1,
        "init_args": {"plans": p, "configuration": "2d", "fold": 0, "dataset_json": d,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1),
    }
    torch.save(checkpoint, trainer_dir / "fold_0/checkpoint_final.pth")
    if not run_predictor:
        return

    expected = HERE / "expected"
    expected.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, nnUNet_results=str(HERE / "results"),
                   nnUNet_raw=out, nnUNet_preprocessed=out)
        subprocess.run(["nnUNetv2_predict", "-i", str(images), "-o", out, "-d", "901",
                        "-c", "2d", "-f", "0", "-device", "cpu", "--save_probabilities",
                        "-npp", "1", "-nps", "1"], env=env, check=True)
        for case in CASES:
            (expected / f"{case}.png").write_bytes((Path(out) / f"{case}.png").read_bytes())
            probabilities = np.load(Path(out) / f"{case}.npz")["probabilities"]
            np.save(expected / f"{case}_probabilities.npy", probabilities.astype(np.float32))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--bench":
        PATCH[:] = BENCH_PATCH
        FEATURES[:] = BENCH_FEATURES
        names = sorted(p.name for p in Path(sys.argv[1]).glob("*.jpg"))[:BENCH_IMAGES]
        bench_cases = {f"bench_{i:02}": (n, *BENCH_SIZE) for i, n in enumerate(names)}
        main(Path(sys.argv[1]), Path(sys.argv[3]), bench_cases, run_predictor=False)
    else:
        main(Path(sys.argv[1]), HERE, CASES, run_predictor=True)
