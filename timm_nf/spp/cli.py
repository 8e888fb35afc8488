"""`timm-nf spp MODEL [MODEL ...]`: measure each model's signal propagation and draw the three-panel figure."""
import argparse
import contextlib
import gc
import os
import sys
from typing import List, Optional

import timm
import torch

from .._atomic import atomic_path
from .._command_line import (UsageError, check_model_name, check_output_file, command_main,
                             finite_float, positive_int)
from .conventions import CONVENTIONS
from .plot import figure_formats, plot_spp
from .result import SPPResult, write_csv
from .stats import BN_STATS, has_skipinit_gain, signal_propagation

PROG = 'timm-nf spp'
DESCRIPTION = ('Signal Propagation Plots (Brock, De & Smith 2021): per residual block, the average channel squared '
               'mean and variance of the block output and the variance at the end of the residual branch, for '
               "timm_nf models and any timm model whose residual blocks follow timm's naming conventions "
               f'({", ".join(CONVENTIONS)}) or are named with --blocks.')


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('models', nargs='+', metavar='MODEL', help='timm model names, e.g. dm_nf_resnet50 resnetv2_50')
    p.add_argument('--input', default='gaussian', metavar='gaussian|FOLDER',
                   help="unit Gaussian noise (default) or a folder of images, preprocessed with each model's "
                        'data config')
    p.add_argument('--batch', type=positive_int, default=32, help='batch size (default 32)')
    p.add_argument('--img-size', type=positive_int, default=None,
                   help="image size (default: each model's input size)")
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the Gaussian input and, at initialisation, of the weights (default 0): the same '
                        'command gives the same numbers. With --pretrained only the input depends on it. Recorded '
                        'in the CSV (input_seed, init_seed)')
    p.add_argument('--blocks', default=None, metavar='PATTERN',
                   help="the block modules, for nets that timm's conventions miss: dot-separated module-name parts "
                        "with shell wildcards, each matching one part (e.g. 'features.*', 'layers.*.blocks.*'); "
                        'blocks with the same parent form a stage')
    p.add_argument('--skipinit-gain', type=finite_float, default=None, metavar='G',
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
    p.add_argument('--no-progress', action='store_true',
                   help='no progress bar (by default one is shown for deep nets on a terminal, never in CI or when '
                        'stderr is redirected)')


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError('drawing the figure needs matplotlib, which is not installed: pip install matplotlib '
                         '(a dependency of timm-nf; was it installed with --no-deps?)') from None


def _check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before a model is built: names, input, and both output files."""
    _require_matplotlib()
    for name in args.models:
        check_model_name(name)
    if args.input != 'gaussian' and not os.path.isdir(args.input):
        raise UsageError(f'--input must be "gaussian" or a folder of images; {args.input!r} is neither')
    ext = os.path.splitext(args.output)[1][1:].lower()
    if ext not in figure_formats():
        raise UsageError(f'cannot draw a figure as {args.output!r}: name a file ending in '
                         f'.{", .".join(figure_formats())}')
    check_output_file(args.output, '-o/--output')
    if args.csv:
        check_output_file(args.csv, '--csv', suffixes=('.csv',))


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


def _write(results: List[SPPResult], args: argparse.Namespace) -> None:
    """The figure and the CSV through temporary files, renamed into place together: neither is left half-written."""
    with contextlib.ExitStack() as stack:
        figure = stack.enter_context(atomic_path(args.output))
        table = stack.enter_context(atomic_path(args.csv)) if args.csv else None
        plot_spp(results, figure, title=args.title)
        if table:
            write_csv(results, table)
    for path in filter(None, (args.output, args.csv)):
        print(f'wrote {path}')


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    results = []
    try:
        for name in args.models:
            results.append(_measure(name, args))
            gc.collect()  # deep nets: free one model before building the next
    except ValueError as e:  # a model that cannot be built as asked, an image size it cannot take, no images
        raise UsageError(str(e)) from None
    _write(results, args)
    for result in results:
        last = result.rows[-1]
        print(f'{result.model}: {len(result.rows) - 1} blocks; last block avg_var {last.avg_var:.4g}, '
              f'avg_sq_mean {last.avg_sq_mean:.4g}, res_avg_var {last.res_avg_var:.4g}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, DESCRIPTION, add_arguments, run, argv)
