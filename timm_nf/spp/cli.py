"""`timm-nf spp MODEL [MODEL ...]`: measure each model's signal propagation and draw the three-panel figure."""
import argparse
import difflib
import gc
import os
import sys
from typing import List, Optional

import timm
import torch

from .plot import figure_formats, plot_spp
from .result import SPPResult, write_csv
from .stats import BN_STATS, has_skipinit_gain, signal_propagation


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='timm-nf spp',
        description='Signal Propagation Plots (Brock, De & Smith 2021): per residual block, the average channel '
                    'squared mean and variance of the block output and the variance at the end of the residual '
                    "branch, for timm_nf models and any timm model whose residual blocks follow timm's naming "
                    'conventions (stages/blocks, layerN, sN) or are named with --blocks.')
    p.add_argument('models', nargs='+', metavar='MODEL', help='timm model names, e.g. dm_nf_resnet50 resnetv2_50')
    p.add_argument('--input', default='gaussian', metavar='gaussian|FOLDER',
                   help="unit Gaussian noise (default) or a folder of images, preprocessed with each model's "
                        'data config')
    p.add_argument('--batch', type=int, default=32, help='batch size (default 32)')
    p.add_argument('--img-size', type=int, default=None, help="image size (default: each model's input size)")
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the Gaussian input and, at initialisation, of the weights (default 0): the same '
                        'command gives the same numbers. With --pretrained only the input depends on it. Recorded '
                        'in the CSV (input_seed, init_seed)')
    p.add_argument('--blocks', default=None, metavar='PATTERN',
                   help="the block modules, for nets that timm's conventions miss: dot-separated module-name parts "
                        "with shell wildcards, each matching one part (e.g. 'features.*', 'layers.*.blocks.*'); "
                        'blocks with the same parent form a stage')
    p.add_argument('--skipinit-gain', type=float, default=None, metavar='G',
                   help='set every SkipInit gain to G for the measurement (the model is restored afterwards). '
                        'dm_ family: the scalar per-block gain (init 0, which hides every residual branch; use 1 to '
                        'see the 1+k·α² staircase). timm family and timm\'s NormFreeNet: there is no scalar, the last '
                        'conv\'s per-channel gain is zero-initialised instead, so this sets conv3.gain to G, '
                        'overriding trained values. Ignored, with a note, for nets without a SkipInit gain.')
    p.add_argument('--bn-stats', choices=BN_STATS, default='batch',
                   help='BatchNorm normalises with batch statistics (default, as at initialisation in the paper) '
                        'or with its running statistics')
    p.add_argument('--pretrained', action='store_true', help="load each model's pretrained weights")
    p.add_argument('-o', '--output', required=True, help='figure file, e.g. spp.png (or .pdf, .svg)')
    p.add_argument('--csv', default=None, help='also write every measured point to this CSV file')
    p.add_argument('--title', default=None, help='figure title')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def _unknown_model_message(name: str) -> str:
    matches = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f'; close matches: {", ".join(matches)}' if matches else '; `timm-nf list` shows the NF models'
    return f'unknown model {name!r}{hint}'


def _check_args(args: argparse.Namespace) -> Optional[str]:
    for name in args.models:
        if not timm.is_model(name):
            return _unknown_model_message(name)
    if args.batch < 1:
        return f'--batch must be at least 1, got {args.batch}'
    if args.input != 'gaussian' and not os.path.isdir(args.input):
        return f'--input must be "gaussian" or a folder of images; {args.input!r} is neither'
    ext = os.path.splitext(args.output)[1][1:].lower()
    if ext not in figure_formats():
        return f'cannot draw a figure as {args.output!r}: name a file ending in .{", .".join(figure_formats())}'
    for path in filter(None, (args.output, args.csv)):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f'cannot write {path!r}: folder {folder!r} does not exist'
    return None


def _measure(name: str, args: argparse.Namespace) -> SPPResult:
    try:
        torch.manual_seed(args.seed)  # the weights at initialisation: the same command, the same numbers
        model = timm.create_model(name, pretrained=args.pretrained)
    except Exception as e:  # offline hub, missing weights, ...: say which model and why
        raise ValueError(f'cannot create {name}{" with pretrained weights" if args.pretrained else ""}: {e}') from e
    gain = args.skipinit_gain
    if gain is not None and not has_skipinit_gain(model):
        print(f'note: {name} has no SkipInit gain; --skipinit-gain is ignored for it', file=sys.stderr)
        gain = None
    result = signal_propagation(
        model, args.input, name=name, batch=args.batch, img_size=args.img_size, seed=args.seed, skipinit_gain=gain,
        bn_stats=args.bn_stats, progress=False if args.no_progress else None, blocks=args.blocks)
    result.settings['init_seed'] = None if args.pretrained else args.seed
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    problem = _check_args(args)
    if problem:
        print(f'timm-nf spp: error: {problem}', file=sys.stderr)
        return 2
    results = []
    try:
        for name in args.models:
            results.append(_measure(name, args))
            gc.collect()  # deep nets: free one model before building the next
    except ValueError as e:
        print(f'timm-nf spp: error: {e}', file=sys.stderr)
        return 2
    plot_spp(results, args.output, title=args.title)
    print(f'wrote {args.output}')
    if args.csv:
        write_csv(results, args.csv)
        print(f'wrote {args.csv}')
    for result in results:
        last = result.rows[-1]
        print(f'{result.model}: {len(result.rows) - 1} blocks; last block avg_var {last.avg_var:.4g}, '
              f'avg_sq_mean {last.avg_sq_mean:.4g}, res_avg_var {last.res_avg_var:.4g}')
    return 0
