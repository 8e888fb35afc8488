"""Batch-size dependence on real data: NF-ResNet, BatchNorm ResNet and GroupNorm + weight standardisation, trained on
scikit-learn's digits at batch sizes 2 to 128.

    python -m validate batch-size [--batch-sizes 2 4 8 16 32 64 128] [--seeds 0 1 2] [--epochs 6] [--base-lr 0.05]
                                  [--out-dir validate/results] [--name batch_size] [--resume]

Data, loaders and recipe are validate/digits.py's (80/20 split of the 1,797 digits at 32 px, timm's loader, SGD
Nesterov 0.9, weight decay 5e-5 without gains/biases, 1 warm-up epoch then cosine per update, label smoothing 0.1),
for four nets of one shape (bottlenecks, depths 1-1-1-1, widths 32-64-128-256, stem 16):
- nf: the paper-exact NF-ResNet (dm_nf_resnet50 shape override; its stochastic depth 0.1 as in the paper),
- nf_timm: timm's NF-ResNet (NormFreeNet, nf_resnet50 config with the same shape): avg-pool shortcuts and
  zero-initialised last-conv gains instead of strided 1x1 shortcuts and a scalar SkipInit gain,
- bn: the BatchNorm pre-activation ResNet (timm's resnetv2_50 with the same shape),
- gn_ws: the same ResNetV2 with BiT's layers, as timm's resnetv2_50x1_bit builds them: StdConv2d (weight
  standardisation, eps 1e-8) and GroupNormAct, with 8 groups instead of BiT's 32 (the narrowest layer has 8 channels).
Every batch size trains for the same number of epochs (default 6, what the CPU budget allows: the smallest batches
cost the most), with the learning rate scaled linearly with the batch (Goyal et al. 2017):
lr = base_lr * batch / 64, base_lr 0.05 so that batch 128 gets 0.1, the largest constant rate at which the
paper-exact NF net still trained in digits' stability sweep (at 0.2 it diverges). Top-1 is measured after the last
epoch in eval mode, so BatchNorm uses its running statistics, as timm's validate.py does. About 35 CPU minutes for
the full grid (4 nets x 7 batch sizes x 3 seeds), seed by seed, so that an interrupted run (--resume) already has
whole tables.
Outputs in --out-dir: <name>_runs.csv (one row per run, written after each run; --resume skips the runs it already
holds), <name>.json (setup and the table), <name>.md (the table, for README and the model card) and <name>.png
(top-1 against batch size, log scale, one line per net, the min-max over seeds shaded).
Run it with OMP_NUM_THREADS=1 on a shared machine (see validate/digits.py).
"""
import argparse
import csv
import json
import math
import os
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import timm
import torch
from timm.layers import GroupNormAct, StdConv2d
from torch import nn

from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import (UsageError, check_output_file, command_main, non_negative_float, positive_float,
                                   random_seed, whole_number)
from timm_nf._memory import check_training_fits

from . import digits
from .machine import cpu_name
from .study_output import finish_and_save, runs_csv

RESULTS_DIR = digits.RESULTS_DIR
NETS = {
    'nf': 'NF-ResNet (paper-exact)',
    'nf_timm': "NF-ResNet (timm's NormFreeNet)",
    'bn': 'BatchNorm ResNet (pre-activation)',
    'gn_ws': 'GroupNorm + weight standardisation (BiT layers)',
}
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128)
BASE_BATCH = 64
GN_GROUPS = 8
RUN_FIELDS = ('net', 'batch', 'seed', 'lr', 'epochs', 'top1', 'final_train_loss', 'finite', 'seconds', 'cpu_seconds')


def learning_rate(batch: int, base_lr: float) -> float:
    """The linear scaling rule: base_lr at batch 64, proportional to the batch."""
    return base_lr * batch / BASE_BATCH


def build_net(kind: str, seed: int) -> nn.Module:
    if kind == 'nf':
        return digits.build_net('nf_ours', seed)
    if kind == 'nf_timm':
        return digits.build_net('nf_timm', seed)
    if kind == 'bn':
        return digits.build_net('bn_resnet', seed)
    if kind == 'gn_ws':
        torch.manual_seed(seed)
        return timm.create_model('resnetv2_50', num_classes=digits.NUM_CLASSES, layers=list(digits.DEPTHS),
                                 channels=digits.WIDTHS, stem_chs=digits.STEM_WIDTH,
                                 conv_layer=partial(StdConv2d, eps=1e-8),
                                 norm_layer=partial(GroupNormAct, num_groups=GN_GROUPS))
    raise ValueError(f'unknown net {kind!r}: expected one of {", ".join(NETS)}')


def train_one(root: Path, kind: str, batch: int, seed: int, epochs: int, base_lr: float, weight_decay: float,
              img_size: int) -> Dict:
    """One run of digits' recipe; the seed fixes the initial weights, the data order and the crops."""
    train_loader, val_loader = digits.make_loaders(root, img_size, batch, seed)
    model = build_net(kind, seed)
    lr = learning_rate(batch, base_lr)
    cpu = time.process_time()  # on a shared machine wall time says little: CPU time is what the run costs
    res = digits.train_recipe(model, train_loader, val_loader, epochs, lr, weight_decay)
    return dict(net=kind, batch=batch, seed=seed, lr=lr, epochs=epochs, top1=res['final_top1'],
                final_train_loss=res['train_loss'][-1], finite=all(math.isfinite(v) for v in res['train_loss']),
                seconds=res['seconds'], cpu_seconds=round(time.process_time() - cpu, 1))


def pixels_reaching_logits(kind: str, img_size: int, seed: int = 0) -> int:
    """How many input pixels the logits depend on at initialisation (non-zero input gradient): a net whose residual
    branches start switched off sees only what its shortcut path keeps."""
    model = build_net(kind, seed).eval()
    x = torch.randn(1, 3, img_size, img_size, requires_grad=True)
    model(x).sum().backward()
    grad = x.grad.abs().sum(1)
    return int((grad > 1e-12 * grad.max()).sum())


def summarize(runs: Sequence[Dict], column: str = 'top1') -> Dict[str, Dict[int, Dict]]:
    """net → batch → {mean, std (sample, over seeds), min, max, n} of a column (top-1 by default)."""
    table: Dict[str, Dict[int, Dict]] = {}
    for kind in NETS:
        for batch in sorted({r['batch'] for r in runs if r['net'] == kind}):
            every = [r[column] for r in runs if r['net'] == kind and r['batch'] == batch]
            finite = [v for v in every if math.isfinite(v)]  # a diverged run has no final loss
            values = finite or [math.nan]
            table.setdefault(kind, {})[batch] = dict(
                mean=round(statistics.fmean(values), 2 if column == 'top1' else 3),
                std=round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), n=len(every), diverged=len(every) - len(finite))
    return table


def markdown_table(table: Dict[str, Dict[int, Dict]], spread: bool = True) -> str:
    batches = sorted({b for per in table.values() for b in per})
    lines = ['| net | ' + ' | '.join(f'batch {b}' for b in batches) + ' |', '|---|' + '---|' * len(batches)]
    for kind, per in table.items():
        cells = [('-' if b not in per else f'{per[b]["mean"]:.1f} ± {per[b]["std"]:.1f}' if spread else
                  f'{per[b]["mean"]:.2f}' + (f' ({per[b]["diverged"]} diverged)' if per[b]['diverged'] else ''))
                 for b in batches]
        lines.append(f'| {NETS[kind]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(table: Dict[str, Dict[int, Dict]], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for i, (kind, per) in enumerate(table.items()):
        batches = sorted(per)
        ax.plot(batches, [per[b]['mean'] for b in batches], marker='o', color=f'C{i}', label=NETS[kind])
        ax.fill_between(batches, [per[b]['min'] for b in batches], [per[b]['max'] for b in batches], color=f'C{i}',
                        alpha=0.2, lw=0)
    ax.set_xscale('log', base=2)
    ax.set_xticks(sorted({b for per in table.values() for b in per}))
    finish_and_save(fig, ax, path, title, 'batch size (learning rate scaled linearly)')


def _runs_csv(runs: Sequence[Dict]) -> str:
    return runs_csv(runs, RUN_FIELDS)


def _read_runs(path: Path, epochs: int, base_lr: float) -> List[Dict]:
    """The runs of an earlier, interrupted invocation with the same epochs and learning-rate rule."""
    if not path.is_file():
        return []
    runs = []
    for row in csv.DictReader(path.open()):
        run = dict(net=row['net'], batch=int(row['batch']), seed=int(row['seed']), lr=float(row['lr']),
                   epochs=int(row['epochs']), top1=float(row['top1']), final_train_loss=float(row['final_train_loss']),
                   finite=row['finite'] == 'True', seconds=float(row['seconds']),
                   cpu_seconds=float(row['cpu_seconds']))
        if run['epochs'] == epochs and math.isclose(run['lr'], learning_rate(run['batch'], base_lr)):
            runs.append(run)
    return runs


def run(out_dir: Path, name: str, nets: Sequence[str], batch_sizes: Sequence[int], seeds: Sequence[int], epochs: int,
        base_lr: float, weight_decay: float, img_size: int, resume: bool = False, log=print) -> Dict:
    """Train every (net, batch, seed), writing the runs as they finish; then the table, JSON, markdown and figure."""
    runs_path = out_dir / f'{name}_runs.csv'
    runs = _read_runs(runs_path, epochs, base_lr) if resume else []
    done = {(r['net'], r['batch'], r['seed']) for r in runs}
    runs = [r for r in runs if r['net'] in nets and r['batch'] in batch_sizes and r['seed'] in seeds]
    started = time.perf_counter()
    todo = [(kind, batch, seed) for seed in seeds for batch in batch_sizes for kind in nets
            if (kind, batch, seed) not in done]
    with tempfile.TemporaryDirectory(prefix='timm_nf_batch_size_') as tmp:
        root = digits.write_image_folder(Path(tmp), img_size) if todo else None
        for kind, batch, seed in todo:
            row = train_one(root, kind, batch, seed, epochs, base_lr, weight_decay, img_size)
            runs.append(row)
            write_text_atomic(runs_path, _runs_csv(runs))
            log(f"batch {batch:>3}  {kind:<5} seed {seed}  lr {row['lr']:.4g}  top-1 {row['top1']:6.2f}  "
                f"loss {row['final_train_loss']:.3f}  ({row['seconds']} s, {row['cpu_seconds']} s CPU)")
    table = summarize(runs)
    reach = {kind: pixels_reaching_logits(kind, img_size) for kind in nets}
    setup = dict(pixels_reaching_logits_at_init=reach, epochs=epochs, base_lr=base_lr, base_batch=BASE_BATCH, lr_rule=f'lr = {base_lr} * batch / {BASE_BATCH}',
                 weight_decay=weight_decay, img_size=img_size, seeds=list(seeds), batch_sizes=list(batch_sizes),
                 nets={k: NETS[k] for k in nets}, depths=digits.DEPTHS, widths=digits.WIDTHS,
                 stem_width=digits.STEM_WIDTH, gn_groups=GN_GROUPS, torch=torch.__version__, timm=timm.__version__,
                 threads=torch.get_num_threads(), machine=platform.machine(), processor=cpu_name())
    seconds = round(sum(r['cpu_seconds'] for r in runs), 1)
    losses = summarize(runs, 'final_train_loss')
    result = dict(setup=setup, table={k: {str(b): v for b, v in per.items()} for k, per in table.items()},
                  final_train_loss={k: {str(b): v for b, v in per.items()} for k, per in losses.items()},
                  cpu_seconds=seconds, wall_seconds_this_invocation=round(time.perf_counter() - started, 1))
    write_text_atomic(out_dir / f'{name}.json', json.dumps(result, indent=1) + '\n')
    title = (f'digits, {epochs} epochs at every batch size, lr = {base_lr:g}·B/{BASE_BATCH}; mean over '
             f'{len(seeds)} seeds, min-max shaded')
    write_text_atomic(out_dir / f'{name}.md', _markdown(table, losses, setup, seconds, name))
    plot(table, str(out_dir / f'{name}.png'), title)
    log(markdown_table(table))
    log(f'wrote {out_dir}/{name}.json, .md, .png and {name}_runs.csv ({seconds} CPU seconds of training)')
    return result


def _failures(table: Dict[str, Dict[int, Dict]], below: float = 50.0) -> str:
    """Which nets fell below `below` % top-1, and at which batch sizes, in words."""
    parts = []
    for kind, per in table.items():
        low = [b for b in sorted(per) if per[b]['mean'] < below]
        if low:
            where = 'every batch size' if len(low) == len(per) else 'batch ' + ', '.join(map(str, low))
            parts.append(f'{NETS[kind]} at {where}')
    return f'Below {below:g} % top-1: ' + ('; '.join(parts) if parts else 'none') + '.'


def _markdown(table: Dict, losses: Dict, setup: Dict, seconds: float, name: str) -> str:
    return '\n'.join([
        '<!-- generated by `python -m validate batch-size`; numbers from validate/results/'
        f'{name}.json and {name}_runs.csv -->',
        f'![top-1 against batch size]({name}.png)',
        '',
        f'Validation top-1 (%) on scikit-learn\'s digits (1,437 train / 360 validation images at '
        f'{setup["img_size"]} px), mean ± standard deviation over seeds {", ".join(map(str, setup["seeds"]))}; '
        f'{setup["epochs"]} epochs at every batch size, {setup["lr_rule"]}, SGD Nesterov with 1 warm-up epoch and '
        f'cosine decay; BatchNorm evaluated with its running statistics. Bottleneck ResNets of one shape (depths '
        f'{"-".join(map(str, setup["depths"]))}, widths {"-".join(map(str, setup["widths"]))}); GroupNorm with '
        f'{setup["gn_groups"]} groups. {seconds / 60:.0f} CPU minutes of training, '
        f'{"one thread" if setup["threads"] == 1 else str(setup["threads"]) + " threads"} ({setup["machine"]}). '
        f'Input pixels that reach the '
        f'logits at initialisation (non-zero gradient), of {setup["img_size"] ** 2}: '
        + ', '.join(f'{NETS[k]} {n}' for k, n in setup['pixels_reaching_logits_at_init'].items()) + '.',
        '',
        markdown_table(table),
        '',
        _failures(table),
        '',
        f'Training loss of the last epoch (label-smoothed cross-entropy, mean over seeds; chance is '
        f'{digits.CHANCE_LOSS:.2f}): whether a '
        'net failed to train or only to evaluate.',
        '',
        markdown_table(losses, spread=False),
        '',
    ])


PROG = 'python -m validate batch-size'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--out-dir', type=Path, default=RESULTS_DIR, help='an existing folder (default validate/results)')
    p.add_argument('--name', default='batch_size', help='file name stem of the outputs (default batch_size)')
    p.add_argument('--nets', nargs='+', choices=tuple(NETS), default=list(NETS))
    p.add_argument('--batch-sizes', nargs='+', type=whole_number(1, digits.TRAIN_IMAGES), default=list(BATCH_SIZES))
    p.add_argument('--seeds', nargs='+', type=random_seed, default=[0, 1, 2])
    p.add_argument('--epochs', type=whole_number(1, 1000), default=6)
    p.add_argument('--base-lr', type=positive_float, default=0.05, help='learning rate at batch 64 (default 0.05)')
    p.add_argument('--weight-decay', type=non_negative_float, default=5e-5)
    p.add_argument('--img-size', type=whole_number(1, digits.MAX_IMG_SIZE), default=32)
    p.add_argument('--resume', action='store_true', help='keep the runs already in <name>_runs.csv')


def _check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training: values, and every output file."""
    if not args.name or os.sep in args.name or args.name.startswith('.'):
        raise UsageError(f'--name must be a plain file name stem, got {args.name!r}')
    if min(args.batch_sizes) < 2:
        raise UsageError(f'--batch-sizes must be at least 2 (BatchNorm needs two samples), got '
                         f'{min(args.batch_sizes)}')
    if args.img_size < 16:
        raise UsageError(f'--img-size must be at least 16 (the nets downsample 32x), got {args.img_size}')
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.batch_sizes)) != len(args.batch_sizes):
        raise UsageError('each seed and batch size may be given only once')
    if args.base_lr <= 0 or args.weight_decay < 0:
        raise UsageError(f'need --base-lr > 0 and --weight-decay >= 0, got {args.base_lr} and {args.weight_decay}')
    if not args.out_dir.is_dir():
        raise UsageError(f'--out-dir {args.out_dir} is not an existing folder')
    for suffix in ('_runs.csv', '.json', '.md', '.png'):
        check_output_file(str(args.out_dir / f'{args.name}{suffix}'), '--out-dir/--name')
    for kind in args.nets:
        check_training_fits(lambda: build_net(kind, 0), (max(args.batch_sizes), 3, args.img_size, args.img_size),
                            f'training {kind} at batch {max(args.batch_sizes)}, --img-size {args.img_size}',
                            'lower --batch-sizes or --img-size')


def _run(args: argparse.Namespace) -> int:
    _check(args)
    run(args.out_dir, args.name, args.nets, sorted(args.batch_sizes), args.seeds, args.epochs, args.base_lr,
        args.weight_decay, args.img_size, resume=args.resume)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, __doc__.split('\n')[0], add_arguments, _run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
