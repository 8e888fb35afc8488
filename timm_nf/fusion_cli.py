"""`timm-nf fuse MODEL [--checkpoint FILE | --pretrained] -o fused.safetensors`: write a model's fused inference weights.

The file holds the state_dict of `timm_nf.fuse(model)` plus metadata (model name, constructor arguments), so
`timm_nf.fusion.load_fused(path)` rebuilds the fused model in one call (timm_nf/fused_file.py). A model name with a
pretrained tag (nf_resnet50.ra2_in1k) means its published weights, as --pretrained does; random weights are fused only
for a bare architecture name without --checkpoint, and the command says so.
"""
import argparse
from typing import List, Optional

import timm
import torch

from . import fuse
from .fusion import check_fusable
from ._command_line import (UsageError, check_model_name, check_output_file, command_main, description,
                            whole_number)
from ._download import check_has_weights, create_pretrained
from .checkpoint import TrainCheckpoint, build_model, checkpoint_file, read_checkpoint
from .models.config import MAX_CHANNELS, MAX_CLASSES
from .fused_file import SUFFIX, save_fused

PROG = 'timm-nf fuse'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', metavar='MODEL', help='a registered NF model name, e.g. nf_resnet50 or dm_nf_regnet_b0')
    parser.add_argument('--checkpoint', metavar='FILE', help="weights to load: a train.py checkpoint or its output "
                        'folder, a torch.save state dict or .safetensors')
    parser.add_argument('--pretrained', action='store_true',
                        help="the model's published weights (the default tag, or the tag in MODEL); without "
                             '--checkpoint or --pretrained, a bare architecture name is fused at random initialisation')
    parser.add_argument('--no-ema', action='store_true', help="use a train.py checkpoint's raw weights, not its EMA "
                                                              'weights (the EMA weights are used when present)')
    parser.add_argument('-o', '--output', required=True, metavar='FILE', help=f'where to write the {SUFFIX} file')
    parser.add_argument('--num-classes', type=whole_number(0, MAX_CLASSES), default=None,
                        help="classifier size (default: the checkpoint's, else the model's)")
    parser.add_argument('--in-chans', type=whole_number(1, MAX_CHANNELS), default=None,
                        help="input channels (default: the checkpoint's, else 3)")


def _overrides(args: argparse.Namespace):
    return {k: v for k, v in (('num_classes', args.num_classes), ('in_chans', args.in_chans)) if v is not None}


def _build(args: argparse.Namespace, pretrained: bool, checkpoint: Optional[TrainCheckpoint]):
    """(model with the requested weights in eval mode, the name to record, its create_model kwargs)."""
    overrides = _overrides(args)
    if pretrained:
        model = create_pretrained(args.model, **overrides).eval()
        cfg = model.pretrained_cfg
        name = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get('tag') else args.model
        print(f'weights: the published {name} weights')
        return model, name, overrides
    if checkpoint is None:
        model = timm.create_model(args.model, pretrained=False, **overrides).eval()
        print('weights: random initialisation (no --checkpoint or --pretrained given)')
        return model, args.model, overrides
    model = build_model(checkpoint)
    print(f'weights: {checkpoint.weights} of {checkpoint.path.name}'
          + (" (train.py's EMA weights; --no-ema for the raw ones)" if checkpoint.is_ema else ''))
    return model, args.model, checkpoint.model_args


def run(args: argparse.Namespace) -> int:
    if args.pretrained and args.checkpoint:
        raise UsageError('--pretrained and --checkpoint both say which weights to fuse: give one of them')
    # a missing, empty or text checkpoint fails here, before any model is built
    path = checkpoint_file(args.checkpoint) if args.checkpoint else None
    check_output_file(args.output, '-o/--output', suffixes=(SUFFIX,),
                      inputs=[(str(path) if path else None, 'the --checkpoint file')])
    check_model_name(args.model)
    try:
        with torch.device('meta'):  # shapes only: a net that fuses, with these arguments, before any real work
            check_fusable(timm.create_model(args.model, **_overrides(args)))
    except (TypeError, ValueError) as e:
        raise UsageError(f'cannot fuse {args.model}: {e}') from None
    pretrained = args.pretrained or ('.' in args.model and path is None)  # a tag names published weights
    if pretrained:
        check_has_weights(args.model)
    checkpoint = None
    if path is not None:  # read and matched to the model's keys (in build_model) before anything is written
        checkpoint = read_checkpoint(path, use_ema=not args.no_ema, arch=args.model, model_args=_overrides(args))
    model, name, create_kwargs = _build(args, pretrained, checkpoint)
    n_tensors, n_values = save_fused(fuse(model), args.output, name, create_kwargs)
    print(f'wrote {args.output}: {name} fused, {n_tensors} tensors, {n_values / 1e6:.2f}M values')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv)
