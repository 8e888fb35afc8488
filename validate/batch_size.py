"""Batch-size dependence on real data: NF-ResNet, BatchNorm ResNet and GroupNorm + weight standardisation, trained on
scikit-learn's digits at batch sizes 2 to 128.

    python -m validate batch-size [--batch-sizes 2 8 32 64 128] [--seeds 0 1 2] [--epochs 30] [--warmup-epochs 2]
                                  [--base-lr 0.05] [--out-dir validate/results] [--name batch_size] [--resume]
    python -m validate batch-size --probe-epochs 10 20 30 40 --seeds 0    # how the budget was chosen

Data, loaders and recipe are validate/digits.py's (80/20 split of the 1,797 digits at 32 px, timm's loader, SGD
Nesterov 0.9, weight decay 5e-5 without gains/biases, warm-up then cosine per update, label smoothing 0.1), for four
nets of one shape (bottlenecks, depths 1-1-1-1, widths 32-64-128-256, stem 16):
- nf: the paper-exact NF-ResNet (dm_nf_resnet50 shape override; its stochastic depth 0.1 as in the paper),
- nf_timm: timm's NF-ResNet (NormFreeNet, nf_resnet50 config with the same shape): avg-pool shortcuts and
  zero-initialised last-conv gains instead of strided 1x1 shortcuts and a scalar SkipInit gain,
- bn: the BatchNorm pre-activation ResNet (timm's resnetv2_50 with the same shape),
- gn_ws: the same ResNetV2 with BiT's layers, as timm's resnetv2_50x1_bit builds them: StdConv2d (weight
  standardisation, eps 1e-8) and GroupNormAct, with 8 groups instead of BiT's 32 (the narrowest layer has 8 channels).
One budget for every net and batch size: the same epochs and warm-up epochs, the learning rate scaled linearly with
the batch from the reference batch 64 (Goyal et al. 2017), lr = base_lr * batch / 64. The budget is chosen first, at
batch 64 and on the paper-exact NF-ResNet alone (--probe-epochs, <name>_budget.json): the shortest budget over whose
last third its training loss falls by less than PLATEAU. At and above batch 64, a net that does not train at the
rule's rate (a diverged seed, or top-1 more than SHORTFALL points below its batch-64 seeds that did not diverge) is
trained again at half the rate, a quarter, ... (RATE_HALVINGS), so the results say which rate it needed. Top-1 is
measured after the last epoch in eval mode, so BatchNorm uses its running statistics, as timm's validate.py does.
About 95 CPU minutes for the full grid (4 nets x 5 batch sizes x 3 seeds, and the lower rates), seed by seed, so that
an interrupted run (--resume) already has whole tables.
Outputs in --out-dir: <name>_runs.csv (one row per run, written after each run; --resume skips the runs it already
holds), <name>.json (setup, the table, the rates needed), <name>.md (the table, for README and the model card) and
<name>.png (top-1 against batch size, log scale, one line per net, the min-max over seeds shaded, the lower rates
that trained as open markers).
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
from typing import Callable, Dict, List, Optional, Sequence

import timm
import torch
from torch import nn

from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import (UsageError, check_output_file, command_main, non_negative_float, positive_float,
                                   random_seed, whole_number)
from timm_nf._memory import check_training_fits

from . import digits
from .machine import cpu_name
from .reference_nets import gn_ws_resnet
from .study_output import finish_and_save, runs_csv

RESULTS_DIR = digits.RESULTS_DIR
NETS = {
    'nf': 'NF-ResNet (paper-exact)',
    'nf_timm': "NF-ResNet (timm's NormFreeNet)",
    'bn': 'BatchNorm ResNet (pre-activation)',
    'gn_ws': 'GroupNorm + weight standardisation (BiT layers)',
}
BATCH_SIZES = (2, 8, 32, 64, 128)
BASE_BATCH = 64
GN_GROUPS = 8
# lr_factor: 1 for the linear rule; 1/2, 1/4, ... for the runs that look for the rate a net needs above batch 64
RUN_FIELDS = ('net', 'batch', 'seed', 'lr', 'lr_factor', 'epochs', 'warmup_epochs', 'top1', 'final_train_loss',
              'finite', 'seconds', 'cpu_seconds')
RATE_HALVINGS = 3  # how far below the linear rule to look for a rate that trains
SHORTFALL = 5.0  # top-1 points below the same net at batch 64 that count as not training at the scaled rate
PLATEAU = 0.02  # a training loss that falls less than this over the last third of a run has stopped falling


def learning_rate(batch: int, base_lr: float) -> float:
    """The linear scaling rule: base_lr at batch 64, proportional to the batch."""
    return base_lr * batch / BASE_BATCH


_DIGITS_NETS = {'nf': 'nf_ours', 'nf_timm': 'nf_timm', 'bn': 'bn_resnet'}  # this study's names for digits.py's nets


def build_net(kind: str, seed: int) -> nn.Module:
    if kind in _DIGITS_NETS:
        return digits.build_net(_DIGITS_NETS[kind], seed)
    if kind == 'gn_ws':
        torch.manual_seed(seed)
        return gn_ws_resnet(GN_GROUPS, num_classes=digits.NUM_CLASSES, layers=list(digits.DEPTHS),
                            channels=digits.WIDTHS, stem_chs=digits.STEM_WIDTH)
    raise ValueError(f'unknown net {kind!r}: expected one of {", ".join(NETS)}')


def train_one(root: Path, kind: str, batch: int, seed: int, epochs: int, base_lr: float, weight_decay: float,
              img_size: int, warmup_epochs: int = digits.WARMUP_EPOCHS, lr_factor: float = 1.0) -> Dict:
    """One run of digits' recipe; the seed fixes the initial weights, the data order and the crops.

    The row also holds the loss of every epoch (`train_loss`, not written to the runs file)."""
    train_loader, val_loader = digits.make_loaders(root, img_size, batch, seed)
    model = build_net(kind, seed)
    lr = learning_rate(batch, base_lr) * lr_factor
    cpu = time.process_time()  # on a shared machine wall time says little: CPU time is what the run costs
    res = digits.train_recipe(model, train_loader, val_loader, epochs, lr, weight_decay, warmup_epochs=warmup_epochs)
    return dict(net=kind, batch=batch, seed=seed, lr=lr, lr_factor=lr_factor, epochs=epochs,
                warmup_epochs=warmup_epochs, top1=res['final_top1'], final_train_loss=res['train_loss'][-1],
                finite=all(math.isfinite(v) for v in res['train_loss']), seconds=res['seconds'],
                cpu_seconds=round(time.process_time() - cpu, 1), train_loss=res['train_loss'])


def pixels_reaching_logits(kind: str, img_size: int, seed: int = 0) -> int:
    """How many input pixels the logits depend on at initialisation (non-zero input gradient): a net whose residual
    branches start switched off sees only what its shortcut path keeps."""
    model = build_net(kind, seed).eval()
    x = torch.randn(1, 3, img_size, img_size, requires_grad=True)
    model(x).sum().backward()
    grad = x.grad.abs().sum(1)
    return int((grad > 1e-12 * grad.max()).sum())


def summarize(runs: Sequence[Dict], column: str = 'top1') -> Dict[str, Dict[int, Dict]]:
    """net → batch → {mean, std (sample, over seeds), min, max, n} of a column (top-1 by default), at the linearly
    scaled rate (runs at lower rates are rates_needed's)."""
    runs = [r for r in runs if r.get('lr_factor', 1.0) == 1.0]
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


def plot(table: Dict[str, Dict[int, Dict]], path: str, title: str, rates: Sequence[Dict] = ()) -> None:
    """Top-1 against batch size at the linear rule; where a net needed a lower rate, that run as an open marker."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for i, (kind, per) in enumerate(table.items()):
        batches = sorted(per)
        ax.plot(batches, [per[b]['mean'] for b in batches], marker='o', color=f'C{i}', label=NETS[kind])
        ax.fill_between(batches, [per[b]['min'] for b in batches], [per[b]['max'] for b in batches], color=f'C{i}',
                        alpha=0.2, lw=0)
        for entry in rates:
            trained = [t for t in entry['tried'] if t['trains']] if entry['net'] == kind else []
            if trained:
                ax.plot([entry['batch']], [trained[0]['top1']], marker='o', mfc='none', ms=10, color=f'C{i}', ls='',
                        label=f'{NETS[kind]}, lr {trained[0]["lr"]:g} at batch {entry["batch"]}')
    ax.set_xscale('log', base=2)
    ax.set_xticks(sorted({b for per in table.values() for b in per}))
    finish_and_save(fig, ax, path, title, 'batch size (learning rate scaled linearly)')


def budget_probe(out_dir: Path, name: str, budgets: Sequence[int], seeds: Sequence[int], base_lr: float,
                 warmup_epochs: int, weight_decay: float, img_size: int, log=print) -> Dict:
    """The paper-exact NF-ResNet at the reference batch (64) for each budget in epochs: its training loss per epoch.

    The budget for the whole study is the shortest one after which this loss no longer falls (<name>_budget.json)."""
    with tempfile.TemporaryDirectory(prefix='timm_nf_batch_size_') as tmp:
        root = digits.write_image_folder(Path(tmp), img_size)
        return probe_budgets(
            lambda epochs, seed: train_one(root, 'nf', BASE_BATCH, seed, epochs, base_lr, weight_decay, img_size,
                                           warmup_epochs),
            budgets, seeds, out_dir / f'{name}_budget.json', log,
            setup=dict(batch=BASE_BATCH, base_lr=base_lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay,
                       img_size=img_size))


def probe_budgets(train: Callable[[int, int], Dict], budgets: Sequence[int], seeds: Sequence[int], path: Path, log,
                  setup: Dict) -> Dict:
    """`train(epochs, seed)` (a run of the paper-exact NF-ResNet) for every budget and seed; the probe, written to
    `path`: `setup`, each budget's mean last-epoch loss and top-1, and every run's loss per epoch (also the budget
    probe of validate/private.py)."""
    runs = []
    for epochs in budgets:
        for seed in seeds:
            row = train(epochs, seed)
            runs.append(row)
            log(f"{epochs:>3} epochs  seed {seed}  top-1 {row['top1']:6.2f}  loss {row['final_train_loss']:.3f}  "
                f"({row['cpu_seconds']} s CPU)  losses {row['train_loss']}")

    def mean(column: str, epochs: int, places: int) -> float:
        return round(statistics.fmean(r[column] for r in runs if r['epochs'] == epochs), places)

    result = dict(net=NETS['nf'], **setup, seeds=list(seeds),
                  mean_final_train_loss={str(e): mean('final_train_loss', e, 4) for e in budgets},
                  mean_top1={str(e): mean('top1', e, 2) for e in budgets},
                  runs=[{k: r[k] for k in ('epochs', 'seed', 'top1', 'final_train_loss', 'train_loss', 'cpu_seconds')}
                        for r in runs],
                  threads=torch.get_num_threads(), processor=cpu_name())
    write_text_atomic(path, json.dumps(result, indent=1) + '\n')
    log(f'mean final training loss by budget: {result["mean_final_train_loss"]}; top-1 {result["mean_top1"]}; '
        f'stopped falling (less than {PLATEAU:g} over the last third) at: {stopped_falling(result)} epochs')
    return result


def _read_runs(path: Path, epochs: int, base_lr: float, warmup_epochs: int) -> List[Dict]:
    """The runs of an earlier, interrupted invocation with the same budget and learning-rate rule."""
    if not path.is_file():
        return []
    runs = []
    for row in csv.DictReader(path.open()):
        if 'lr_factor' not in row:  # written before the rate search (and its warm-up column): another budget
            continue
        run = dict(net=row['net'], batch=int(row['batch']), seed=int(row['seed']), lr=float(row['lr']),
                   lr_factor=float(row['lr_factor']), epochs=int(row['epochs']),
                   warmup_epochs=int(row['warmup_epochs']), top1=float(row['top1']),
                   final_train_loss=float(row['final_train_loss']), finite=row['finite'] == 'True',
                   seconds=float(row['seconds']), cpu_seconds=float(row['cpu_seconds']))
        if run['epochs'] == epochs and run['warmup_epochs'] == warmup_epochs and math.isclose(
                run['lr'], learning_rate(run['batch'], base_lr) * run['lr_factor']):
            runs.append(run)
    return runs


def _train_and_record(todo, runs: List[Dict], runs_path: Path, root: Path, epochs: int, base_lr: float,
                      weight_decay: float, img_size: int, warmup_epochs: int, log) -> None:
    for kind, batch, seed, lr_factor in todo:
        row = train_one(root, kind, batch, seed, epochs, base_lr, weight_decay, img_size, warmup_epochs, lr_factor)
        runs.append(row)
        write_text_atomic(runs_path, runs_csv(runs, RUN_FIELDS))
        log(f"batch {batch:>3}  {kind:<5} seed {seed}  lr {row['lr']:.4g}  top-1 {row['top1']:6.2f}  "
            f"loss {row['final_train_loss']:.3f}  ({row['seconds']} s, {row['cpu_seconds']} s CPU)")


def _trains(runs: Sequence[Dict], kind: str, batch: int, lr_factor: float) -> bool:
    """Every seed finite, and mean top-1 within SHORTFALL points of the same net's seeds that did not diverge at the
    reference batch and rate."""
    at = [r for r in runs if r['net'] == kind and r['batch'] == batch and r['lr_factor'] == lr_factor]
    reference = [r['top1'] for r in runs if r['net'] == kind and r['batch'] == BASE_BATCH and r['lr_factor'] == 1.0
                 and r['finite']]
    if not at or not all(r['finite'] for r in at):
        return False
    return not reference or statistics.fmean(r['top1'] for r in at) >= statistics.fmean(reference) - SHORTFALL


def run(out_dir: Path, name: str, nets: Sequence[str], batch_sizes: Sequence[int], seeds: Sequence[int], epochs: int,
        base_lr: float, weight_decay: float, img_size: int, resume: bool = False,
        warmup_epochs: int = digits.WARMUP_EPOCHS, log=print) -> Dict:
    """Train every (net, batch, seed), writing the runs as they finish; then the table, JSON, markdown and figure.

    At and above the reference batch, a net that does not train at the linearly scaled rate (_trains) is trained
    again at half that rate, then a quarter, ... (RATE_HALVINGS at most) until it does: the rate it needs there."""
    runs_path = out_dir / f'{name}_runs.csv'
    runs = _read_runs(runs_path, epochs, base_lr, warmup_epochs) if resume else []
    done = {(r['net'], r['batch'], r['seed'], r['lr_factor']) for r in runs}
    runs = [r for r in runs if r['net'] in nets and r['batch'] in batch_sizes and r['seed'] in seeds]
    started = time.perf_counter()
    todo = [(kind, batch, seed, 1.0) for seed in seeds for batch in batch_sizes for kind in nets
            if (kind, batch, seed, 1.0) not in done]
    train = partial(_train_and_record, runs=runs, runs_path=runs_path, epochs=epochs, base_lr=base_lr,
                    weight_decay=weight_decay, img_size=img_size, warmup_epochs=warmup_epochs, log=log)
    with tempfile.TemporaryDirectory(prefix='timm_nf_batch_size_') as tmp:
        root = digits.write_image_folder(Path(tmp), img_size)
        train(todo, root=root)
        for kind in nets:
            for batch in (b for b in batch_sizes if b >= BASE_BATCH):
                lr_factor = 1.0
                while not _trains(runs, kind, batch, lr_factor) and lr_factor > 0.5 ** RATE_HALVINGS:
                    lr_factor /= 2
                    train([(kind, batch, seed, lr_factor) for seed in seeds
                           if (kind, batch, seed, lr_factor) not in done], root=root)
    table = summarize(runs)
    reach = {kind: pixels_reaching_logits(kind, img_size) for kind in nets}
    setup = dict(pixels_reaching_logits_at_init=reach, epochs=epochs, warmup_epochs=warmup_epochs, base_lr=base_lr,
                 base_batch=BASE_BATCH, lr_rule=f'lr = {base_lr} * batch / {BASE_BATCH}',
                 weight_decay=weight_decay, img_size=img_size, seeds=list(seeds), batch_sizes=list(batch_sizes),
                 nets={k: NETS[k] for k in nets}, depths=digits.DEPTHS, widths=digits.WIDTHS,
                 stem_width=digits.STEM_WIDTH, gn_groups=GN_GROUPS, torch=torch.__version__, timm=timm.__version__,
                 threads=torch.get_num_threads(), machine=platform.machine(), processor=cpu_name())
    seconds = round(sum(r['cpu_seconds'] for r in runs), 1)
    losses = summarize(runs, 'final_train_loss')
    rates = rates_needed(runs, nets, batch_sizes)
    budget_path = out_dir / f'{name}_budget.json'
    budget = json.loads(budget_path.read_text()) if budget_path.is_file() else None
    result = dict(setup=setup, table={k: {str(b): v for b, v in per.items()} for k, per in table.items()},
                  final_train_loss={k: {str(b): v for b, v in per.items()} for k, per in losses.items()},
                  rates_needed=rates, cpu_seconds=seconds,
                  wall_seconds_this_invocation=round(time.perf_counter() - started, 1))
    write_text_atomic(out_dir / f'{name}.json', json.dumps(result, indent=1) + '\n')
    title = (f'digits, {epochs} epochs at every batch size, lr = {base_lr:g}·B/{BASE_BATCH}; mean over '
             f'{len(seeds)} seeds, min-max shaded')
    write_text_atomic(out_dir / f'{name}.md', _markdown(table, losses, rates, budget, setup, seconds, name))
    plot(table, str(out_dir / f'{name}.png'), title, rates)
    log(markdown_table(table))
    log(f'wrote {out_dir}/{name}.json, .md, .png and {name}_runs.csv ({seconds} CPU seconds of training)')
    return result


def rates_needed(runs: Sequence[Dict], nets: Sequence[str], batch_sizes: Sequence[int]) -> List[Dict]:
    """Each (net, batch) trained below the linear rule: every rate tried there, with its top-1 and divergences."""
    out = []
    for kind in nets:
        for batch in batch_sizes:
            factors = sorted({r['lr_factor'] for r in runs if r['net'] == kind and r['batch'] == batch}, reverse=True)
            if factors[1:]:
                tried = []
                for factor in factors:
                    at = [r for r in runs if r['net'] == kind and r['batch'] == batch and r['lr_factor'] == factor]
                    tried.append(dict(lr=at[0]['lr'], lr_factor=factor, trains=_trains(runs, kind, batch, factor),
                                      top1=round(statistics.fmean(r['top1'] for r in at), 2),
                                      std=round(statistics.stdev(r['top1'] for r in at), 2) if len(at) > 1 else 0.0,
                                      diverged=sum(not r['finite'] for r in at), n=len(at)))
                out.append(dict(net=kind, batch=batch, tried=tried))
    return out


def _failures(table: Dict[str, Dict[int, Dict]], below: float = 50.0) -> str:
    """Which nets fell below `below` % top-1, and at which batch sizes, in words."""
    parts = []
    for kind, per in table.items():
        low = [b for b in sorted(per) if per[b]['mean'] < below]
        if low:
            where = 'every batch size' if len(low) == len(per) else 'batch ' + ', '.join(map(str, low))
            parts.append(f'{NETS[kind]} at {where}')
    return f'Below {below:g} % top-1: ' + ('; '.join(parts) if parts else 'none') + '.'


def last_third_fall(budget: Dict) -> Dict[int, float]:
    """budget in epochs → how much the probe's training loss fell over the last third of that run (mean over seeds)."""
    falls = {}
    for epochs in map(int, budget['mean_final_train_loss']):
        curves = [r['train_loss'] for r in budget['runs'] if r['epochs'] == epochs]
        falls[epochs] = statistics.fmean(c[len(c) - 1 - len(c) // 3] - c[-1] for c in curves)
    return falls


def stopped_falling(budget: Dict) -> Optional[int]:
    """The shortest probed budget over whose last third the loss fell by less than PLATEAU (None if none did)."""
    return next((e for e, fall in sorted(last_third_fall(budget).items()) if fall < PLATEAU), None)


def budget_findings(budget: Dict) -> str:
    """A probe's figures, for a sentence: its seeds, each budget's last-epoch loss, fall and top-1, and the shortest
    budget at which the loss stopped falling (also quoted by validate/private.py)."""
    falls = last_third_fall(budget)
    by_budget = '; '.join(f'{e} epochs: {loss:.3f}, fell {falls[int(e)]:.3f} over the last third, top-1 '
                          f'{budget["mean_top1"][e]:.1f} %' for e, loss in budget['mean_final_train_loss'].items())
    chosen = stopped_falling(budget)
    verdict = (f'the shortest budget over whose last third it fell by less than {PLATEAU:g} is {chosen} epochs'
               if chosen else f'in none of them did it fall by less than {PLATEAU:g} over the last third')
    seeds = f'seed{"s" if len(budget["seeds"]) > 1 else ""} {", ".join(map(str, budget["seeds"]))}'
    return f'(`--probe-epochs`, {seeds}): {by_budget}; {verdict}'


def _budget_text(budget: Optional[Dict], epochs: int) -> str:
    """Why the study trains for `epochs`: the paper-exact NF-ResNet's training loss at batch 64 by budget."""
    if not budget:
        return ''
    return (f'The budget: {epochs} epochs for every net and batch, chosen at the reference batch '
            f'{budget["batch"]} (lr {budget["base_lr"]:g}, {budget["warmup_epochs"]} warm-up epochs) so that the '
            f'paper-exact NF-ResNet\'s training loss has stopped falling. Its last-epoch training loss by budget '
            f'{budget_findings(budget)}.')


def _rates_text(rates: Sequence[Dict]) -> List[str]:
    """One line per (net, batch) that did not train at the linearly scaled rate: every rate tried and its result."""
    lines = []
    for entry in rates:
        tried = '; '.join(
            f'lr {t["lr"]:g}{" (linear rule)" if t["lr_factor"] == 1.0 else ""}: {t["top1"]:.1f} ± {t["std"]:.1f} %'
            + (f', {t["diverged"]} of {t["n"]} diverged' if t['diverged'] else '')
            + (' (trains)' if t['trains'] else '') for t in entry['tried'])
        lines.append(f'- {NETS[entry["net"]]} at batch {entry["batch"]}: {tried}.')
    return lines


def _markdown(table: Dict, losses: Dict, rates: Sequence[Dict], budget: Optional[Dict], setup: Dict, seconds: float,
              name: str) -> str:
    warmup = setup['warmup_epochs']
    budget_line = _budget_text(budget, setup['epochs'])
    rate_lines = _rates_text(rates)
    return '\n'.join([
        '<!-- generated by `python -m validate batch-size`; numbers from validate/results/'
        f'{name}.json and {name}_runs.csv -->',
        f'![top-1 against batch size]({name}.png)',
        '',
        f'Validation top-1 (%) on scikit-learn\'s digits (1,437 train / 360 validation images at '
        f'{setup["img_size"]} px), mean ± standard deviation over seeds {", ".join(map(str, setup["seeds"]))}; '
        f'{setup["epochs"]} epochs at every batch size, {setup["lr_rule"]}, SGD Nesterov with {warmup} warm-up '
        f'epoch{"s" if warmup != 1 else ""} and cosine decay; BatchNorm evaluated with its running statistics. '
        f'Bottleneck ResNets of one shape (depths '
        f'{"-".join(map(str, setup["depths"]))}, widths {"-".join(map(str, setup["widths"]))}); GroupNorm with '
        f'{setup["gn_groups"]} groups. {seconds / 60:.0f} CPU minutes of training, '
        f'{"one thread" if setup["threads"] == 1 else str(setup["threads"]) + " threads"} ({setup["machine"]}). '
        f'Input pixels that reach the '
        f'logits at initialisation (non-zero gradient), of {setup["img_size"] ** 2}: '
        + ', '.join(f'{NETS[k]} {n}' for k, n in setup['pixels_reaching_logits_at_init'].items()) + '.',
        '',
        *([budget_line, ''] if budget_line else []),
        markdown_table(table),
        '',
        _failures(table),
        '',
        *([f'At and above the reference batch, a net that does not train at the linear rule\'s rate (a diverged '
           f'seed, or mean top-1 more than {SHORTFALL:g} points below that of its seeds that did not diverge at batch '
           f'{BASE_BATCH}) is trained again at half the rate, then a quarter, until it does; the table above keeps '
           'the linear rule\'s result:', '', *rate_lines, ''] if rate_lines else []),
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
    p.add_argument('--epochs', type=whole_number(1, 1000), default=30)
    p.add_argument('--base-lr', type=positive_float, default=0.05, help='learning rate at batch 64 (default 0.05)')
    p.add_argument('--weight-decay', type=non_negative_float, default=5e-5)
    p.add_argument('--img-size', type=whole_number(1, digits.MAX_IMG_SIZE), default=32)
    p.add_argument('--warmup-epochs', type=whole_number(0, 1000), default=2)
    p.add_argument('--resume', action='store_true', help='keep the runs already in <name>_runs.csv')
    p.add_argument('--probe-epochs', nargs='+', type=whole_number(1, 1000), metavar='EPOCHS',
                   help='instead of the study: train the paper-exact NF-ResNet at batch 64 for each of these budgets '
                        'and write <name>_budget.json (the study quotes it to say why its budget is what it is)')


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
    if not args.out_dir.is_dir():
        raise UsageError(f'--out-dir {args.out_dir} is not an existing folder')
    shortest = min(args.probe_epochs or [args.epochs])
    if args.warmup_epochs >= shortest:
        which = 'every --probe-epochs' if args.probe_epochs else '--epochs'
        raise UsageError(f'--warmup-epochs must be fewer than {which} ({shortest}), got {args.warmup_epochs}')
    for suffix in ('_runs.csv', '.json', '.md', '.png', '_budget.json'):
        check_output_file(str(args.out_dir / f'{args.name}{suffix}'), '--out-dir/--name')
    for kind in args.nets:
        check_training_fits(lambda: build_net(kind, 0), (max(args.batch_sizes), 3, args.img_size, args.img_size),
                            f'training {kind} at batch {max(args.batch_sizes)}, --img-size {args.img_size}',
                            'lower --batch-sizes or --img-size')


def _run(args: argparse.Namespace) -> int:
    _check(args)
    if args.probe_epochs:
        budget_probe(args.out_dir, args.name, sorted(set(args.probe_epochs)), args.seeds, args.base_lr,
                     args.warmup_epochs, args.weight_decay, args.img_size)
        return 0
    run(args.out_dir, args.name, args.nets, sorted(args.batch_sizes), args.seeds, args.epochs, args.base_lr,
        args.weight_decay, args.img_size, resume=args.resume, warmup_epochs=args.warmup_epochs)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, __doc__.split('\n')[0], add_arguments, _run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
