"""NF against BatchNorm on real data: scikit-learn's handwritten digits, trained on CPU with timm's own components.

    python -m validate digits [--out-dir validate/results] [--epochs 30] [--sweep-steps 100] [--parts recipe sweep]

The 1,797 8x8 digit scans that ship inside scikit-learn are upscaled and written as an ImageFolder (80/20 stratified
split), read back with timm's create_dataset / create_loader, and trained with create_optimizer_v2 (SGD Nesterov
0.9; gains and biases without weight decay), create_scheduler_v2 (warm-up + cosine, stepped per update) and
LabelSmoothingCrossEntropy: the same recipe for
- our paper-exact NF-ResNet (dm_nf_resnet50 with a depths/widths override),
- timm's own NormFreeNet of the same shape (nf_resnet50 config with the same depths/widths), and
- a pre-activation BatchNorm ResNet of the same shape (timm's resnetv2_50 with the same depths/widths).

Part 1 trains our NF net and the BN net with the recipe and reports both top-1 accuracies and the gap.
Part 2, the stability sweep: each net trains for a fixed number of steps at a constant learning rate (no warm-up),
on the same pre-drawn batches, for a doubling grid of rates, with and without AGC (timm.utils.dispatch_clip_grad
mode 'agc', classifier excluded as in train.py). A run "trains" when every loss is finite and the mean of the last
10 losses is at least 0.05 below the first loss; it has also "learned" when that mean is below 0.9·ln(10). The
grid doubles; the sweep for one net stops after two runs in a row that do not train.
Results: <out-dir>/digits.json (part 1: accuracies and gap), digits_sweep.json and digits_sweep.csv (part 2).
About 11 minutes on 2 cores (4 for the recipe, 7 for the sweep). On a busy machine set OMP_NUM_THREADS=1: two
OpenMP threads competing with other processes made these small steps 20x slower (the committed results were taken
with one thread).
"""
import csv
import io
import json
import math
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import timm
from PIL import Image
from timm.data import create_dataset, create_loader
from timm.loss import LabelSmoothingCrossEntropy
from timm.models import nfnet as timm_nfnet
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import accuracy, dispatch_clip_grad
from torch import nn

from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import (check_output_dir, check_output_file, command_main, non_negative_float,
                                   positive_float, whole_number)
from timm_nf._memory import check_training_fits

import timm_nf  # noqa: F401  (registers our models)

RESULTS_DIR = Path(__file__).resolve().parent / 'results'
NUM_CLASSES = 10
CHANCE_LOSS = math.log(NUM_CLASSES)
MEAN = STD = (0.5, 0.5, 0.5)
# one shape for all three nets: NF-ResNet-style bottlenecks, 7x7/2 stem + max-pool, strides 1,2,2,2
DEPTHS = (1, 1, 1, 1)
WIDTHS = (32, 64, 128, 256)
STEM_WIDTH = 16
NETS = {
    'nf_ours': 'ours: dm_nf_resnet50 shape override (paper-exact NF-ResNet)',
    'nf_timm': "timm's NormFreeNet, nf_resnet50 config with the same shape",
    'bn_resnet': 'BatchNorm pre-activation ResNet (timm resnetv2_50) with the same shape',
}
SWEEP_LRS = tuple(0.0125 * 2 ** k for k in range(11))  # 0.0125 ... 12.8
# the recipe's budget at batch 64, the batch-size study's: 30 epochs, 2 of them warm-up, lr 0.05 (the paper-exact net's
# training loss has stopped falling by then, validate/results/batch_size_budget.json; at lr 0.1 it can diverge)
WARMUP_EPOCHS = 2


def write_image_folder(root: Path, img_size: int, seed: int = 0) -> Path:
    """sklearn's digits, upscaled bicubically to img_size, as root/{train,validation}/<digit>/<index>.png."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0 * 255).clip(0, 255).astype(np.uint8)
    idx_train, idx_val = train_test_split(np.arange(len(images)), test_size=0.2, stratify=digits.target,
                                          random_state=seed)
    for split, indices in (('train', idx_train), ('validation', idx_val)):
        for i in indices:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).resize((img_size, img_size), Image.BICUBIC).convert('RGB').save(
                folder / f'{i:04d}.png')
    return root


def make_loaders(root: Path, img_size: int, batch_size: int, seed: int = 0):
    """timm's dataset and loader; mild crops, no flips (digits are not mirror-symmetric)."""
    torch.manual_seed(seed)
    random.seed(seed)  # timm's crops draw from Python's `random` in a loader without workers
    common = dict(input_size=(3, img_size, img_size), use_prefetcher=False, num_workers=0, persistent_workers=False,
                  interpolation='bilinear', mean=MEAN, std=STD, device=torch.device('cpu'))
    train = create_loader(create_dataset('', root=str(root), split='train', is_training=True),
                          batch_size=batch_size, is_training=True, hflip=0.0, scale=(0.7, 1.0), ratio=(0.9, 1.1),
                          color_jitter=0.0, **common)
    val = create_loader(create_dataset('', root=str(root), split='validation'), batch_size=256, crop_pct=1.0,
                        **common)
    return train, val


def build_net(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == 'nf_ours':
        return timm.create_model('dm_nf_resnet50', num_classes=NUM_CLASSES, depths=DEPTHS, widths=WIDTHS,
                                 stem_width=STEM_WIDTH)
    if kind == 'nf_timm':
        from dataclasses import replace
        cfg = replace(timm_nfnet.model_cfgs['nf_resnet50'], depths=DEPTHS, channels=WIDTHS, stem_chs=STEM_WIDTH)
        return timm_nfnet.NormFreeNet(cfg, num_classes=NUM_CLASSES)
    if kind == 'bn_resnet':
        return timm.create_model('resnetv2_50', num_classes=NUM_CLASSES, layers=list(DEPTHS), channels=WIDTHS,
                                 stem_chs=STEM_WIDTH)
    raise ValueError(f'unknown net {kind!r}: expected one of {sorted(NETS)}')


def _clip(model: nn.Module, agc: Optional[float]) -> None:
    if agc:  # like train.py: every parameter but the classifier's weight and bias (the last two registered)
        dispatch_clip_grad(list(model.parameters())[:-2], agc, mode='agc')


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += accuracy(model(x), y, topk=(1,))[0].item() * len(y) / 100
        total += len(y)
    return 100.0 * correct / total


def train_recipe(model: nn.Module, train_loader, val_loader, epochs: int, lr: float, weight_decay: float,
                 warmup_epochs: int = WARMUP_EPOCHS, agc: Optional[float] = None) -> Dict:
    """The shared recipe: SGD Nesterov, warm-up + cosine per update, label smoothing 0.1."""
    optimizer = create_optimizer_v2(model, opt='sgd', lr=lr, momentum=0.9, weight_decay=weight_decay)
    updates_per_epoch = len(train_loader)
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=epochs, warmup_epochs=warmup_epochs,
                                       warmup_lr=lr * 0.01, min_lr=0.0, step_on_epochs=False,
                                       updates_per_epoch=updates_per_epoch)
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    epoch_losses, val_top1, num_updates = [], [], 0
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        losses = []
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _clip(model, agc)
            optimizer.step()
            num_updates += 1
            scheduler.step_update(num_updates)
            losses.append(loss.item())
        epoch_losses.append(round(float(np.mean(losses)), 4))
        val_top1.append(round(evaluate(model, val_loader), 2))
    return dict(train_loss=epoch_losses, val_top1=val_top1, final_top1=val_top1[-1],
                seconds=round(time.perf_counter() - start, 1))


def draw_batches(train_loader, steps: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The same augmented batches for every sweep run, so nets and rates see identical data."""
    batches = []
    while len(batches) < steps:
        batches.extend((x.clone(), y.clone()) for x, y in train_loader)
    return batches[:steps]


def sweep_run(kind: str, lr: float, batches, val_loader, weight_decay: float, agc: Optional[float]) -> Dict:
    model = build_net(kind)
    model.train()
    optimizer = create_optimizer_v2(model, opt='sgd', lr=lr, momentum=0.9, weight_decay=weight_decay)
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _clip(model, agc)
        optimizer.step()
    finite = len(losses) == len(batches) and all(math.isfinite(v) for v in losses)
    final = float(np.mean(losses[-10:])) if finite else float('nan')
    trains = finite and final < losses[0] - 0.05  # the loss falls and never blows up to inf/NaN
    learned = trains and final < 0.9 * CHANCE_LOSS  # and is already clearly below chance
    top1 = evaluate(model, val_loader) if finite else float('nan')
    return dict(net=kind, agc=agc or 0.0, lr=lr, trains=trains, learned=learned, finite=finite, first_loss=round(losses[0], 4),
                final_loss=round(final, 4), val_top1=round(top1, 2), steps=len(losses))


def stability_sweep(batches, val_loader, weight_decay: float, agc_factor: float, lrs: Sequence[float],
                    nets: Sequence[str] = tuple(NETS), log=print) -> List[Dict]:
    rows = []
    for kind in nets:
        for agc in (None, agc_factor):
            failures_in_a_row = 0
            for lr in lrs:
                row = sweep_run(kind, lr, batches, val_loader, weight_decay, agc)
                rows.append(row)
                log(f"  {kind:<10} agc={row['agc']:<5} lr={lr:<7.3g} trains={row['trains']!s:<5} "
                    f"loss {row['first_loss']:.3f} -> {row['final_loss']:.3f}  val top-1 {row['val_top1']}")
                failures_in_a_row = 0 if row['trains'] else failures_in_a_row + 1
                if failures_in_a_row == 2:
                    break
    return rows


def largest_stable_lr(rows: List[Dict], flag: str = 'trains') -> Dict[str, Dict[str, Optional[float]]]:
    """net → {'no_agc': lr, 'agc': lr}: the largest rate in the grid whose run has `flag` set (None if none)."""
    out: Dict[str, Dict[str, Optional[float]]] = {}
    for row in rows:
        key = 'agc' if row['agc'] else 'no_agc'
        best = out.setdefault(row['net'], {'no_agc': None, 'agc': None})
        if row[flag] and (best[key] is None or row['lr'] > best[key]):
            best[key] = row['lr']
    return out


def _write_json(path: Path, data: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2) + '\n')


def run(out_dir: Path, img_size: int, batch_size: int, epochs: int, lr: float, weight_decay: float,
        sweep_steps: int, agc_factor: float, lrs: Sequence[float], parts: Sequence[str] = ('recipe', 'sweep'),
        name: str = 'digits', log=print) -> Dict:
    """Part 'recipe' → <name>.json; part 'sweep' → <name>_sweep.json and .csv. Returns {part: results}."""
    torch.manual_seed(0)
    out: Dict = {}
    with tempfile.TemporaryDirectory(prefix='timm_nf_digits_') as tmp:
        root = write_image_folder(Path(tmp), img_size)
        train_loader, val_loader = make_loaders(root, img_size, batch_size)
        setup = dict(img_size=img_size, batch_size=batch_size, weight_decay=weight_decay, depths=DEPTHS,
                     widths=WIDTHS, stem_width=STEM_WIDTH, nets=NETS, train_images=len(train_loader.dataset),
                     val_images=len(val_loader.dataset), torch=torch.__version__, timm=timm.__version__,
                     threads=torch.get_num_threads(), machine=platform.machine())
        log(f'digits: {len(train_loader.dataset)} train / {len(val_loader.dataset)} validation images at '
            f'{img_size} px, batch {batch_size}, weight decay {weight_decay}')
        if 'recipe' in parts:
            started = time.perf_counter()
            results: Dict = dict(setup=dict(setup, epochs=epochs, lr=lr, warmup_epochs=WARMUP_EPOCHS), recipe={})
            for kind in ('nf_ours', 'bn_resnet'):
                model = build_net(kind)
                res = train_recipe(model, train_loader, val_loader, epochs, lr, weight_decay, WARMUP_EPOCHS)
                res['params'] = sum(p.numel() for p in model.parameters())
                results['recipe'][kind] = res
                log(f"{kind:<10} {res['params'] / 1e6:.2f}M params  train loss {res['train_loss']}  "
                    f"val top-1 {res['val_top1']}  ({res['seconds']} s)")
            results['gap_top1'] = round(results['recipe']['nf_ours']['final_top1']
                                        - results['recipe']['bn_resnet']['final_top1'], 2)
            results['seconds'] = round(time.perf_counter() - started, 1)
            log(f"gap (NF - BN) top-1: {results['gap_top1']:+.2f} points")
            _write_json(out_dir / f'{name}.json', results)
            out['recipe'] = results
        if 'sweep' in parts:
            started = time.perf_counter()
            batches = draw_batches(train_loader, sweep_steps)
            log(f'stability sweep: {sweep_steps} steps at constant lr, batch {batch_size}, AGC factor {agc_factor}')
            rows = stability_sweep(batches, val_loader, weight_decay, agc_factor, lrs, log=log)
            results = dict(setup=dict(setup, steps=sweep_steps, agc_factor=agc_factor, lrs=list(lrs)),
                           rule='trains: all losses finite and mean of the last 10 < first loss - 0.05; '
                                'learned: that mean < 0.9 ln(10)',
                           largest_lr_trains=largest_stable_lr(rows),
                           largest_lr_learned=largest_stable_lr(rows, 'learned'), rows=rows,
                           seconds=round(time.perf_counter() - started, 1))
            log(f"largest lr that trains: {json.dumps(results['largest_lr_trains'])}")
            log(f"largest lr that learned: {json.dumps(results['largest_lr_learned'])}")
            _write_json(out_dir / f'{name}_sweep.json', results)
            table = io.StringIO(newline='')
            writer = csv.DictWriter(table, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            write_text_atomic(out_dir / f'{name}_sweep.csv', table.getvalue())
            out['sweep'] = results
    log(f'wrote {sorted(str(p) for p in out_dir.glob(name + "*"))}')
    return out


PROG = 'python -m validate digits'
MAX_IMG_SIZE = 256  # the scans are 8x8 pixels: a larger upscale only costs time and disk
TRAIN_IMAGES = 1437  # 80% of the 1,797 digits


def add_arguments(parser) -> None:
    parser.add_argument('--out-dir', type=Path, default=RESULTS_DIR, help='created if missing (its parent must exist)')
    parser.add_argument('--img-size', type=whole_number(16, MAX_IMG_SIZE), default=32)
    parser.add_argument('--batch-size', type=whole_number(2, TRAIN_IMAGES), default=64)
    parser.add_argument('--epochs', type=whole_number(1, 1000), default=30)
    parser.add_argument('--lr', type=positive_float, default=0.05)
    parser.add_argument('--weight-decay', type=non_negative_float, default=5e-5)
    parser.add_argument('--sweep-steps', type=whole_number(10, 100_000), default=100)
    parser.add_argument('--agc', type=positive_float, default=0.01, help='AGC clip factor for the sweep')
    parser.add_argument('--parts', nargs='+', choices=('recipe', 'sweep'), default=['recipe', 'sweep'])


def _run(args) -> int:
    check_output_dir(args.out_dir, '--out-dir', may_create=True)
    names = (['digits.json'] if 'recipe' in args.parts else []) + \
        (['digits_sweep.json', 'digits_sweep.csv'] if 'sweep' in args.parts else [])
    if args.out_dir.is_dir():
        for name in names:
            check_output_file(str(args.out_dir / name), '--out-dir')
    for kind in NETS:
        check_training_fits(lambda: build_net(kind), (args.batch_size, 3, args.img_size, args.img_size),
                            f'training {kind} at --batch-size {args.batch_size}, --img-size {args.img_size}',
                            'lower --batch-size or --img-size')
    run(args.out_dir, args.img_size, args.batch_size, args.epochs, args.lr, args.weight_decay, args.sweep_steps,
        args.agc, SWEEP_LRS, parts=args.parts)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, __doc__.split('\n')[0], add_arguments, _run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
