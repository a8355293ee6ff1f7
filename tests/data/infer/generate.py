"""Record nnU-Net v2's sliding-window values for tests/infer_sliding.rs.

Run with nnunetv2 2.8.1 and torch installed (used: torch 2.13.0 on CPU):

    python generate.py

Writes `expected.json` (tile steps) and `sliding.safetensors` (Gaussian maps, a small
convolutional network's weights, inputs and the logits nnU-Net's predictor returns).
"""
import json
import os
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

HERE = os.path.dirname(os.path.abspath(__file__))

step_cases = [
    ((110,), (64,), 0.5), ((64,), (64,), 0.5), ((65,), (64,), 0.5), ((512, 333), (256, 128), 0.5),
    ((1000, 77), (192, 64), 0.25), ((300, 200), (128, 96), 1.0), ((129, 131), (64, 64), 0.7),
]
steps = [{"image": list(i), "tile": list(t), "step": s,
          "steps": compute_steps_for_sliding_window(i, t, s)} for i, t, s in step_cases]

tensors = {}
gaussian_tiles = [(64, 64), (48, 80), (33, 17), (160, 192)]
for tile in gaussian_tiles:
    for name, dtype in (("half", torch.float16), ("float", torch.float32)):
        g = compute_gaussian(tile, sigma_scale=1. / 8, value_scaling_factor=10, dtype=dtype,
                             device=torch.device("cpu"))
        tensors[f"gaussian_{tile[0]}x{tile[1]}_{name}"] = g.contiguous()

torch.manual_seed(0)
network = torch.nn.Sequential(
    torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1))
network.eval()
for key, value in network.state_dict().items():
    tensors[f"net.{key}"] = value.clone()  # load_state_dict later overwrites the parameters in place

window_cases = [
    {"name": "pad_mirror", "shape": (2, 2, 40, 70), "tile": (48, 64), "step": 0.5, "gaussian": True, "mirror": True},
    {"name": "large_step", "shape": (2, 1, 100, 90), "tile": (48, 64), "step": 0.5, "gaussian": True, "mirror": False},
    {"name": "uniform", "shape": (2, 1, 70, 70), "tile": (32, 32), "step": 0.3, "gaussian": False, "mirror": True},
]
for case in window_cases:
    predictor = nnUNetPredictor(tile_step_size=case["step"], use_gaussian=case["gaussian"],
                                use_mirroring=case["mirror"], perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.network = network
    predictor.configuration_manager = SimpleNamespace(patch_size=list(case["tile"]))
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=3)
    predictor.allowed_mirroring_axes = (0, 1)
    data = torch.randn(case["shape"])
    logits = predictor.predict_sliding_window_return_logits(data)
    tensors[f"{case['name']}.input"] = data.contiguous()
    tensors[f"{case['name']}.logits"] = logits.contiguous()

# Two folds: the same architecture with two weight sets, averaged by the predictor.
fold_weights = []
for seed in (1, 2):
    torch.manual_seed(seed)
    fold = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1))
    fold_weights.append({k: v.clone() for k, v in fold.state_dict().items()})
    for key, value in fold.state_dict().items():
        tensors[f"fold{seed}.{key}"] = value.clone()
predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                            perform_everything_on_device=False, device=torch.device("cpu"),
                            verbose=False, allow_tqdm=False)
predictor.network = network
predictor.configuration_manager = SimpleNamespace(patch_size=[32, 48])
predictor.label_manager = SimpleNamespace(num_segmentation_heads=3)
predictor.allowed_mirroring_axes = (0, 1)
predictor.list_of_parameters = fold_weights
data = torch.randn((2, 1, 50, 60))
logits = predictor.predict_logits_from_preprocessed_data(data)
tensors["folds.input"] = data.contiguous()
tensors["folds.logits"] = logits.contiguous()
tensors["folds.probabilities"] = torch.softmax(logits.float(), 0).contiguous()

save_file(tensors, os.path.join(HERE, "sliding.safetensors"))
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump({"steps": steps, "gaussian_tiles": gaussian_tiles,
               "window_cases": [dict(c, shape=list(c["shape"]), tile=list(c["tile"])) for c in window_cases]},
              f, indent=1)
