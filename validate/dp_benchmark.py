"""What a DP-SGD step costs under Opacus: our NF nets against a GroupNorm + WS ResNet of the same shape.

    python -m validate dp-benchmark [--models dm_nf_resnet50,nf_resnet50] [--modes hooks,functorch,ghost,ew]
                                    [--batch 8] [--size 32] [--rounds 7] [--threads 1] [--device cpu]
                                    [--depths D,D,D,D] [--no-memory] [--out PATH]

Per model, in one process: a plain training step (forward, cross-entropy, backward, SGD step: validate/op_count.py's)
and, for each Opacus grad_sample_mode, a DP step of the standard code (PrivacyEngine().make_private with noise 1.0,
clipping to norm 1.0, no Poisson sampling so that every step sees the same batch: forward, backward, the DP
optimizer's clip, noise and step). Every row has its own copy of the same starting weights; rounds go over every
row in turn and each figure is the median over the rounds after one warm-up round, in CPU time of this process
(time.process_time, which other processes on a shared machine disturb least) and wall time (synchronised on a GPU).
The cost of DP is the DP step divided by the plain step of the same model; the target is a ratio at or below the
peer's in the same mode: timm's resnetv2_50 with BiT's layers (StdConv2d, GroupNorm with 32 groups, activations out
of place, as Opacus's hooks need), the shape of nf_resnet50 and dm_nf_resnet50.
Memory (--no-memory skips it): per model, ghost mode against hooks mode, each in a fresh process doing three DP
steps: on the CPU the growth of its peak resident memory over what it held before the first step (Linux's VmHWM,
reset at that point), on a GPU torch.cuda.max_memory_allocated.
Writes validate/results/dp_benchmark_<device>_<time>.json (CPU or card, versions, settings, load, the table, targets).
"""
import argparse
import copy
import datetime
import importlib.util
import json
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from functools import partial
from typing import Callable, Dict, List, Optional

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import timm_nf
from timm_nf._atomic import write_text_atomic
from timm_nf._arguments import first_line
from timm_nf._command_line import UsageError, batch_size, check_output_file, command_main, image_size, whole_number
from timm_nf._memory import check_fits, training_bytes
from validate.benchmark import stage_depths
from validate.machine import cpu_name
from validate.op_count import sgd, train_step
from validate.reference_nets import gn_ws_resnet

PEER = 'gn_ws_resnet50'
PEER_TEXT = "GroupNorm + WS ResNet-50 (timm's resnetv2_50, BiT layers)"
MODES = ('hooks', 'functorch', 'ghost', 'ew')
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
CLASSES = 10


def build(name: str, depths: Optional[tuple] = None) -> nn.Module:
    torch.manual_seed(0)
    if name == PEER:
        return gn_ws_resnet(32, num_classes=CLASSES, **(dict(layers=list(depths)) if depths else {}))
    return timm.create_model(name, num_classes=CLASSES, **(dict(depths=depths) if depths else {}))


def _private(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str):
    """Opacus's standard objects for `model`: (module, optimizer, criterion)."""
    from opacus import PrivacyEngine
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out = PrivacyEngine().make_private(
            module=model, optimizer=sgd(model), data_loader=DataLoader(TensorDataset(x, y), batch_size=len(y)),
            noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode=mode, poisson_sampling=False)
    return out[:3] if mode == 'ghost' else (out[0], out[1], nn.CrossEntropyLoss())


def _dp_step(module: nn.Module, optimizer, criterion, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    criterion(module(x), y).backward()
    optimizer.step()


def _steps(name: str, modes: List[str], x: torch.Tensor, y: torch.Tensor,
           depths: Optional[tuple]) -> Dict[str, Callable[[], None]]:
    """'plain' and each mode → one training step of its own copy of the model; a mode Opacus cannot run → the
    first line of its error instead."""
    base = build(name, depths).to(x.device).train()
    plain = copy.deepcopy(base)
    optimizer = sgd(plain)
    steps = {'plain': lambda: train_step(plain, optimizer, x, y)}
    for mode in modes:
        try:
            dp = _private(copy.deepcopy(base), x, y, mode)
            step = partial(_dp_step, *dp, x, y)
            step()  # a mode fails at the first step, if at all
        except Exception as e:  # noqa: BLE001  (what Opacus or torch raises is the result reported)
            steps[mode] = f'{type(e).__name__}: {first_line(e)[:160]}'
            continue
        steps[mode] = step
    return steps


def _clock(fn: Callable[[], None], device: torch.device):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.process_time() - cpu, time.perf_counter() - wall


def _peak_memory(name: str, mode: str, batch: int, size: int, device: str, threads: int,
                 depths: Optional[tuple]) -> int:
    """Bytes a fresh process's peak grows by over three DP steps (run in a spawned process)."""
    torch.set_num_threads(threads)
    warnings.filterwarnings('ignore', message='Full backward hook is firing')
    dev = torch.device(device)
    x, y = torch.randn(batch, 3, size, size, device=dev), torch.randint(0, CLASSES, (batch,), device=dev)
    module, optimizer, criterion = _private(build(name, depths).to(dev).train(), x, y, mode)
    if dev.type == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _resident_bytes('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak (VmHWM) to the current size: only the steps' growth counts
    for _ in range(3):
        _dp_step(module, optimizer, criterion, x, y)
    if dev.type == 'cuda':
        return torch.cuda.max_memory_allocated() - before
    return _resident_bytes('VmHWM') - before


def peak_memory_in_fresh_process(*args) -> int:
    """`_peak_memory(*args)` in a spawned interpreter: nothing this process allocated or freed counts."""
    with multiprocessing.get_context('spawn').Pool(1) as pool:
        return pool.apply(_peak_memory, args)


def _resident_bytes(field: str) -> int:
    """A resident-memory figure of this process from /proc/self/status (Linux): VmRSS now, VmHWM its peak."""
    with open('/proc/self/status') as f:
        line = next(line for line in f if line.startswith(field + ':'))
    return int(line.split()[1]) * 1024


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class, p.epilog = argparse.RawDescriptionHelpFormatter, __doc__
    p.add_argument('--models', default='dm_nf_resnet50,nf_resnet50',
                   help='comma-separated timm-nf model names; the GroupNorm+WS peer is always added')
    p.add_argument('--modes', default=','.join(MODES), help=f'comma-separated subset of {",".join(MODES)}')
    p.add_argument('--batch', type=batch_size, default=8)
    p.add_argument('--size', type=image_size, default=32, help='image size in px (default 32)')
    p.add_argument('--rounds', type=whole_number(1, 1000), default=7, help='timed rounds after one warm-up round')
    p.add_argument('--threads', type=whole_number(1, 1024), default=1, help='CPU threads for torch (default 1)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--depths', type=stage_depths, default=None, help='blocks per stage for every model (quick checks)')
    p.add_argument('--no-memory', action='store_true', help='skip the ghost-against-hooks memory probes')
    p.add_argument('--out', default=None, help='results JSON (default validate/results/dp_benchmark_<device>_<time>'
                                               '.json)')


def _check(args: argparse.Namespace) -> None:
    if importlib.util.find_spec('opacus') is None:
        raise UsageError('the DP benchmark needs opacus: expected it installed (pip install "timm-nf[dp]")')
    args.models = [m for m in args.models.split(',') if m]
    unknown = [m for m in args.models if m not in timm_nf.MODEL_CONFIGS]
    if unknown or not args.models:
        raise UsageError(f'--models {",".join(unknown) or "(none)"}: expected timm-nf model names such as '
                         f'dm_nf_resnet50,nf_resnet50 (`timm-nf list` shows them)')
    args.modes = [m for m in args.modes.split(',') if m]
    if not args.modes or any(m not in MODES for m in args.modes):
        raise UsageError(f'--modes {",".join(args.modes)}: expected a comma-separated subset of {",".join(MODES)}')
    if args.size < 32:
        raise UsageError(f'--size must be at least 32 (the nets downsample 32x), got {args.size}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise UsageError('--device cuda asks for a GPU, but torch sees no CUDA device: expected a machine with one, '
                         'or --device cpu')
    args.out = check_output_file(args.out, '--out', ('.json',)) if args.out else None
    _check_memory(args)


def _check_memory(args: argparse.Namespace) -> None:
    """A DP step of each model must fit: a training step plus one gradient per example (hooks mode keeps them all)."""
    available = torch.cuda.mem_get_info(args.device)[0] if args.device == 'cuda' else None
    for name in args.models + [PEER]:
        with torch.device('meta'):
            model = build(name, args.depths).train()
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        check_fits(training_bytes(model, (args.batch, 3, args.size, args.size)) + args.batch * params,
                   f'a DP step of {name} at batch {args.batch}, {args.size} px', 'lower --batch or --size', available)


def _fmt(value: Optional[float], spec: str = '.2f') -> str:
    return '-' if value is None else format(value, spec)


def _run(args: argparse.Namespace) -> int:
    _check(args)
    # torch warns at every step that the stem conv's input needs no gradient (so its backward hook fires on the output)
    warnings.filterwarnings('ignore', message='Full backward hook is firing')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started, load_before = time.time(), os.getloadavg()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, CLASSES, (args.batch,), device=device)
    names = args.models + [PEER]
    rows = {name: _steps(name, args.modes, x, y, args.depths) for name in names}
    times = {(name, kind): [] for name, steps in rows.items() for kind, step in steps.items() if callable(step)}
    for round_idx in range(1 + args.rounds):
        for (name, kind) in times:
            cpu_wall = _clock(rows[name][kind], device)
            if round_idx:
                times[name, kind].append(cpu_wall)
        print(f'round {round_idx + 1}/{1 + args.rounds} done ({time.time() - started:.0f} s)', flush=True)

    def median(name, kind, which):
        values = times.get((name, kind))
        return statistics.median(v[which] for v in values) if values else None

    table = []
    for name in names:
        for kind in ['plain'] + args.modes:
            cpu, wall = median(name, kind, 0), median(name, kind, 1)
            entry = dict(model=name, step=kind, cpu_s=cpu, wall_s=wall,
                         error=rows[name][kind] if isinstance(rows[name][kind], str) else None)
            if kind != 'plain' and cpu is not None:
                entry['cpu_ratio'] = cpu / median(name, 'plain', 0)
                entry['wall_ratio'] = wall / median(name, 'plain', 1)
            table.append(entry)
    memory = {}
    if not args.no_memory:
        for name in names:
            for mode in ('hooks', 'ghost'):
                memory[f'{name} {mode}'] = peak_memory_in_fresh_process(
                    name, mode, args.batch, args.size, args.device, args.threads, args.depths)
    # met: at or below the peer's ratio; None where the peer cannot run the mode; a mode our net fails is not met
    targets = []
    for e in table:
        if e['model'] == PEER or e['step'] == 'plain':
            continue
        peer = next((p for p in table if p['model'] == PEER and p['step'] == e['step']), None)
        limit = peer.get('cpu_ratio') if peer else None
        ratio = e.get('cpu_ratio')
        targets.append(dict(model=e['model'], mode=e['step'], ratio=None if ratio is None else round(ratio, 2),
                            peer_ratio=None if limit is None else round(limit, 2),
                            met=False if ratio is None else None if limit is None else ratio <= limit))
    load_after = os.getloadavg()

    machine = torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name() or 'CPU'
    print(f'\n{machine} ({args.threads} threads), torch {torch.__version__}, timm {timm.__version__}, '
          f'timm_nf {timm_nf.__version__}; batch {args.batch} at {args.size} px, fp32; median of {args.rounds} '
          f'rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after')
    print(f"{'model':<18}{'step':<11}{'CPU s':>8}{'DP/plain':>10}{'wall s':>8}{'DP/plain':>10}")
    for e in table:
        if e['error']:
            print(f"{e['model']:<18}{e['step']:<11}fails: {e['error']}")
            continue
        print(f"{e['model']:<18}{e['step']:<11}{_fmt(e['cpu_s'], '.3f'):>8}{_fmt(e.get('cpu_ratio')):>10}"
              f"{_fmt(e['wall_s'], '.3f'):>8}{_fmt(e.get('wall_ratio')):>10}")
    for key, value in memory.items():
        print(f'peak memory growth {key}: {value / 2 ** 20:.0f} MiB ({value / 2 ** 30:.2f} GiB)')
    for t in targets:
        verdict = {True: 'met', False: 'NOT met', None: 'no peer to compare (the peer fails)'}[t['met']]
        print(f"target {t['model']} {t['mode']}: DP/plain {_fmt(t['ratio'])} <= peer's {_fmt(t['peer_ratio'])} -> "
              f"{verdict}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    out = args.out or os.path.join(RESULTS_DIR, f'dp_benchmark_{device.type}_{stamp}.json')
    import opacus
    result = dict(
        date=stamp, machine=dict(processor=machine, platform=platform.platform(), cpu_count=os.cpu_count(),
                                 torch_threads=torch.get_num_threads()),
        versions=dict(torch=torch.__version__, timm=timm.__version__, timm_nf=timm_nf.__version__,
                      opacus=opacus.__version__, python=platform.python_version()),
        settings=dict(batch=args.batch, size=args.size, rounds=args.rounds, modes=args.modes, device=args.device,
                      depths=args.depths,
                      peer=PEER_TEXT, noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False,
                      memory=('torch.cuda.max_memory_allocated growth over 3 DP steps' if device.type == 'cuda' else
                              'peak resident memory growth over 3 DP steps in a fresh process')),
        load_average=dict(before=load_before, after=load_after), seconds=round(time.time() - started),
        table=table, memory_bytes=memory, targets=targets)
    write_text_atomic(out, json.dumps(result, indent=1))
    print(f'wrote {out}')
    return 1 if any(t['ratio'] is None for t in targets) else 0  # a mode our own net fails is a bug


def main(argv: Optional[List[str]] = None) -> int:
    return command_main('python -m validate dp-benchmark', __doc__.split('\n')[0], _add_arguments, _run, argv)
