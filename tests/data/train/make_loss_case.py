"""Write loss_case.json: logits, targets and nnU-Net v2's loss value for them.

Run with any Python that has torch and the nnunetv2 package importable (the
loss classes need nothing else), for example after
`pip download nnunetv2==2.8.1 --no-deps` and unzipping the wheel:

    PYTHONPATH=/path/to/unzipped/wheel python make_loss_case.py

The loss is built exactly as nnUNetTrainer._build_loss builds it for a label
(not region) dataset: DC_and_CE_loss with MemoryEfficientSoftDiceLoss,
batch_dice, do_bg False, smooth 1e-5, weight_ce 1, weight_dice 1, wrapped in
DeepSupervisionWrapper with weights 1/2^i, the last set to 0, normalised.
"""
import importlib.metadata
import json

import numpy as np  # noqa: F401  (nnunetv2 imports it)
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss


def build_loss(num_scales, ignore_label):
    loss = DC_and_CE_loss({'batch_dice': True, 'smooth': 1e-5, 'do_bg': False, 'ddp': False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=ignore_label,
                          dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / (2 ** i) for i in range(num_scales)])
    weights[-1] = 0
    weights = weights / weights.sum()
    return DeepSupervisionWrapper(loss, weights), weights.tolist()


def make_case(name, gen, batch, classes, sizes, ignore_label):
    logits = [torch.randn(batch, classes, s, s, generator=gen) * 2 for s in sizes]
    top = classes + (1 if ignore_label is not None else 0)
    full = torch.randint(0, top, (batch, 1, sizes[0], sizes[0]), generator=gen)
    # Lower-resolution targets are nearest-neighbour subsamples, as nnU-Net's
    # DownsampleSegForDSTransform2 produces them for integer scale factors.
    targets = [full[:, :, ::sizes[0] // s, ::sizes[0] // s].contiguous() for s in sizes]
    loss, weights = build_loss(len(sizes), ignore_label)
    value = loss(logits, [t.float() for t in targets]).item()
    return {
        'name': name,
        'ignore_label': ignore_label,
        'weights': weights,
        'logits': [{'shape': list(x.shape), 'values': x.flatten().tolist()} for x in logits],
        'targets': [{'shape': list(t.shape), 'values': t.flatten().tolist()} for t in targets],
        'expected_loss': value,
    }


def main():
    gen = torch.Generator().manual_seed(20260)
    cases = [
        make_case('three_scales', gen, 2, 3, [8, 4, 2], None),
        make_case('ignore_label', gen, 2, 3, [8, 4], 3),
        make_case('five_classes', gen, 3, 5, [6, 3], None),
    ]
    meta = {'nnunetv2': importlib.metadata.version('nnunetv2'), 'torch': torch.__version__}
    with open('loss_case.json', 'w') as f:
        json.dump({'meta': meta, 'cases': cases}, f)


if __name__ == '__main__':
    main()
