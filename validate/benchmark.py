"""Throughput, memory and kernel counts of our NF nets against timm's NormFreeNet and the BatchNorm peers, in one process.

    python -m validate benchmark [--preset gpu] [--device auto|cpu|cuda] [--models nf_resnet50,nf_regnet_b1]
                                 [--rows timm,eager,fused,peers,floor] [--modes infer,train] [--rounds N]

Rows per architecture. Every row gets its own copy of the same starting weights (ours load timm's NormFreeNet
state_dict), so no row trains another's weights:
  timm           timm's NormFreeNet, eager (the reference every ratio is taken against)
  timm-compiled  timm's NormFreeNet under torch.compile
  timm-fused     timm's NormFreeNet after timm_nf.fuse (inference only)
  eager          our model, eager
  fused          our model after timm_nf.fuse (inference only: a fused model is frozen)
  compiled       our model under torch.compile (training), its fused copy under torch.compile (inference)
  peers          the BatchNorm peers: resnet50 and resnetv2_50 beside nf_resnet50, regnety_016 and efficientnet_b1
                 beside nf_regnet_b1
  floor          beside nf_resnet50: timm's resnet50 with its BatchNorm removed (only convs, ReLUs and adds), the
                 speed a fully folded NF-ResNet-50 approaches
Rounds go over every row of every model in turn, so machine noise hits all rows alike; each figure is the median over
the timed rounds after the warm-up rounds (CUDA events on a GPU, perf_counter on the CPU).

CPU mode: training step batch 16 at 128 px, inference batch 8 at 224 px, fp32.
GPU mode: batch 256 at 224 px, bf16 autocast, channels_last. Peak training memory is torch.cuda.max_memory_allocated
over the timed training steps, counted as if the model were alone on the card; on the CPU the table gives instead the
bytes autograd saves for backward in one training step (a deterministic proxy for activation memory).
Kernel columns: kernel-launching ops per eager training step and per eval forward (validate/op_count.py), counted at
batch 2 and 64 px with the run's device, autocast and memory format, and always with the GPU's one-pass weight
standardisation (a CPU run times each conv's own standardisation, the faster one there); compiled rows have none.
`--preset gpu`: nf_resnet50 and nf_regnet_b1 with timm eager and compiled, ours eager, fused and compiled (training),
BatchNorm resnet50 and the floor; sized to finish within 8 minutes on one H100, compilation included.
Writes validate/results/benchmark_<device>_<time>.json (card or CPU, versions, settings, load, the table, targets).
"""
import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import timm
import torch
import torch.nn.functional as F
from timm.models import nfnet as timm_nfnet
from torch import nn

import timm_nf
from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import (UsageError, batch_size, check_output_file, command_main, image_size, whole_number)
from timm_nf._memory import check_fits, check_training_fits, inference_bytes
from timm_nf.models.config import MAX_DEPTH
from timm_nf.fusion import fuse
from timm_nf.layers.ws_group import shared_pass_on
from validate.machine import cpu_name
from validate.op_count import autocast, eval_step_ops, sgd, train_step, train_step_ops

PEERS = {'nf_resnet50': ('resnet50', 'resnetv2_50'), 'nf_regnet_b1': ('regnety_016', 'efficientnet_b1')}
ALL_ROWS = ('timm', 'timm-compiled', 'timm-fused', 'eager', 'fused', 'compiled', 'peers', 'floor')
CPU_ROWS = ('timm', 'eager', 'fused', 'peers', 'floor')
FLOORS = {'nf_resnet50': 'resnet50'}  # the BatchNorm net whose norm layers are removed to make the floor
ARCHS = [name for name in timm_nfnet.model_cfgs if name in timm_nf.MODEL_CONFIGS]  # built by both timm and us
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
PRESETS = {
    'gpu': dict(device='cuda', models=['nf_resnet50', 'nf_regnet_b1'],
                rows=['timm', 'timm-compiled', 'eager', 'fused', 'compiled', 'peers', 'floor'],
                peers={'nf_resnet50': ('resnet50',)}, compiled_infer=False, rounds=5, warmup=2, iters=4),
}
TIMM_ROW = 'timm NormFreeNet'


@dataclass
class Settings:
    device: torch.device
    train_batch: int
    train_size: int
    infer_batch: int
    infer_size: int
    amp_dtype: Optional[torch.dtype]
    channels_last: bool
    iters_per_round: int
    depths: Optional[tuple]
    peers: Dict[str, tuple]
    compiled_infer: bool


@dataclass
class Row:
    arch: str
    name: str
    train_model: Optional[nn.Module]  # None: no training figure (a fused model)
    infer_model: Optional[nn.Module]
    compiled: bool = False
    train_s: List[float] = field(default_factory=list)
    infer_s: List[float] = field(default_factory=list)
    peak_train_bytes: int = 0
    train_ops: Optional[int] = None
    eval_ops: Optional[int] = None
    optimizer: Optional[torch.optim.Optimizer] = None


# ---------------------------------------------------------------------------------------------- building

def _build_rows(arch: str, rows: List[str], cfg: Settings) -> List[Row]:
    torch.manual_seed(0)
    timm_cfg = timm_nfnet.model_cfgs[arch]
    depth_kwargs = {}
    if cfg.depths:
        timm_cfg, depth_kwargs = dataclasses.replace(timm_cfg, depths=cfg.depths), dict(depths=cfg.depths)
    reference = timm_nfnet.NormFreeNet(timm_cfg)
    ours = timm.create_model(arch, **depth_kwargs)
    ours.load_state_dict(reference.state_dict())

    def fresh(model: nn.Module) -> nn.Module:
        model = copy.deepcopy(model).to(cfg.device)
        return model.to(memory_format=torch.channels_last) if cfg.channels_last else model

    def compiled(model: nn.Module, fused_infer: bool) -> Row:
        train = torch.compile(fresh(model))
        infer = None if not cfg.compiled_infer else torch.compile(fuse(fresh(model).eval())) if fused_infer else train
        return Row(arch, '', train, infer, compiled=True)

    out = []
    for row in rows:
        if row == 'timm':
            model = fresh(reference)
            out.append(Row(arch, TIMM_ROW, model, model))
        elif row == 'timm-compiled':
            out.append(dataclasses.replace(compiled(reference, fused_infer=False), name=f'{TIMM_ROW} compiled'))
        elif row == 'timm-fused':
            out.append(Row(arch, f'{TIMM_ROW} fused', None, fuse(fresh(reference).eval())))
        elif row == 'eager':
            model = fresh(ours)
            out.append(Row(arch, 'timm_nf eager', model, model))
        elif row == 'fused':
            out.append(Row(arch, 'timm_nf fused', None, fuse(fresh(ours).eval())))
        elif row == 'compiled':
            name = 'timm_nf compiled' + (' (+fused infer)' if cfg.compiled_infer else '')
            out.append(dataclasses.replace(compiled(ours, fused_infer=True), name=name))
        elif row == 'peers':
            for peer in cfg.peers.get(arch, ()):
                model = fresh(timm.create_model(peer))
                out.append(Row(arch, f'{peer} (BatchNorm)', model, model))
        elif row == 'floor' and arch in FLOORS:
            floor_kwargs = dict(layers=cfg.depths) if cfg.depths else {}
            model = fresh(timm.create_model(FLOORS[arch], norm_layer=nn.Identity, **floor_kwargs))
            out.append(Row(arch, f'{FLOORS[arch]} without BatchNorm (floor)', model, model))
    for row in out:
        if row.train_model is not None:
            row.optimizer = sgd(row.train_model)
    return out


# ----------------------------------------------------------------------------------------------- timing

def _inputs(batch: int, size: int, cfg: Settings):
    x = torch.randn(batch, 3, size, size, device=cfg.device)
    if cfg.channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x, torch.randint(0, 1000, (batch,), device=cfg.device)


def _infer_step(row: Row, x: torch.Tensor, cfg: Settings) -> None:
    with torch.inference_mode(), autocast(cfg.device.type, cfg.amp_dtype):
        row.infer_model(x)


def _time(fn: Callable[[], None], cfg: Settings) -> float:
    """Seconds per iteration over one round of `iters_per_round` iterations."""
    if cfg.device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(cfg.iters_per_round):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0 / cfg.iters_per_round
    start = time.perf_counter()
    for _ in range(cfg.iters_per_round):
        fn()
    return (time.perf_counter() - start) / cfg.iters_per_round


def _state_bytes(row: Row) -> int:
    """Bytes a single-model process holds across steps: parameters and optimizer state (momentum)."""
    params = sum(p.numel() * p.element_size() for p in row.train_model.parameters())
    state = sum(t.numel() * t.element_size() for s in row.optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    return params + state


def _measure_train(row: Row, x, y, cfg: Settings, timed: bool) -> None:
    row.train_model.train()
    gpu = cfg.device.type == 'cuda'
    if gpu:
        row.optimizer.zero_grad(set_to_none=True)  # last round's gradients must not count as already allocated
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    seconds = _time(lambda: train_step(row.train_model, row.optimizer, x, y, cfg.amp_dtype), cfg)
    if timed:
        row.train_s.append(seconds)
        if gpu:  # other rows' weights share the card: this step's growth plus this model's own persistent state
            peak = torch.cuda.max_memory_allocated() - before + _state_bytes(row)
            row.peak_train_bytes = max(row.peak_train_bytes, peak)


def _saved_for_backward_bytes(row: Row, x, y, cfg: Settings) -> int:
    """Bytes autograd keeps for backward in one training forward (each storage counted once)."""
    seen, total = set(), 0

    def pack(t: torch.Tensor):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    row.train_model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(cfg.device.type, cfg.amp_dtype):
        loss = F.cross_entropy(row.train_model(x), y)
    loss.backward()
    row.train_model.zero_grad(set_to_none=True)
    return total


def _count_kernels(row: Row, cfg: Settings) -> None:
    """Kernel-launching ops per step as a GPU runs it (our nets with their shared WS pass, also on a CPU run), on
    copies: the counted training step must not move the row's weights."""
    if row.compiled:
        return
    settings = dict(amp_dtype=cfg.amp_dtype, channels_last=cfg.channels_last)
    with shared_pass_on(cfg.device.type):
        if row.train_model is not None:
            row.train_ops = train_step_ops(copy.deepcopy(row.train_model), **settings).total
        row.eval_ops = eval_step_ops(copy.deepcopy(row.infer_model), **settings).total


# ---------------------------------------------------------------------------------------------- reporting

def _median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _ratio(a, b) -> Optional[float]:
    return a / b if a and b else None


def _table(rows: List[Row], cfg: Settings) -> List[Dict]:
    table = []
    for arch in dict.fromkeys(r.arch for r in rows):
        group = [r for r in rows if r.arch == arch]
        ref = next((r for r in group if r.name == TIMM_ROW), None)
        for r in group:
            train, infer = _median(r.train_s), _median(r.infer_s)
            entry = dict(
                arch=arch, model=r.name,
                train_step_s=train, train_img_s=cfg.train_batch / train if train else None,
                infer_s=infer, infer_img_s=cfg.infer_batch / infer if infer else None,
                train_rounds_s=r.train_s, infer_rounds_s=r.infer_s,
                peak_train_memory_bytes=r.peak_train_bytes or None,
                train_kernels=r.train_ops, eval_kernels=r.eval_ops)
            if ref is not None:
                # time ratios: below 1 is faster than timm's NormFreeNet (speed ratio = 1 / time ratio)
                entry['train_time_vs_timm'] = _ratio(train, _median(ref.train_s))
                entry['infer_time_vs_timm'] = _ratio(infer, _median(ref.infer_s))
                entry['memory_vs_timm'] = _ratio(r.peak_train_bytes, ref.peak_train_bytes)
                entry['train_kernels_vs_timm'] = _ratio(r.train_ops, ref.train_ops)
            table.append(entry)
    return table


def _fmt(value, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def _print_table(table: List[Dict], cfg: Settings) -> None:
    mem_name = 'peak train mem' if cfg.device.type == 'cuda' else 'saved for bwd'
    print(f"{'model':<38}{'train img/s':>12}{'time/timm':>10}{'infer img/s':>12}{'time/timm':>10}"
          f"{mem_name:>16}{'mem/timm':>9}{'kernels train':>14}{'eval':>6}")
    arch = None
    for e in table:
        if e['arch'] != arch:
            arch = e['arch']
            print(f'-- {arch}')
        mem = e['peak_train_memory_bytes']
        print(f"{e['model']:<38}{_fmt(e['train_img_s'], '.1f'):>12}{_fmt(e.get('train_time_vs_timm'), '.2f'):>10}"
              f"{_fmt(e['infer_img_s'], '.1f'):>12}{_fmt(e.get('infer_time_vs_timm'), '.2f'):>10}"
              f"{(format(mem / 2 ** 30, '.2f') + ' GiB') if mem else '-':>16}{_fmt(e.get('memory_vs_timm'), '.2f'):>9}"
              f"{_fmt(e['train_kernels'], 'd'):>14}{_fmt(e['eval_kernels'], 'd'):>6}")


def _find(table: List[Dict], model: str, arch: Optional[str] = None) -> Optional[Dict]:
    return next((e for e in table if e['model'] == model and (arch is None or e['arch'] == arch)), None)


def _targets(table: List[Dict], cfg: Settings) -> List[Dict]:
    """The targets this run's rows can decide, each with its measured value and verdict."""
    checks = []

    def check(arch: str, what: str, row: str, key: str, limit: float, ref_row: Optional[str] = None,
              ref_key: Optional[str] = None, at_most: bool = True, any_arch: bool = False):
        e = _find(table, row, arch)
        ref = _find(table, ref_row, None if any_arch else arch) if ref_row else None
        if e is None or e.get(key) is None or (ref_row and (ref is None or ref.get(ref_key) is None)):
            return
        value = e[key] / ref[ref_key] if ref_row else e[key]
        checks.append(dict(arch=arch, target=what, value=round(value, 3), limit=limit,
                           met=value <= limit if at_most else value >= limit))

    for arch in dict.fromkeys(e['arch'] for e in table):
        check(arch, 'eager training kernels / timm <= 0.7', 'timm_nf eager', 'train_kernels_vs_timm', 0.7)
        check(arch, 'eager eval kernels / our fused <= 1.25', 'timm_nf eager', 'eval_kernels', 1.25,
              'timm_nf fused', 'eval_kernels')
        if cfg.device.type == 'cpu':
            check(arch, 'eager training step time / timm <= 0.98', 'timm_nf eager', 'train_time_vs_timm', 0.98)
            check(arch, 'fused inference time / timm eager <= 0.8', 'timm_nf fused', 'infer_time_vs_timm', 0.8)
            continue
        faster = dict(at_most=False)
        check(arch, 'eager training speed / timm >= 1.5', 'timm_nf eager', 'train_img_s', 1.5,
              TIMM_ROW, 'train_img_s', **faster)
        check(arch, 'fused eager inference speed / timm eager >= 2.0', 'timm_nf fused', 'infer_img_s', 2.0,
              TIMM_ROW, 'infer_img_s', **faster)
        check(arch, 'compiled training speed / timm compiled >= 1.15', 'timm_nf compiled', 'train_img_s', 1.15,
              f'{TIMM_ROW} compiled', 'train_img_s', **faster)
        check(arch, 'peak training memory / BatchNorm resnet50 <= 0.6', 'timm_nf eager', 'peak_train_memory_bytes',
              0.6, 'resnet50 (BatchNorm)', 'peak_train_memory_bytes', any_arch=True)
    return checks


def _device_info(device: torch.device) -> Dict:
    info = dict(platform=platform.platform(), processor=cpu_name(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads())
    if device.type == 'cuda':
        info['card'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info


# -------------------------------------------------------------------------------------------------- main

def _csv(value: str, allowed, what: str) -> List[str]:
    items = [v for v in value.split(',') if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}: expected a comma-separated subset of {list(allowed)}")
    return items


def stage_depths(value: str) -> tuple:
    """An argparse type (--depths, here and in dp_benchmark.py): four block counts, one per stage."""
    try:
        depths = tuple(int(v) for v in value.split(','))
    except ValueError:
        depths = ()
    if len(depths) != 4 or min(depths) < 1 or max(depths) > MAX_DEPTH:
        raise argparse.ArgumentTypeError(f'expected four block counts in [1, {MAX_DEPTH}] such as 1,1,1,1, got {value!r}')
    return depths


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class, p.epilog = argparse.RawDescriptionHelpFormatter, __doc__
    p.add_argument('--preset', choices=sorted(PRESETS), default=None,
                   help='a ready-made run; options given on the command line still win over it')
    p.add_argument('--device', default=None, choices=('auto', 'cpu', 'cuda'), help='default auto')
    p.add_argument('--models', default=None, type=lambda v: _csv(v, ARCHS, 'model'),
                   help='architectures that timm builds as NormFreeNet and we build too (comma-separated; '
                        'default nf_resnet50,nf_regnet_b1)')
    p.add_argument('--rows', default=None, type=lambda v: _csv(v, ALL_ROWS, 'row'),
                   help=f'subset of {",".join(ALL_ROWS)}; default: all on a GPU, {",".join(CPU_ROWS)} on a CPU')
    p.add_argument('--modes', default=['infer', 'train'], type=lambda v: _csv(v, ('infer', 'train'), 'mode'))
    p.add_argument('--rounds', type=whole_number(1, 10_000), default=None,
                   help='timed rounds (default 5 on GPU, 7 on CPU)')
    p.add_argument('--warmup', type=whole_number(0, 10_000), default=None,
                   help='untimed rounds first, where compilation happens (default 2)')
    p.add_argument('--iters', type=whole_number(1, 10_000), default=None,
                   help='iterations per round (default 4 on GPU, 1 on CPU)')
    p.add_argument('--train-batch', type=batch_size, default=None)
    p.add_argument('--train-size', type=image_size, default=None)
    p.add_argument('--infer-batch', type=batch_size, default=None)
    p.add_argument('--infer-size', type=image_size, default=None)
    p.add_argument('--depths', type=stage_depths, default=None, help='blocks per stage for every row (quick checks)')
    p.add_argument('--no-kernel-count', action='store_true', help='skip the kernel-count columns')
    p.add_argument('--fp32', action='store_true', help='no bf16 autocast on a GPU')
    p.add_argument('--threads', type=whole_number(1, 4096), default=None,
                   help="CPU threads for torch (default: torch's); 1 avoids thread-barrier stalls on a loaded machine")
    p.add_argument('--out', default=None, help='results JSON path (default validate/results/benchmark_<device>_<time>.json)')


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Options not given on the command line: from the preset, else the defaults."""
    preset = PRESETS.get(args.preset, {})
    for key, default in dict(device='auto', models=['nf_resnet50', 'nf_regnet_b1'], rows=None, rounds=None,
                             warmup=2, iters=None).items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    return args


def _settings(args) -> Settings:
    device = torch.device('cuda' if args.device == 'auto' and torch.cuda.is_available() else
                          ('cpu' if args.device == 'auto' else args.device))
    gpu = device.type == 'cuda'
    preset = PRESETS.get(args.preset, {})
    return Settings(
        device=device,
        train_batch=args.train_batch or (256 if gpu else 16),
        train_size=args.train_size or (224 if gpu else 128),
        infer_batch=args.infer_batch or (256 if gpu else 8),
        infer_size=args.infer_size or 224,
        amp_dtype=torch.bfloat16 if gpu and not args.fp32 else None,
        channels_last=gpu,
        iters_per_round=args.iters or (4 if gpu else 1),
        depths=args.depths,
        peers=preset.get('peers', PEERS),
        compiled_infer=preset.get('compiled_infer', True),
    )


def _check_memory(args: argparse.Namespace, cfg: Settings) -> None:
    """One training step and one inference step of each architecture must fit (estimated in float32)."""
    available = torch.cuda.mem_get_info(cfg.device)[0] if cfg.device.type == 'cuda' else None
    for arch in args.models:
        def build(arch=arch):
            return timm.create_model(arch, **({'depths': cfg.depths} if cfg.depths else {}))
        if 'train' in args.modes:
            check_training_fits(build, (cfg.train_batch, 3, cfg.train_size, cfg.train_size),
                                f'a training step of {arch} at batch {cfg.train_batch}, {cfg.train_size} px',
                                'lower --train-batch or --train-size', available)
        if 'infer' in args.modes:
            with torch.device('meta'):
                model = build().eval()
            check_fits(inference_bytes(model, (cfg.infer_batch, 3, cfg.infer_size, cfg.infer_size)),
                       f'inference of {arch} at batch {cfg.infer_batch}, {cfg.infer_size} px',
                       'lower --infer-batch or --infer-size', available)


def main(argv: Optional[List[str]] = None) -> int:
    return command_main('python -m validate benchmark', __doc__.split('\n')[0], _add_arguments, _run, argv)


def _run(args: argparse.Namespace) -> int:
    args = _resolve(args)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise UsageError('--device cuda (or --preset gpu) asks for a GPU, but torch sees no CUDA device: expected '
                         'a machine with one, or --device cpu')
    out = check_output_file(args.out, '--out', ('.json',)) if args.out else None
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _settings(args)
    gpu = cfg.device.type == 'cuda'
    _check_memory(args, cfg)
    rows_wanted = args.rows or list(ALL_ROWS if gpu else CPU_ROWS)
    rounds = args.rounds or (5 if gpu else 7)
    if gpu:
        torch.backends.cudnn.benchmark = True
    load_before = os.getloadavg()
    started = time.time()
    rows = [row for arch in args.models for row in _build_rows(arch, rows_wanted, cfg)]
    if not args.no_kernel_count:
        for row in rows:
            _count_kernels(row, cfg)
    train_xy = _inputs(cfg.train_batch, cfg.train_size, cfg)
    infer_x = _inputs(cfg.infer_batch, cfg.infer_size, cfg)[0]
    for round_idx in range(args.warmup + rounds):
        timed = round_idx >= args.warmup
        for row in rows:
            if 'train' in args.modes and row.train_model is not None:
                _measure_train(row, *train_xy, cfg, timed)
            if 'infer' in args.modes and row.infer_model is not None:
                row.infer_model.eval()
                seconds = _time(lambda: _infer_step(row, infer_x, cfg), cfg)
                if timed:
                    row.infer_s.append(seconds)
        print(f'round {round_idx + 1}/{args.warmup + rounds} done ({time.time() - started:.0f} s)', flush=True)
    if not gpu and 'train' in args.modes:
        for row in rows:
            if row.train_model is not None and not row.compiled:
                row.peak_train_bytes = _saved_for_backward_bytes(row, *train_xy, cfg)
    load_after = os.getloadavg()

    table = _table(rows, cfg)
    where = _device_info(cfg.device)
    machine = where.get('card') or where['processor'] or 'CPU'
    print(f"\n{machine} ({where['torch_threads']} threads), torch {torch.__version__}, "
          f"timm {timm.__version__}, timm_nf {timm_nf.__version__}; train batch {cfg.train_batch} at "
          f"{cfg.train_size} px, inference batch {cfg.infer_batch} at {cfg.infer_size} px, "
          f"{'bf16 autocast, channels_last' if gpu and cfg.amp_dtype else 'fp32'}; median of {rounds} rounds x "
          f"{cfg.iters_per_round} iterations after {args.warmup} warm-up rounds; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {time.time() - started:.0f} s")
    _print_table(table, cfg)
    targets = _targets(table, cfg)
    for t in targets:
        print(f"target {t['arch']}: {t['target']}: {t['value']:.3f} -> {'met' if t['met'] else 'NOT met'}")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    out = out or os.path.join(RESULTS_DIR, f"benchmark_{'gpu' if gpu else 'cpu'}_{stamp}.json")
    result = dict(
        date=stamp, device=where, versions=dict(torch=torch.__version__, timm=timm.__version__,
                                                timm_nf=timm_nf.__version__, python=platform.python_version()),
        settings=dict(preset=args.preset, train_batch=cfg.train_batch, train_size=cfg.train_size,
                      infer_batch=cfg.infer_batch, infer_size=cfg.infer_size, amp=str(cfg.amp_dtype),
                      channels_last=cfg.channels_last, rounds=rounds, warmup_rounds=args.warmup,
                      iters_per_round=cfg.iters_per_round, modes=args.modes, rows=rows_wanted,
                      depths=cfg.depths, seconds=round(time.time() - started),
                      memory=('torch.cuda.max_memory_allocated over the timed training steps, as if alone on the card'
                              if gpu else 'bytes saved for backward in one training forward'),
                      kernels='kernel-launching ops at batch 2, 64 px (validate/op_count.py)'),
        load_average=dict(before=load_before, after=load_after),
        table=table, targets=targets)
    write_text_atomic(out, json.dumps(result, indent=1))
    print(f'wrote {out}')
    return 0
