"""Regenerate the paper's signal-propagation findings (Brock, De & Smith 2021, Figs. 1-2) and check them numerically.

    python -m validate spp [--depth 50] [--nf-size 384 --nf-batch 2] [--size 96 --batch 16] [--r50-size 224 ...]

Nets, all at initialisation with unit-Gaussian input (seed 0):
- 600-layer pre-activation BatchNorm ResNets, BN→ReLU→Conv and ReLU→BN→Conv (validate/reference_nets.py);
- the paper-exact 600-layer NF-ResNet with Scaled WS, SkipInit gain set to 1 (the reference code initialises it to
  0, which hides every residual branch; its NF_ResNet takes `skipinit_gain` for this);
- the same NF-ResNet with plain He-initialised convs ("NF, He init");
- timm's NormFreeNet nf_resnet50 beside dm_nf_resnet50 and our nf_resnet50 (last-conv gains / SkipInit gain set to 1);
- timm's popular residual nets (ConvNeXt-T, RegNetY-1.6GF, ResNet-50, ViT-S/16, EfficientNet-B0) beside the
  paper-exact NF-ResNet-50 and NF-RegNet-B0, all exactly as timm creates them (no gain set), at --popular-size.
The NF-ResNet with Scaled WS runs at a larger image size than the others: the 3x3 convs' zero padding lowers the
residual variance on small feature maps (a 3x3 map keeps ~60% of it), which would bend the 1 + kα² staircase for
reasons unrelated to the design. Results go to validate/results/spp_*, figures and their captions to docs/figures/.
Exits 1 when a check fails.
"""
import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import timm
import torch
from timm.models import nfnet as timm_nfnet
from torch import nn

import timm_nf  # noqa: F401  (registers our models)
from timm_nf.spp import SPPResult, plot_spp, signal_propagation, write_csv
from timm_nf.spp.inputs import create_at_size
from timm_nf._atomic import write_text_atomic
from timm_nf._arguments import first_line
from timm_nf._command_line import UsageError, batch_size, check_output_dir, command_main, image_size, whole_number
from timm_nf._memory import check_fits, inference_bytes
from timm_nf._progress import progress_wanted
from timm_nf.models.config import MAX_DEPTH

from .reference_nets import bn_resnet, nf_resnet_he_init
from .spp_popular import POPULAR, caption as popular_caption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'validate', 'results')
FIGURES = os.path.join(ROOT, 'docs', 'figures')
ALPHA = 0.2
INIT_SEED = 0


class Checks:
    """Named pass/fail records, printed as they come and written to the results JSON."""

    def __init__(self):
        self.records: List[Dict] = []

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.records.append(dict(name=name, passed=bool(passed), detail=detail))
        print(f'  [{"PASS" if passed else "FAIL"}] {name}: {detail}')

    @property
    def failed(self) -> List[str]:
        return [r['name'] for r in self.records if not r['passed']]


def _measure(build: Callable[[], nn.Module], name: str, size: int, batch: int, gain=None) -> SPPResult:
    start = time.perf_counter()
    torch.manual_seed(INIT_SEED)  # the same initial weights on every run
    model = build()
    result = signal_propagation(model, name=name, batch=batch, img_size=size, skipinit_gain=gain,
                                progress=progress_wanted())
    result.settings['init_seed'] = INIT_SEED
    del model
    gc.collect()
    result.settings['seconds'] = round(time.perf_counter() - start, 1)
    print(f'{name}: {len(result.rows) - 1} blocks at {size} px, batch {batch}, {result.settings["seconds"]} s')
    return result


def _blocks(result: SPPResult):
    return [r for r in result.rows if r.index > 0]


def _linear_fit(ys: List[float]):
    """(slope, R²) of ys against 0..n-1."""
    xs = list(range(len(ys)))
    slope, intercept = statistics.linear_regression(xs, ys)
    mean = statistics.fmean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    residual = sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys))
    return slope, 1.0 - residual / total if total > 0 else 0.0


def _staircase_error(result: SPPResult) -> float:
    """Largest |avg_var / (1 + (k+1)α²) - 1| over blocks, k the block's place in its stage (0-based)."""
    return max(abs(r.avg_var / (1 + (r.block + 1) * ALPHA ** 2) - 1) for r in _blocks(result))


def _check_nf(ws: SPPResult, he: SPPResult, checks: Checks) -> Dict:
    err = _staircase_error(ws)
    checks.add('NF Scaled WS: avg variance follows 1 + kα² in every stage (10%)', err <= 0.10,
               f'largest deviation {err:.1%}')
    firsts = [rows[0].avg_var for rows in ws.stages().values()]
    lasts = [rows[-1].avg_var for rows in ws.stages().values()]
    checks.add('NF Scaled WS: variance resets at each transition', all(abs(f / (1 + ALPHA ** 2) - 1) <= 0.10
                                                                      for f in firsts),
               f'first block of each stage {_fmt(firsts)} (1+α² = {1 + ALPHA ** 2:.2f}); last {_fmt(lasts)}')
    sq = max(r.avg_sq_mean for r in _blocks(ws))
    checks.add('NF Scaled WS: avg squared mean < 0.05', sq < 0.05, f'largest over blocks {sq:.4f}')
    res = [r.res_avg_var for r in _blocks(ws)]
    checks.add('NF Scaled WS: residual variance near 1 (mean within 10%, every block within 25%)',
               abs(statistics.fmean(res) - 1) <= 0.10 and all(abs(v - 1) <= 0.25 for v in res),
               f'mean {statistics.fmean(res):.3f}, range {min(res):.3f}-{max(res):.3f}')
    he_sq = [r.avg_sq_mean for r in _blocks(he)]
    checks.add('NF He init: squared mean grows large (> 1 and > 20x Scaled WS)', min(he_sq) > 1 and
               max(he_sq) > 20 * sq, f'range {min(he_sq):.2f}-{max(he_sq):.2f} vs Scaled WS max {sq:.4f}')
    return dict(ws=_summary(ws), he=_summary(he), ws_staircase_max_deviation=err,
                he_res_avg_var_mean=statistics.fmean(r.res_avg_var for r in _blocks(he)))


def _check_bn(bn_relu: SPPResult, relu_bn: SPPResult, checks: Checks) -> Dict:
    for label, result in (('BN→ReLU→Conv', bn_relu), ('ReLU→BN→Conv', relu_bn)):
        stages = list(result.stages().values())
        fits = [_linear_fit([r.avg_var for r in rows]) for rows in stages]
        checks.add(f'{label}: variance grows linearly within each stage (slope > 0, R² ≥ 0.98)',
                   all(slope > 0 and r2 >= 0.98 for slope, r2 in fits),
                   'slope/block ' + _fmt([f[0] for f in fits]) + ', R² ' + _fmt([f[1] for f in fits], 4))
        drops = [after[0].avg_var / before[-1].avg_var for before, after in zip(stages, stages[1:])]
        checks.add(f'{label}: variance resets at each transition (first / previous last ≤ 0.5)',
                   all(d <= 0.5 for d in drops), 'ratios ' + _fmt(drops))
    growth = [rows[-1].avg_sq_mean / rows[0].avg_sq_mean for rows in bn_relu.stages().values()]
    checks.add('BN→ReLU→Conv: squared mean grows with depth (last / first block of each stage ≥ 3)',
               all(g >= 3 for g in growth), 'ratios ' + _fmt(growth))
    share = [_mean_share(r) for r in _blocks(relu_bn)]
    share_bn_relu = [_mean_share(r) for r in _blocks(bn_relu)]
    checks.add('ReLU→BN→Conv: no mean shift (squared mean < 5% of the second moment; BN→ReLU→Conv for contrast)',
               max(share) < 0.05, f'largest share {max(share):.4f}; BN→ReLU→Conv up to {max(share_bn_relu):.3f}')
    return dict(bn_relu_conv=_summary(bn_relu), relu_bn_conv=_summary(relu_bn))


def _check_resnet50(results: Dict[str, SPPResult], checks: Checks) -> Dict:
    ours, theirs, dm = results['nf_resnet50'], results['timm NormFreeNet nf_resnet50'], results['dm_nf_resnet50']
    diff = max(abs(a - b) / max(abs(b), 1e-6) for x, y in zip(ours.rows, theirs.rows)
               for a, b in zip((x.avg_sq_mean, x.avg_var, x.res_avg_var), (y.avg_sq_mean, y.avg_var, y.res_avg_var))
               if not math.isnan(b))
    checks.add("our nf_resnet50 = timm's NormFreeNet, same weights (rel. 1e-3)", diff <= 1e-3, f'largest {diff:.1e}')
    err = _staircase_error(dm)
    checks.add('dm_nf_resnet50: avg variance follows 1 + kα² (10%)', err <= 0.10, f'largest deviation {err:.1%}')
    return {name: _summary(result) for name, result in results.items()}


def _mean_share(row) -> float:
    return row.avg_sq_mean / (row.avg_sq_mean + row.avg_var)


def _summary(result: SPPResult) -> Dict:
    """Per stage: avg_var first/last/mean, largest squared mean, residual variance range; plus the settings."""
    stages = {}
    for s, rows in result.stages().items():
        res = [r.res_avg_var for r in rows if not math.isnan(r.res_avg_var)]  # blank: block without a known branch
        stages[str(s)] = dict(
            avg_var_first=round(rows[0].avg_var, 4), avg_var_last=round(rows[-1].avg_var, 4),
            avg_var_mean=round(statistics.fmean(r.avg_var for r in rows), 4),
            avg_sq_mean_max=round(max(r.avg_sq_mean for r in rows), 4),
            res_avg_var_min=round(min(res), 4) if res else None, res_avg_var_max=round(max(res), 4) if res else None)
    return dict(settings=result.settings, stem=dict(avg_sq_mean=round(result.rows[0].avg_sq_mean, 4),
                                                    avg_var=round(result.rows[0].avg_var, 4)), stages=stages)


def _fmt(values, digits: int = 2) -> str:
    return ' '.join(f'{v:.{digits}f}' for v in values)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--depth', type=whole_number(1, MAX_DEPTH), default=50,
                   help='blocks per stage of the deep nets (paper: 50, 600 layers)')
    p.add_argument('--nf-size', type=image_size, default=384, help='image size for the NF-ResNet with Scaled WS')
    p.add_argument('--nf-batch', type=batch_size, default=2)
    p.add_argument('--size', type=image_size, default=96, help='image size for the BN references and the He-init NF net')
    p.add_argument('--batch', type=batch_size, default=16)
    p.add_argument('--r50-size', type=image_size, default=224, help='image size for the three ResNet-50 flavours')
    p.add_argument('--r50-batch', type=batch_size, default=16)
    p.add_argument('--popular-size', type=image_size, default=224, help="image size for timm's popular nets (ViT: 224)")
    p.add_argument('--popular-batch', type=batch_size, default=16)


def _check(args) -> None:
    """The output folders, and the memory of the largest measurements, before anything is measured."""
    check_output_dir(RESULTS, 'validate/results', may_create=True)
    check_output_dir(FIGURES, 'docs/figures', may_create=True)
    depths = (args.depth,) * 4
    for build, size, batch, what in (
            (lambda: timm.create_model('dm_nf_resnet50', depths=depths), args.nf_size, args.nf_batch,
             '--depth, --nf-size or --nf-batch'),
            (lambda: bn_resnet('bn_relu_conv', depths), args.size, args.batch, '--depth, --size or --batch'),
            (lambda: timm.create_model('dm_nf_resnet50'), args.r50_size, args.r50_batch, '--r50-size or --r50-batch'),
            *((lambda name=name: create_at_size(name, args.popular_size), args.popular_size, args.popular_batch,
               '--popular-size or --popular-batch') for name, _, _ in POPULAR)):
        with torch.device('meta'):
            model = build().eval()
        try:
            needed = inference_bytes(model, (batch, 3, size, size))
        except (RuntimeError, ValueError, AssertionError) as e:
            raise UsageError(f'{size} px does not fit the nets: {first_line(e)[:200]}; change '
                             f'{what}') from None
        check_fits(needed, f'measuring at batch {batch}, {size} px', f'lower {what}')


def main(argv=None) -> int:
    return command_main('python -m validate spp', __doc__.split('\n')[0], add_arguments, _run, argv)


def _run(args) -> int:
    _check(args)
    os.makedirs(RESULTS, exist_ok=True)
    os.makedirs(FIGURES, exist_ok=True)
    depths = (args.depth,) * 4
    layers = 3 * sum(depths)  # the paper's count: three convs per block (600 for 50 blocks per stage)
    checks = Checks()
    start = time.perf_counter()

    print(f'== BatchNorm pre-activation ResNets, {layers} layers')
    bn_relu = _measure(lambda: bn_resnet('bn_relu_conv', depths), f'BN→ReLU→Conv ResNet-{layers}', args.size,
                       args.batch)
    relu_bn = _measure(lambda: bn_resnet('relu_bn_conv', depths), f'ReLU→BN→Conv ResNet-{layers}', args.size,
                       args.batch)
    bn_numbers = _check_bn(bn_relu, relu_bn, checks)

    print(f'== NF-ResNet-{layers} (paper-exact, SkipInit gain 1)')
    ws = _measure(lambda: timm.create_model('dm_nf_resnet50', depths=depths), f'NF-ResNet-{layers}, Scaled WS',
                  args.nf_size, args.nf_batch, gain=1.0)
    he = _measure(lambda: nf_resnet_he_init(depths), f'NF-ResNet-{layers}, He init', args.size, args.batch, gain=1.0)
    nf_numbers = _check_nf(ws, he, checks)

    print('== ResNet-50 flavours (SkipInit gain / last-conv gains 1)')
    torch.manual_seed(0)
    reference = timm_nfnet.NormFreeNet(timm_nfnet.model_cfgs['nf_resnet50'])

    def ours():
        model = timm.create_model('nf_resnet50')
        model.load_state_dict(reference.state_dict())
        return model

    r50 = {name: _measure(build, name, args.r50_size, args.r50_batch, gain=1.0) for name, build in (
        ('timm NormFreeNet nf_resnet50', lambda: reference), ('nf_resnet50', ours),
        ('dm_nf_resnet50', lambda: timm.create_model('dm_nf_resnet50')))}
    r50_numbers = _check_resnet50(r50, checks)

    print("== timm's popular residual nets and the NF nets, as created")
    popular = {label: _measure(lambda name=name: create_at_size(name, args.popular_size), label, args.popular_size,
                               args.popular_batch) for name, label, _ in POPULAR}
    popular_numbers = {label: _summary(result) for label, result in popular.items()}

    figures = {
        'spp_bn_resnet600': ([bn_relu, relu_bn], f'Pre-activation BN ResNet-{layers} at init ({args.size} px)'),
        'spp_nf_resnet600': ([ws, he], f'NF-ResNet-{layers}: Scaled WS ({args.nf_size} px) vs He init '
                                       f'({args.size} px), SkipInit gain 1'),
        'spp_resnet50_flavours': (list(r50.values()), f'ResNet-50 NF flavours ({args.r50_size} px), gains 1'),
        'spp_timm_popular': (list(popular.values()), f"timm's residual nets and NF nets as created "
                                                     f'({args.popular_size} px, batch {args.popular_batch})'),
    }
    for name, (results, title) in figures.items():
        plot_spp(results, os.path.join(FIGURES, f'{name}.png'), title=title, dpi=80)
        write_csv(results, os.path.join(RESULTS, f'{name}.csv'))
    summary = dict(args=vars(args), seconds=round(time.perf_counter() - start, 1), checks=checks.records,
                   numbers=dict(bn=bn_numbers, nf=nf_numbers, resnet50=r50_numbers, popular=popular_numbers))
    write_text_atomic(os.path.join(RESULTS, 'spp_findings.json'), json.dumps(summary, indent=1, ensure_ascii=False))
    write_text_atomic(os.path.join(FIGURES, 'spp_findings.md'), '\n'.join(
        [_captions(summary, layers)] + popular_caption(list(popular.values()), args.popular_size, args.popular_batch,
                                                       'docs/figures/spp_timm_popular.png')))
    print(f'wrote validate/results/spp_*.csv, spp_findings.json and docs/figures/spp_*.png, spp_findings.md '
          f'in {summary["seconds"]} s')
    if checks.failed:
        print(f'{len(checks.failed)} check(s) FAILED: {"; ".join(checks.failed)}')
        return 1
    print(f'all {len(checks.records)} checks passed')
    return 0


def _captions(summary: Dict, layers: int) -> str:
    """One sentence per figure, with the measured numbers, for the model card."""
    a, n = summary['args'], summary['numbers']
    bn_relu, relu_bn = n['bn']['bn_relu_conv']['stages'], n['bn']['relu_bn_conv']['stages']
    ws, he = n['nf']['ws']['stages'], n['nf']['he']['stages']
    r50 = n['resnet50']
    timm_r50, dm_r50 = r50['timm NormFreeNet nf_resnet50']['stages'], r50['dm_nf_resnet50']['stages']

    def span(stages, key):
        values = [s[key] for s in stages.values()]
        return f'{min(values):.2f}-{max(values):.2f}'

    return '\n'.join([
        '<!-- generated by `python -m validate spp`; numbers from validate/results/spp_findings.json -->',
        '![SPP of BN ResNets](docs/figures/spp_bn_resnet600.png)',
        '',
        f'**Pre-activation BatchNorm ResNet-{layers} at initialisation** (unit-Gaussian input, {a["size"]} px, batch '
        f'{a["batch"]}): in both orders the average channel variance grows linearly within each stage and resets at '
        f'each transition (stage ends {_fmt([s["avg_var_last"] for s in bn_relu.values()], 1)} for BN→ReLU→Conv, '
        f'{_fmt([s["avg_var_last"] for s in relu_bn.values()], 1)} for ReLU→BN→Conv); BN→ReLU→Conv accumulates a '
        f'mean shift (squared mean up to {max(s["avg_sq_mean_max"] for s in bn_relu.values()):.1f}, residual '
        f'variance {span(bn_relu, "res_avg_var_min")}) while ReLU→BN→Conv has none (squared mean ≤ '
        f'{max(s["avg_sq_mean_max"] for s in relu_bn.values()):.3f}; residual variance ≈ 2 with He init).',
        '',
        '![SPP of NF-ResNets](docs/figures/spp_nf_resnet600.png)',
        '',
        f'**NF-ResNet-{layers} (paper-exact, SkipInit gain set to 1)**: with Scaled WS ({a["nf_size"]} px, batch '
        f'{a["nf_batch"]}) the average channel variance follows 1 + kα² within every stage (largest deviation '
        f'{n["nf"]["ws_staircase_max_deviation"]:.1%}; stage ends {_fmt([s["avg_var_last"] for s in ws.values()])}, '
        f'ideal {1 + a["depth"] * ALPHA ** 2:.2f}), the squared mean stays ≤ '
        f'{max(s["avg_sq_mean_max"] for s in ws.values()):.3f} and the residual variance is '
        f'{min(s["res_avg_var_min"] for s in ws.values()):.2f}-{max(s["res_avg_var_max"] for s in ws.values()):.2f}; '
        f'with plain He-initialised convs ({a["size"]} px) the squared mean grows large (stage maxima '
        f'{span(he, "avg_sq_mean_max")}) and the residual variance scatters over '
        f'{min(s["res_avg_var_min"] for s in he.values()):.2f}-{max(s["res_avg_var_max"] for s in he.values()):.2f} '
        f'(mean {n["nf"]["he_res_avg_var_mean"]:.2f}).',
        '',
        '![SPP of ResNet-50 flavours](docs/figures/spp_resnet50_flavours.png)',
        '',
        f'**ResNet-50 flavours** ({a["r50_size"]} px, batch {a["r50_batch"]}, residual gains set to 1): our '
        f"nf_resnet50 matches timm's NormFreeNet; both depart from the paper's ideal that dm_nf_resnet50 follows "
        f'(per-stage mean variance {_fmt([s["avg_var_mean"] for s in dm_r50.values()])}): γ folded into the stem '
        f'conv lifts stage 1 to {timm_r50["1"]["avg_var_mean"]:.2f} (≈ γ² = 2.94), and the avg-pool shortcuts '
        f'shrink white-noise variance at each transition, to '
        f'{_fmt([timm_r50[s]["avg_var_mean"] for s in ("2", "3", "4")])} in stages 2-4.',
        '',
    ])


if __name__ == '__main__':
    sys.exit(main())
