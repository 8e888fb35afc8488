"""`timm-nf fuse MODEL [--checkpoint FILE] -o fused.safetensors`: write a model's fused inference weights.

The file holds the state_dict of `timm_nf.fuse(model)` plus metadata (model name, constructor arguments), so
`timm_nf.fusion.load_fused(path)` rebuilds the fused model in one call.
"""
import argparse
import json
import os
import sys
from typing import List, Optional

import timm
from safetensors.torch import save_file
from timm.models import load_checkpoint

from ._atomic import atomic_path
from .fusion import fuse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='timm-nf fuse', description=__doc__.split('\n')[0].split(': ', 1)[1])
    parser.add_argument('model', metavar='MODEL', help='a registered NF model name, e.g. nf_resnet50 or dm_nf_regnet_b0')
    parser.add_argument('--checkpoint', metavar='FILE', help='weights to load (timm checkpoint or state_dict); '
                                                               'without it the model is randomly initialised')
    parser.add_argument('-o', '--output', required=True, metavar='FILE', help='where to write the .safetensors file')
    parser.add_argument('--num-classes', type=int, default=None, help='classifier size, if not the default')
    parser.add_argument('--in-chans', type=int, default=None, help='input channels, if not 3')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        print(f'timm-nf fuse: output directory {directory} does not exist', file=sys.stderr)
        return 2
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        print(f'timm-nf fuse: checkpoint {args.checkpoint} not found', file=sys.stderr)
        return 2
    create_kwargs = {k: v for k, v in (('num_classes', args.num_classes), ('in_chans', args.in_chans)) if v is not None}
    try:
        model = timm.create_model(args.model, pretrained=False, **create_kwargs)
    except RuntimeError as e:  # timm's "Unknown model (...)"
        print(f'timm-nf fuse: {e}; `timm-nf list` shows the NF models', file=sys.stderr)
        return 2
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    try:
        fused = fuse(model.eval())
    except TypeError as e:
        print(f'timm-nf fuse: {e}', file=sys.stderr)
        return 2
    tensors = {name: t.detach().contiguous() for name, t in fused.state_dict().items()}
    metadata = {'model': args.model, 'create_kwargs': json.dumps(create_kwargs), 'format': 'timm_nf.fused'}
    with atomic_path(args.output) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    n_params = sum(t.numel() for t in tensors.values())
    print(f'wrote {args.output}: {args.model} fused, {len(tensors)} tensors, {n_params / 1e6:.2f}M values')
    return 0
