"""Differentially private training on real data: DP-SGD with Opacus on scikit-learn's digits, NF against GroupNorm+WS.

    python -m validate private [--epsilons 1 3 8] [--seeds 0 1 2] [--epochs 30] [--warmup-epochs 2]
                               [--batch-size 64] [--lr LR] [--plain-lr 0.025] [--out-dir validate/results]
                               [--name private] [--resume]
    python -m validate private --probe-epochs 10 20 30 40 [--seeds 0]    # why the budget is 30 epochs

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

The budget is one for every net and ε: 30 epochs at batch 64 with 2 warm-up epochs, the batch-size study's; the
paper-exact net's non-private training loss must have stopped falling by then (--probe-epochs writes the evidence,
<name>_budget.json, which the table quotes: at lr 0.025 it stops falling by 20 epochs).
Private runs: Opacus's PrivacyEngine.make_private_with_epsilon (hooks mode, Poisson sampling at rate batch/1437,
PRV accountant) picks the noise multiplier that spends exactly (ε, δ = 1e-5) over the epochs; per-example gradients
clipped to norm 1; SGD with momentum 0.9 at --lr, cosine decay per step. Non-private runs: the same nets, epochs,
batch and schedule without clipping or noise, at --plain-lr (timm's NF-ResNet diverges at batch 64 and lr 0.05, as in
the batch-size study). Both rates come from a pilot on seed 0 (README, "Private training on real data").
Top-1 on the 360 validation images after the last epoch.
Outputs in --out-dir: <name>_runs.csv (one row per run, written after each; --resume keeps the runs it holds with the
same settings), <name>.json, <name>.md (the table for README) and <name>.png (top-1 against ε, min-max over seeds).
About 46 CPU minutes for the whole grid on one thread: run it with OMP_NUM_THREADS=1 (see validate/digits.py).
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
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.data import create_dataset, create_transform
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import (UsageError, check_output_file, command_main, positive_float, random_seed,
                                   real_number, whole_number)

from . import batch_size, digits
from .batch_size import GN_GROUPS, budget_findings, probe_budgets, stopped_falling
from .machine import cpu_name
from .study_output import finish_and_save, runs_csv

RESULTS_DIR = digits.RESULTS_DIR
NETS = {
    'nf': 'NF-ResNet (paper-exact)',
    'nf_timm': "NF-ResNet (timm's)",
    'gn_ws': 'GroupNorm + WS (BiT layers)',
}
EPSILONS = (1.0, 3.0, 8.0)
EPSILON_RANGE = (0.01, 100.0)  # Opacus's noise search (sigma up to 1e6) reaches either end at any --epochs/--batch-size
DELTA = 1e-5
MAX_GRAD_NORM = 1.0
# the budget (README, "Private training on real data"): the pilot's choice, see budget_probe
EPOCHS, WARMUP_EPOCHS, BATCH = 30, 2, 64
LR, PLAIN_LR = 0.1, 0.025
RUN_FIELDS = ('net', 'epsilon', 'seed', 'epochs', 'warmup_epochs', 'batch', 'lr', 'noise_multiplier', 'spent_epsilon',
              'top1', 'final_train_loss', 'cpu_seconds')
BATCH_NORM_LINE = ('BatchNorm cannot take part: it normalises each example with the statistics of the whole batch, '
                   'so no example has a gradient of its own to clip (Opacus rejects it: {error})')


def build_net(kind: str, seed: int) -> nn.Module:
    """The batch-size study's nets, but timm's NF-ResNet as timm-nf builds it (timm's own applies an in-place
    activation to a conv's output, which Opacus's hooks refuse)."""
    if kind not in NETS:
        raise ValueError(f'unknown net {kind!r}: expected one of {", ".join(NETS)}')
    if kind == 'nf_timm':
        torch.manual_seed(seed)
        return timm.create_model('nf_resnet50', num_classes=digits.NUM_CLASSES, depths=digits.DEPTHS,
                                 widths=digits.WIDTHS, stem_width=digits.STEM_WIDTH)
    return batch_size.build_net(kind, seed)


def batch_norm_line() -> str:
    """Why BatchNorm is left out, with Opacus's own answer when asked to make digits' BatchNorm net private."""
    from opacus import PrivacyEngine
    model = digits.build_net('bn_resnet')
    data = DataLoader(TensorDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)), batch_size=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            PrivacyEngine().make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                         data_loader=data, noise_multiplier=1.0, max_grad_norm=1.0)
    except Exception as e:  # noqa: BLE001  (whatever Opacus raises is the answer quoted)
        answer = ' '.join(str(e).split('(')[1 if str(e).startswith('[') else 0].split())
        answer = answer.strip('[]"\' ').rstrip('.')
        return BATCH_NORM_LINE.format(error=f'{type(e).__name__}: "{answer}"')
    return BATCH_NORM_LINE.format(error='no error, unexpectedly')


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
              epochs: int, batch: int, lr: float, warmup_epochs: int) -> Dict:
    """One run; `epsilon` None: non-private. The seed fixes the initial weights, the sampling and the noise.

    The row also holds the mean training loss of every epoch (`train_loss`, not written to the runs file)."""
    with warnings.catch_warnings():  # Opacus on its insecure RNG (fine here), torch on the stem's backward hook
        warnings.simplefilter('ignore', UserWarning)
        return _train_one(train, val, kind, epsilon, seed, epochs, batch, lr, warmup_epochs)


def _train_one(train: TensorDataset, val: TensorDataset, kind: str, epsilon: Optional[float], seed: int,
               epochs: int, batch: int, lr: float, warmup_epochs: int) -> Dict:
    from opacus import PrivacyEngine

    model = build_net(kind, seed).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch, shuffle=True, generator=generator)
    cpu = time.process_time()
    noise = spent = None
    if epsilon is not None:
        engine = PrivacyEngine(accountant='prv')
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon, target_delta=DELTA,
            epochs=epochs, max_grad_norm=MAX_GRAD_NORM, noise_generator=generator)
        noise = optimizer.noise_multiplier
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=epochs, warmup_epochs=warmup_epochs,
                                       warmup_lr=lr * 0.01, min_lr=0.0, step_on_epochs=False,
                                       updates_per_epoch=len(loader))
    epoch_losses, updates = [], 0
    for _ in range(epochs):
        model.train()
        losses = []
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(updates)
            losses.append(loss.item())
        epoch_losses.append(round(statistics.fmean(losses), 4))
    if epsilon is not None:
        spent = engine.get_epsilon(DELTA)
        model = model._module
    return dict(net=kind, epsilon=epsilon if epsilon is not None else math.inf, seed=seed, epochs=epochs,
                warmup_epochs=warmup_epochs, batch=batch, lr=lr,
                noise_multiplier=round(noise, 4) if noise is not None else 0.0,
                spent_epsilon=round(spent, 3) if spent is not None else math.inf, top1=round(evaluate(model, val), 2),
                final_train_loss=epoch_losses[-1], cpu_seconds=round(time.process_time() - cpu, 1),
                train_loss=epoch_losses)


def _key(run: Dict) -> Tuple[str, float, int]:
    return run['net'], float(run['epsilon']), int(run['seed'])


def _read_runs(path: Path, epochs: int, warmup_epochs: int, batch: int, lr: float, plain_lr: float) -> List[Dict]:
    """The runs of an earlier, interrupted invocation with the same epochs, warm-up, batch and learning rates."""
    if not path.is_file():
        return []
    runs = []
    for row in csv.DictReader(path.open()):
        if 'warmup_epochs' not in row:  # written before the warm-up was an option: another budget
            continue
        run = dict(row)
        for field in ('epsilon', 'lr', 'noise_multiplier', 'spent_epsilon', 'top1', 'final_train_loss',
                      'cpu_seconds'):
            run[field] = float(row[field])
        for field in ('seed', 'epochs', 'warmup_epochs', 'batch'):
            run[field] = int(row[field])
        wanted_lr = plain_lr if math.isinf(run['epsilon']) else lr
        if (run['epochs'], run['warmup_epochs'], run['batch']) == (epochs, warmup_epochs, batch) and math.isclose(
                run['lr'], wanted_lr):
            runs.append(run)
    return runs


def summarize(runs: Sequence[Dict]) -> Dict[str, Dict[float, Dict]]:
    """net → ε (inf: non-private) → {mean, std (sample, over seeds), min, max, n} of top-1."""
    table: Dict[str, Dict[float, Dict]] = {}
    for kind in NETS:
        for epsilon in sorted({r['epsilon'] for r in runs if r['net'] == kind}):
            values = [r['top1'] for r in runs if r['net'] == kind and r['epsilon'] == epsilon]
            table.setdefault(kind, {})[epsilon] = dict(
                mean=round(statistics.fmean(values), 2),
                std=round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), n=len(values))
    return table


def _column(epsilon: float) -> str:
    return 'non-private' if math.isinf(epsilon) else f'ε = {epsilon:g}'


def markdown_table(table: Dict[str, Dict[float, Dict]]) -> str:
    epsilons = sorted({e for per in table.values() for e in per})
    lines = ['| net | ' + ' | '.join(_column(e) for e in epsilons) + ' |', '|---|' + '---|' * len(epsilons)]
    for kind, per in table.items():
        cells = ['-' if e not in per else f'{per[e]["mean"]:.1f} ± {per[e]["std"]:.1f}' for e in epsilons]
        lines.append(f'| {NETS[kind]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(table: Dict[str, Dict[float, Dict]], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for i, (kind, per) in enumerate(table.items()):
        private = sorted(e for e in per if math.isfinite(e))
        ax.plot(private, [per[e]['mean'] for e in private], marker='o', color=f'C{i}', label=NETS[kind])
        ax.fill_between(private, [per[e]['min'] for e in private], [per[e]['max'] for e in private], color=f'C{i}',
                        alpha=0.2, lw=0)
        if math.inf in per:
            ax.axhline(per[math.inf]['mean'], color=f'C{i}', ls='--', lw=1)
    ax.set_xscale('log')
    ax.set_xticks(sorted({e for per in table.values() for e in per if math.isfinite(e)}))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    finish_and_save(fig, ax, path, title, 'privacy budget ε (δ = 1e-5); dashed: non-private')


def _plain_losses(runs: Sequence[Dict]) -> str:
    """Each net's last-epoch training loss without privacy, mean over seeds: that every net trained."""
    per_net = {k: [r['final_train_loss'] for r in runs if r['net'] == k and math.isinf(r['epsilon'])] for k in NETS}
    return ', '.join(f'{NETS[k]} {statistics.fmean(v):.3f}' for k, v in per_net.items() if v)


def _markdown(table: Dict, setup: Dict, runs: Sequence[Dict], name: str, budget: Optional[Dict]) -> str:
    warmup = setup['warmup_epochs']
    budget_line = _budget_text(budget, setup)
    noise = {e: sorted({r['noise_multiplier'] for r in runs if r['epsilon'] == e}) for e in setup['epsilons']}
    spent = max((r['spent_epsilon'] / r['epsilon'] for r in runs if math.isfinite(r['epsilon'])), default=1.0)
    minutes = sum(r['cpu_seconds'] for r in runs) / 60
    return '\n'.join([
        '<!-- generated by `python -m validate private`; numbers from validate/results/'
        f'{name}.json and {name}_runs.csv -->',
        f'![top-1 against the privacy budget]({name}.png)',
        '',
        f'Validation top-1 (%) on scikit-learn\'s digits (1,437 train / 360 validation images at '
        f'{setup["img_size"]} px), mean ± standard deviation over seeds {", ".join(map(str, setup["seeds"]))}. '
        f'DP-SGD with Opacus {setup["opacus"]} (hooks mode, Poisson sampling of {setup["batch"]} expected examples '
        f'per step, per-example gradients clipped to norm {MAX_GRAD_NORM:g}, PRV accountant, δ = {DELTA:g}); '
        f'noise multipliers ' + ', '.join(f'{v[0]:.2f} at ε = {e:g}' for e, v in noise.items() if v) + f' '
        f'(spent ε at most {spent:.3f}× the target). {setup["epochs"]} epochs, SGD with momentum 0.9, {warmup} '
        f'warm-up epoch{"s" if warmup != 1 else ""} then cosine decay per step, lr {setup["lr"]:g} private and '
        f'{setup["plain_lr"]:g} non-private (the same nets, epochs and batch without clipping or noise). '
        f'Bottleneck ResNets of one shape (depths {"-".join(map(str, setup["depths"]))}, widths '
        f'{"-".join(map(str, setup["widths"]))}), each with its default stochastic depth; GroupNorm with '
        f'{setup["gn_groups"]} groups. {minutes:.0f} CPU minutes, '
        f'{"one thread" if setup["threads"] == 1 else str(setup["threads"]) + " threads"} ({setup["processor"]}).',
        '',
        *([budget_line, ''] if budget_line else []),
        markdown_table(table),
        '',
        f'Non-private training loss of the last epoch (cross-entropy, mean over seeds; chance is '
        f'{digits.CHANCE_LOSS:.2f}): {_plain_losses(runs)}.',
        '',
        setup['batch_norm'] + '.',
        '',
    ])


def run(out_dir: Path, name: str, nets: Sequence[str], epsilons: Sequence[float], seeds: Sequence[int],
        epochs: int, batch: int, lr: float, plain_lr: float, warmup_epochs: int = WARMUP_EPOCHS, img_size: int = 32,
        resume: bool = False, log=print) -> Dict:
    """Train every (net, ε or non-private, seed), writing the runs as they finish; then table, JSON, markdown and
    figure (which quote <name>_budget.json, the probe's, when it was made at the same batch, rate and warm-up)."""
    import opacus

    runs_path = out_dir / f'{name}_runs.csv'
    runs = _read_runs(runs_path, epochs, warmup_epochs, batch, lr, plain_lr) if resume else []
    grid = [math.inf] + sorted(epsilons)
    done = {_key(r) for r in runs}
    runs = [r for r in runs if r['net'] in nets and r['epsilon'] in grid and r['seed'] in seeds]
    todo = [(kind, eps, seed) for seed in seeds for eps in grid for kind in nets if (kind, eps, seed) not in done]
    started = time.perf_counter()
    if todo:
        train, val = load_tensors(img_size)
        for kind, eps, seed in todo:
            private = math.isfinite(eps)
            row = train_one(train, val, kind, eps if private else None, seed, epochs, batch,
                            lr if private else plain_lr, warmup_epochs)
            runs.append(row)
            write_text_atomic(runs_path, runs_csv(runs, RUN_FIELDS))
            log(f"{_column(eps):<12} {kind:<8} seed {seed}  top-1 {row['top1']:6.2f}  noise "
                f"{row['noise_multiplier']:.3f}  loss {row['final_train_loss']:.3f}  ({row['cpu_seconds']} s CPU)")
    table = summarize(runs)
    setup = dict(epochs=epochs, warmup_epochs=warmup_epochs, batch=batch, lr=lr, plain_lr=plain_lr, img_size=img_size,
                 seeds=list(seeds), epsilons=list(epsilons), delta=DELTA, max_grad_norm=MAX_GRAD_NORM,
                 nets={k: NETS[k] for k in nets}, depths=digits.DEPTHS, widths=digits.WIDTHS,
                 stem_width=digits.STEM_WIDTH, gn_groups=GN_GROUPS,
                 batch_norm=batch_norm_line(), opacus=opacus.__version__, torch=torch.__version__,
                 timm=timm.__version__, threads=torch.get_num_threads(), machine=platform.machine(),
                 processor=cpu_name())
    result = dict(setup=setup, table={k: {_column(e): v for e, v in per.items()} for k, per in table.items()},
                  cpu_seconds=round(sum(r['cpu_seconds'] for r in runs), 1),
                  wall_seconds_this_invocation=round(time.perf_counter() - started, 1))
    write_text_atomic(out_dir / f'{name}.json', json.dumps(result, indent=1) + '\n')
    budget_path = out_dir / f'{name}_budget.json'
    budget = json.loads(budget_path.read_text()) if budget_path.is_file() else None
    write_text_atomic(out_dir / f'{name}.md', _markdown(table, setup, runs, name, budget))
    plot(table, str(out_dir / f'{name}.png'), f'digits, DP-SGD for {epochs} epochs at batch {batch}; mean over '
         f'{len(seeds)} seeds, min-max shaded')
    log(markdown_table(table))
    log(f'wrote {out_dir}/{name}.json, .md, .png and {name}_runs.csv')
    return result


def budget_probe(out_dir: Path, name: str, budgets: Sequence[int], seeds: Sequence[int], batch: int, plain_lr: float,
                 warmup_epochs: int, img_size: int = 32, log=print) -> Dict:
    """The paper-exact NF-ResNet without privacy, at the study's batch and non-private rate, for each budget in epochs:
    its training loss per epoch (<name>_budget.json). The study's budget is the shortest after which it stopped
    falling, so that no net is compared before it has trained (batch_size.stopped_falling)."""
    train, val = load_tensors(img_size)
    return probe_budgets(
        lambda epochs, seed: train_one(train, val, 'nf', None, seed, epochs, batch, plain_lr, warmup_epochs),
        budgets, seeds, out_dir / f'{name}_budget.json', log,
        setup=dict(batch=batch, plain_lr=plain_lr, warmup_epochs=warmup_epochs, img_size=img_size))


def _budget_text(budget: Optional[Dict], setup: Dict) -> str:
    """Why the study trains for its epochs: the paper-exact net's non-private training loss by budget, if probed."""
    if not budget or (budget['batch'], budget['warmup_epochs']) != (setup['batch'], setup['warmup_epochs']) or \
            not math.isclose(budget['plain_lr'], setup['plain_lr']):
        return ''
    chosen = stopped_falling(budget)
    too_few = (f', so this study\'s {setup["epochs"]} epochs are too few for it'
               if chosen is None or chosen > setup['epochs'] else '')
    return (f'The budget: {setup["epochs"]} epochs for every net and ε, no fewer than the paper-exact NF-ResNet needs '
            f'at this batch and rate for its non-private training loss to stop falling. Its last-epoch training loss '
            f'by budget {budget_findings(budget)}{too_few}.')


PROG = 'python -m validate private'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--out-dir', type=Path, default=RESULTS_DIR, help='an existing folder (default validate/results)')
    p.add_argument('--name', default='private', help='file name stem of the outputs (default private)')
    p.add_argument('--nets', nargs='+', choices=tuple(NETS), default=list(NETS))
    p.add_argument('--epsilons', nargs='+', type=real_number(*EPSILON_RANGE), default=list(EPSILONS))
    p.add_argument('--seeds', nargs='+', type=random_seed, default=[0, 1, 2])
    p.add_argument('--epochs', type=whole_number(1, 1000), default=EPOCHS)
    p.add_argument('--warmup-epochs', type=whole_number(0, 1000), default=WARMUP_EPOCHS)
    p.add_argument('--batch-size', type=whole_number(1, digits.TRAIN_IMAGES - 1), default=BATCH,
                   help=f'expected examples per step (default {BATCH})')
    p.add_argument('--lr', type=positive_float, default=LR, help=f'of the private runs (default {LR:g})')
    p.add_argument('--plain-lr', type=positive_float, default=PLAIN_LR,
                   help=f'of the non-private runs (default {PLAIN_LR:g})')
    p.add_argument('--resume', action='store_true', help='keep the runs already in <name>_runs.csv')
    p.add_argument('--probe-epochs', nargs='+', type=whole_number(1, 1000), metavar='EPOCHS',
                   help='instead of the study: train the paper-exact NF-ResNet without privacy (--batch-size, '
                        '--plain-lr, --warmup-epochs) for each of these budgets and write <name>_budget.json (the '
                        'study quotes it to say why its budget is what it is)')


def _check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training: values, and every output file."""
    if not args.name or os.sep in args.name or args.name.startswith('.'):
        raise UsageError(f'--name must be a plain file name stem, got {args.name!r}')
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.epsilons)) != len(args.epsilons):
        raise UsageError('each seed and ε may be given only once')
    if not args.out_dir.is_dir():
        raise UsageError(f'--out-dir {args.out_dir} is not an existing folder')
    shortest = min(args.probe_epochs or [args.epochs])
    if args.warmup_epochs >= shortest:
        which = 'every --probe-epochs' if args.probe_epochs else '--epochs'
        raise UsageError(f'--warmup-epochs must be fewer than {which} ({shortest}), got {args.warmup_epochs}')
    for suffix in ('_runs.csv', '.json', '.md', '.png', '_budget.json'):
        check_output_file(str(args.out_dir / f'{args.name}{suffix}'), '--out-dir/--name')


def _run(args: argparse.Namespace) -> int:
    _check(args)
    if args.probe_epochs:
        budget_probe(args.out_dir, args.name, sorted(set(args.probe_epochs)), args.seeds, args.batch_size,
                     args.plain_lr, args.warmup_epochs)
        return 0
    run(args.out_dir, args.name, args.nets, args.epsilons, args.seeds, args.epochs, args.batch_size, args.lr,
        args.plain_lr, args.warmup_epochs, resume=args.resume)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, __doc__.split('\n')[0], add_arguments, _run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
