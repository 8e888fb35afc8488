"""`timm-nf spp MODEL [MODEL ...]`: measure each model's signal propagation and draw the three-panel figure."""
import argparse
import collections
import contextlib
import gc
import math
import os
import sys
from typing import List, Optional

import torch

from .._arguments import BadArgument, first_line
from .._atomic import atomic_path
from .._command_line import (UsageError, batch_size, check_model_name, check_output_file, command_main, image_size,
                             real_number, random_seed)
from .._download import check_has_weights, create_pretrained
from .._memory import check_fits, inference_bytes
from .anatomy import find_anatomy
from .conventions import CONVENTIONS
from .inputs import create_at_size, list_images, model_input_size, size_kwargs
from .plot import check_drawable, plot_spp
from .result import SPPResult, write_csv
from .stats import BN_STATS, MAX_SKIPINIT_GAIN, has_skipinit_gain, signal_propagation

PROG = 'timm-nf spp'
# the Python API's argument → this command's option, for the API's errors (timm_nf/_arguments.py)
OPTIONS = {'inputs': '--input', 'batch': '--batch', 'img_size': '--img-size', 'seed': '--seed',
           'skipinit_gain': '--skipinit-gain', 'blocks': '--blocks PATTERN', 'bn_stats': '--bn-stats',
           'title': '--title', 'path': '-o/--output'}
DESCRIPTION = ('Signal Propagation Plots (Brock, De & Smith 2021): per residual block, the average channel squared '
               'mean and variance of the block output and the variance at the end of the residual branch, for '
               "timm_nf models and any timm model whose residual blocks follow timm's naming conventions "
               f'({", ".join(CONVENTIONS)}) or are named with --blocks.')


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('models', nargs='+', metavar='MODEL', help='timm model names, e.g. dm_nf_resnet50 resnetv2_50')
    p.add_argument('--input', default='gaussian', metavar='gaussian|FOLDER',
                   help="unit Gaussian noise (default) or a folder of images, preprocessed with each model's "
                        'data config')
    p.add_argument('--batch', type=batch_size, default=32, help='batch size (default 32)')
    p.add_argument('--img-size', type=image_size, default=None,
                   help="image size (default: each model's input size; timm models built for one size, such as "
                        'ViTs, are built for this one)')
    p.add_argument('--seed', type=random_seed, default=0,
                   help='seed of the Gaussian input and, at initialisation, of the weights (default 0): the same '
                        'command gives the same numbers. With --pretrained only the input depends on it. Recorded '
                        'in the CSV (input_seed, init_seed)')
    p.add_argument('--blocks', default=None, metavar='PATTERN',
                   help="the block modules, for nets that timm's conventions miss: dot-separated module-name parts "
                        "with shell wildcards, each matching one part (e.g. 'features.*', 'layers.*.blocks.*'); "
                        'blocks with the same parent form a stage')
    p.add_argument('--skipinit-gain', type=real_number(-MAX_SKIPINIT_GAIN, MAX_SKIPINIT_GAIN), default=None,
                   metavar='G',
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
    """Everything that can be checked before a model is measured: names, input, both output files, the drawing
    itself, and each model at the requested size (built on the meta device: its blocks, and the memory it needs)."""
    _require_matplotlib()
    for name in args.models:
        check_model_name(name)
        if args.pretrained:
            check_has_weights(name)
    images = list_images(args.input) if args.input != 'gaussian' else []
    check_output_file(args.output, '-o/--output', inputs=[(image, 'an image of --input') for image in images])
    if args.csv:
        check_output_file(args.csv, '--csv', suffixes=('.csv',))
        if os.path.abspath(args.csv) == os.path.abspath(args.output):
            raise UsageError(f'--csv {args.csv} is also -o/--output: name two files')
    check_drawable(args.output, args.title)
    batch = min(args.batch, len(images)) if images else args.batch
    for name in args.models:
        _rehearse(name, batch, args)


def _rehearse(name: str, batch: int, args: argparse.Namespace) -> None:
    """The model on the meta device (shapes only): the image size fits, the blocks are found and each runs once,
    and the measurement fits in memory."""
    try:
        with torch.device('meta'):
            model = create_at_size(name, args.img_size).eval()
    except BadArgument:
        raise
    except Exception:  # noqa: BLE001  a timm model that cannot be built without memory is checked as it is measured
        return
    anatomy = find_anatomy(model, args.blocks)
    shape = (batch, *model_input_size(model, args.img_size))
    calls = collections.Counter()
    hooks = [site.module.register_forward_hook(lambda module, inputs, out, i=i: calls.update([i]))
             for i, site in enumerate(anatomy.sites)]
    try:
        needed = inference_bytes(model, shape, forward=getattr(model, 'forward_features', model))
    except BadArgument:
        raise
    except (RuntimeError, ValueError, AssertionError) as e:  # what a net says to an input it cannot take
        raise BadArgument('img_size', f'{name} cannot take a {shape[-2]}x{shape[-1]} input ({{arg}}): '
                                      f'{first_line(e)[:200]}') from None
    finally:
        for hook in hooks:
            hook.remove()
    if any(calls[i] != 1 for i in range(len(anatomy.sites))):
        raise BadArgument('blocks', f'{name}: its forward pass skipped a block or ran one twice; name blocks that '
                                    'forward_features runs once each with {arg}')
    check_fits(needed, f'measuring {name} at batch {batch}, {shape[-1]} px',
               'lower --batch or --img-size')


def _measure(name: str, args: argparse.Namespace) -> SPPResult:
    torch.manual_seed(args.seed)  # the weights at initialisation: the same command, the same numbers
    if args.pretrained:
        model = create_pretrained(name, **size_kwargs(name, args.img_size))
    else:
        model = create_at_size(name, args.img_size)
    gain = args.skipinit_gain
    if gain is not None and not has_skipinit_gain(model):
        print(f'note: {name} has no SkipInit gain; --skipinit-gain is ignored for it', file=sys.stderr)
        gain = None
    result = signal_propagation(
        model, args.input, name=name, batch=args.batch, img_size=args.img_size, seed=args.seed, skipinit_gain=gain,
        bn_stats=args.bn_stats, progress=False if args.no_progress else None, blocks=args.blocks)
    result.settings['init_seed'] = None if args.pretrained else args.seed
    bad = next((row for row in result.rows
                if not all(math.isfinite(v) for v in (row.avg_sq_mean, row.avg_var))), None)
    if bad is not None:
        raise UsageError(f'{name}: the activations overflowed float32 from block {bad.index} on (its statistics are '
                         f'inf or NaN), so there is nothing to plot'
                         + (f'; lower --skipinit-gain {args.skipinit_gain:g}' if gain is not None else ''))
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
    for name in args.models:
        results.append(_measure(name, args))
        gc.collect()  # deep nets: free one model before building the next
    _write(results, args)
    for result in results:
        last = result.rows[-1]
        print(f'{result.model}: {len(result.rows) - 1} blocks; last block avg_var {last.avg_var:.4g}, '
              f'avg_sq_mean {last.avg_sq_mean:.4g}, res_avg_var {last.res_avg_var:.4g}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, DESCRIPTION, add_arguments, run, argv, options=OPTIONS)
