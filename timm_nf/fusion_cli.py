"""`timm-nf fuse MODEL [--checkpoint FILE] -o fused.safetensors`: write a model's fused inference weights.

The file holds the state_dict of `timm_nf.fuse(model)` plus metadata (model name, constructor arguments), so
`timm_nf.fusion.load_fused(path)` rebuilds the fused model in one call (timm_nf/fused_file.py).
"""
import argparse
from typing import List, Optional

import timm

from . import fuse
from ._command_line import (UsageError, check_model_name, check_output_file, command_main, description,
                            non_negative_int, positive_int)
from .checkpoint import build_model, checkpoint_file, read_checkpoint
from .fused_file import SUFFIX, save_fused

PROG = 'timm-nf fuse'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', metavar='MODEL', help='a registered NF model name, e.g. nf_resnet50 or dm_nf_regnet_b0')
    parser.add_argument('--checkpoint', metavar='FILE', help="weights to load: a train.py checkpoint or its output "
                        'folder, a torch.save state dict or .safetensors; without it the model is randomly '
                        'initialised')
    parser.add_argument('--no-ema', action='store_true', help="use a train.py checkpoint's raw weights, not its EMA "
                                                              'weights (the EMA weights are used when present)')
    parser.add_argument('-o', '--output', required=True, metavar='FILE', help=f'where to write the {SUFFIX} file')
    parser.add_argument('--num-classes', type=non_negative_int, default=None,
                        help="classifier size (default: the checkpoint's, else the model's)")
    parser.add_argument('--in-chans', type=positive_int, default=None,
                        help="input channels (default: the checkpoint's, else 3)")


def _build(args: argparse.Namespace):
    """(model with the requested weights in eval mode, its create_model kwargs)."""
    overrides = {k: v for k, v in (('num_classes', args.num_classes), ('in_chans', args.in_chans)) if v is not None}
    if not args.checkpoint:
        try:
            return timm.create_model(args.model, pretrained=False, **overrides).eval(), overrides
        except (TypeError, ValueError) as e:
            raise UsageError(f'cannot build {args.model}: {e}') from None
    checkpoint = read_checkpoint(args.checkpoint, use_ema=not args.no_ema, arch=args.model, model_args=overrides)
    model = build_model(checkpoint)
    print(f'weights: {checkpoint.weights} of {checkpoint.path.name}'
          + (" (train.py's EMA weights; --no-ema for the raw ones)" if checkpoint.is_ema else ''))
    return model, checkpoint.model_args


def run(args: argparse.Namespace) -> int:
    check_output_file(args.output, '-o/--output', suffixes=(SUFFIX,))
    check_model_name(args.model)
    if args.checkpoint:
        checkpoint_file(args.checkpoint)  # a missing, empty or text file fails here, before any model is built
    model, create_kwargs = _build(args)
    try:
        fused = fuse(model)
    except TypeError as e:  # not a normalizer-free net
        raise UsageError(str(e)) from None
    n_tensors, n_values = save_fused(fused, args.output, args.model, create_kwargs)
    print(f'wrote {args.output}: {args.model} fused, {n_tensors} tensors, {n_values / 1e6:.2f}M values')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv)
