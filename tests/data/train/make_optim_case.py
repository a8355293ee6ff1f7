"""Write optim_case.json: parameters after PyTorch's AdamW and SGD steps, and the learning
rates of nnU-Net's PolyLRScheduler and PyTorch's CosineAnnealingLR stepped per epoch.

Run with a Python that has torch and the nnunetv2 package importable, for example
`PYTHONPATH=/path/to/unzipped/nnunetv2/wheel python make_optim_case.py`.

Parameter `b` gets no gradient in the first two steps (its `.grad` is None, as for a frozen
encoder parameter after `zero_grad(set_to_none=True)`), so the case also covers per-parameter
step counts. Schedulers are stepped with an explicit epoch, as
`nnUNetTrainer.on_train_epoch_start` does.
"""
import importlib.metadata
import json
import warnings

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

STEPS = 4
LRS = [1e-2, 8e-3, 5e-3, 2e-3]
EPOCHS = [0, 1, 2, 10, 100, 349, 500, 999]


def run(make_optimizer, init, grads):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = make_optimizer(list(params.values()))
    history = []
    for step in range(STEPS):
        for g in opt.param_groups:
            g['lr'] = LRS[step]
        opt.zero_grad(set_to_none=True)
        for k, p in params.items():
            if k == 'b' and step < 2:
                continue
            p.grad = grads[step][k].clone()
        opt.step()
        history.append({k: p.detach().flatten().tolist() for k, p in params.items()})
    return history


def lrs(make_scheduler, base_lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for e in EPOCHS:
            sched.step(e)
            out.append(opt.param_groups[0]['lr'])
    return out


def main():
    gen = torch.Generator().manual_seed(7)
    init = {'a': torch.randn(3, 4, generator=gen), 'b': torch.randn(5, generator=gen)}
    grads = [{k: torch.randn(v.shape, generator=gen) for k, v in init.items()} for _ in range(STEPS)]
    adamw = run(lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=5e-2, eps=1e-5,
                                             betas=(0.9, 0.999)), init, grads)
    sgd = run(lambda ps: torch.optim.SGD(ps, lr=1e-2, weight_decay=3e-5, momentum=0.99,
                                         nesterov=True), init, grads)
    out = {
        'meta': {'torch': torch.__version__, 'nnunetv2': importlib.metadata.version('nnunetv2')},
        'lrs': LRS,
        'init': {k: {'shape': list(v.shape), 'values': v.flatten().tolist()} for k, v in init.items()},
        'grads': [{k: v.flatten().tolist() for k, v in g.items()} for g in grads],
        'adamw': adamw,
        'sgd': sgd,
        'epochs': EPOCHS,
        'poly_lrs': lrs(lambda o: PolyLRScheduler(o, 1e-2, 1000), 1e-2),
        'cosine_lrs': lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=1000,
                                                                                eta_min=1e-6), 1e-4),
    }
    with open('optim_case.json', 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main()
