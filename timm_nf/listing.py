"""`timm-nf list`: the registered families with parameter counts, and a forward pass through each listed model."""
import argparse
import time
from typing import List, Optional

import timm
import torch

from ._command_line import UsageError, check_model_name, command_main, description, positive_int
from .models import MODEL_CONFIGS

PROG = 'timm-nf list'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('pattern', nargs='?', default='*nf_*', help='name filter (default: every timm-nf model)')
    parser.add_argument('--forward', default='dm_nf_regnet_b0,nf_resnet26',
                        help="comma-separated models to run a forward pass on ('none' to skip)")
    parser.add_argument('--img-size', type=positive_int, default=128, help='input size of the forward pass')


def run(args: argparse.Namespace) -> int:
    names = [n for n in timm.list_models(args.pattern) if n in MODEL_CONFIGS]
    if not names:
        raise UsageError(f'no timm-nf model matches {args.pattern!r}: expected a pattern such as dm_nf_* or '
                         f'nf_regnet_*')
    forward = [] if args.forward == 'none' else [n for n in args.forward.split(',') if n]
    for name in forward:
        check_model_name(name)
    print(f"{'model':<20}{'family':<18}{'params (M)':>11}{'train px':>9}{'test px':>8}  default weights")
    for name in names:
        with torch.device('meta'):
            model = timm.create_model(name)
        cfg = model.pretrained_cfg
        test = (cfg.get('test_input_size') or cfg['input_size'])[-1]
        weights = f"{name}.{cfg['tag']}" if cfg.get('tag') and (cfg.get('hf_hub_id') or cfg.get('url')) else '-'
        family = 'paper-exact (dm_)' if name.startswith('dm_') else 'timm-compatible'
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<20}{family:<18}{params:>11.2f}{cfg['input_size'][-1]:>9}{test:>8}  {weights}")

    for name in forward:
        model = timm.create_model(name).eval()
        x = torch.randn(2, 3, args.img_size, args.img_size)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                logits = model(x)
        except RuntimeError as e:  # e.g. an input smaller than the net's downsampling
            raise UsageError(f'--img-size {args.img_size} does not fit {name}: {str(e).splitlines()[0]}') from None
        ok = bool(torch.isfinite(logits).all())
        print(f'forward {name}: input {tuple(x.shape)} -> logits {tuple(logits.shape)}, finite={ok}, '
              f'{time.perf_counter() - start:.2f}s')
        if not ok:
            return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv)
