"""Differentially private training on real data: DP-SGD with Opacus on scikit-learn's digits, NF against GroupNorm+WS.

    python -m validate private [--epsilons 1 3 8] [--seeds 0 1 2] [--epochs 20] [--batch-size 256] [--lr 2.0]
                               [--out-dir validate/results] [--name private] [--resume]

Data: validate/digits.py's 80/20 split of the 1,797 digits at 32 px, preprocessed once into tensors (no
augmentation). Nets of one shape (bottlenecks, depths 1-1-1-1, widths 32-64-128-256, stem 16), each with its default
stochastic depth:
- nf: the paper-exact NF-ResNet (dm_nf_resnet50 shape override, stochastic depth 0.1),
- nf_timm: timm's NF-ResNet (nf_resnet50 config, built by timm-nf: timm's NormFreeNet itself applies an in-place
  activation to a conv's output, which Opacus's backward hooks refuse),
- gn_ws: the same ResNetV2 with BiT's layers as in `python -m validate batch-size` (StdConv2d, GroupNorm with 8
  groups), its activations out of place for the same reason.
BatchNorm cannot take part: it normalises each example with statistics of the whole batch, so no example has a
gradient of its own to clip (Opacus's ModuleValidator rejects it).

Private runs: Opacus's PrivacyEngine.make_private_with_epsilon (hooks mode, Poisson sampling at rate batch/1437,
PRV accountant) picks the noise multiplier that spends exactly (ε, δ = 1e-5) over the epochs; per-example gradients
clipped to norm 1; SGD with momentum 0.9 at --lr, cosine decay per step. Non-private runs: the same nets, epochs,
batch and schedule without clipping or noise, at --plain-lr (0.2: digits' rate 0.05 per 64 examples, scaled to the
batch as in the batch-size study). Top-1 on the 360 validation images after the last epoch.
Outputs in --out-dir: <name>_runs.csv (one row per run, written after each; --resume keeps the runs it holds with the
same settings), <name>.json, <name>.md (the table for README) and <name>.png (top-1 against ε, min-max over seeds).
About 30 CPU minutes for the whole grid on one thread: run it with OMP_NUM_THREADS=1 (see validate/digits.py).
"""
import argparse
import csv
import io
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.data import create_dataset, create_transform
from timm.layers import GroupNormAct, StdConv2d
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from timm_nf._atomic import atomic_path, write_text_atomic
from timm_nf._command_line import (UsageError, check_output_file, command_main, finite_float, non_negative_int,
                                   positive_int)

from . import digits
from .batch_size import GN_GROUPS
from .machine import cpu_name

RESULTS_DIR = digits.RESULTS_DIR
NETS = {
    'nf': 'NF-ResNet (paper-exact)',
    'nf_timm': "NF-ResNet (timm's)",
    'gn_ws': 'GroupNorm + WS (BiT layers)',
}
EPSILONS = (1.0, 3.0, 8.0)
DELTA = 1e-5
MAX_GRAD_NORM = 1.0
WARMUP_EPOCHS = 1
RUN_FIELDS = ('net', 'epsilon', 'seed', 'epochs', 'batch', 'lr', 'noise_multiplier', 'spent_epsilon', 'top1',
              'final_train_loss', 'cpu_seconds')
BATCH_NORM_LINE = ('BatchNorm cannot take part: it normalises each example with the statistics of the whole batch, '
                   'so no example has a gradient of its own to clip (Opacus rejects it: {error})')


def build_net(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    shape = dict(num_classes=digits.NUM_CLASSES)
    if kind == 'nf':
        return timm.create_model('dm_nf_resnet50', depths=digits.DEPTHS, widths=digits.WIDTHS,
                                 stem_width=digits.STEM_WIDTH, **shape)
    if kind == 'nf_timm':
        return timm.create_model('nf_resnet50', depths=digits.DEPTHS, widths=digits.WIDTHS,
                                 stem_width=digits.STEM_WIDTH, **shape)
    if kind == 'gn_ws':
        return timm.create_model('resnetv2_50', layers=list(digits.DEPTHS), channels=digits.WIDTHS,
                                 stem_chs=digits.STEM_WIDTH, conv_layer=partial(StdConv2d, eps=1e-8),
                                 norm_layer=partial(GroupNormAct, num_groups=GN_GROUPS, inplace=False), **shape)
    raise ValueError(f'unknown net {kind!r}: expected one of {", ".join(NETS)}')


def batch_norm_line() -> str:
    """Why BatchNorm is left out, with Opacus's own verdict on digits' BatchNorm net."""
    from opacus.validators import ModuleValidator
    errors = ModuleValidator.validate(digits.build_net('bn_resnet'), strict=False)
    return BATCH_NORM_LINE.format(error=f'{len(errors)} BatchNorm layers, "{str(errors[0]).strip()}"' if errors
                                  else 'no error reported')


def load_tensors(img_size: int) -> Tuple[TensorDataset, TensorDataset]:
    """digits' train and validation images at `img_size`, through timm's eval transform, as tensors."""
    with tempfile.TemporaryDirectory(prefix='timm_nf_private_') as tmp:
        root = digits.write_image_folder(Path(tmp), img_size)
        transform = create_transform(img_size, interpolation='bilinear', mean=digits.MEAN, std=digits.STD,
                                     crop_pct=1.0)
        out = []
        for split in ('train', 'validation'):
            dataset = create_dataset('', root=str(root), split=split, transform=transform)
            images, labels = zip(*(dataset[i] for i in range(len(dataset))))
            out.append(TensorDataset(torch.stack(images), torch.tensor(labels)))
    return out[0], out[1]


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    images, labels = data.tensors
    return 100.0 * (model(images).argmax(1) == labels).float().mean().item()


def train_one(train: TensorDataset, val: TensorDataset, kind: str, epsilon: Optional[float], seed: int,
              epochs: int, batch: int, lr: float) -> Dict:
    """One run; `epsilon` None: non-private. The seed fixes the initial weights, the sampling and the noise."""
    from opacus import PrivacyEngine

    model = build_net(kind, seed).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch, shuffle=True, generator=generator)
    cpu = time.process_time()
    noise = spent = None
    if epsilon is not None:
        engine = PrivacyEngine(accountant='prv')
        with warnings.catch_warnings():  # Opacus warns about the accountant's search and the secure RNG
            warnings.simplefilter('ignore')
            model, optimizer, loader = engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon, target_delta=DELTA,
                epochs=epochs, max_grad_norm=MAX_GRAD_NORM, noise_generator=generator)
        noise = optimizer.noise_multiplier
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=epochs, warmup_epochs=WARMUP_EPOCHS,
                                       warmup_lr=lr * 0.01, min_lr=0.0, step_on_epochs=False,
                                       updates_per_epoch=len(loader))
    losses, updates = [], 0
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(updates)
            losses.append(loss.item())
    if epsilon is not None:
        spent = engine.get_epsilon(DELTA)
        model = model._module
    return dict(net=kind, epsilon=epsilon if epsilon is not None else math.inf, seed=seed, epochs=epochs,
                batch=batch, lr=lr, noise_multiplier=round(noise, 4) if noise is not None else 0.0,
                spent_epsilon=round(spent, 3) if spent is not None else math.inf, top1=round(evaluate(model, val), 2),
                final_train_loss=round(statistics.fmean(losses[-5:]), 4),
                cpu_seconds=round(time.process_time() - cpu, 1))
