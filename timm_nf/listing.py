"""`timm-nf list`: the registered families with parameter counts, and a forward pass through each listed model."""
import argparse
import time
from typing import List, Optional

import timm
import torch

from ._arguments import BadArgument, first_line
from ._command_line import UsageError, check_model_name, command_main, description, image_size
from ._memory import check_fits, inference_bytes
from .models import MODEL_CONFIGS
from .spp.inputs import create_at_size

PROG = 'timm-nf list'
BATCH = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('pattern', nargs='?', default='*nf_*', help='name filter (default: every timm-nf model)')
    parser.add_argument('--forward', default='dm_nf_regnet_b0,nf_resnet26',
                        help="comma-separated models to run a forward pass on ('none' to skip)")
    parser.add_argument('--img-size', type=image_size, default=128,
                        help='input size of the forward pass (timm models built for one size, such as ViTs, are '
                             'built for this one)')


def run(args: argparse.Namespace) -> int:
    names = [n for n in timm.list_models(args.pattern) if n in MODEL_CONFIGS]
    if not names:
        raise UsageError(f'no timm-nf model matches {args.pattern!r}: expected a pattern such as dm_nf_* or '
                         f'nf_regnet_*')
    forward = [] if args.forward == 'none' else [n for n in args.forward.split(',') if n]
    for name in forward:
        check_model_name(name)
    for name in forward:  # before anything is printed: each fits the size and the memory
        _rehearse(name, args.img_size)
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
        model = create_at_size(name, args.img_size).eval()
        x = torch.randn(BATCH, model.pretrained_cfg['input_size'][0], args.img_size, args.img_size)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                logits = model(x)
        except (RuntimeError, ValueError, AssertionError) as e:  # a model that could not be checked on meta
            raise UsageError(f'--img-size {args.img_size} does not fit {name}: {first_line(e)[:200]}') from None
        ok = bool(torch.isfinite(logits).all())
        print(f'forward {name}: input {tuple(x.shape)} -> logits {tuple(logits.shape)}, finite={ok}, '
              f'{time.perf_counter() - start:.2f}s')
        if not ok:
            return 1
    return 0


def _rehearse(name: str, img_size: int) -> None:
    """The forward pass on the meta device (shapes only): the size fits the model, and the memory it needs."""
    try:
        with torch.device('meta'):
            model = create_at_size(name, img_size).eval()
    except BadArgument:
        raise
    except Exception:  # noqa: BLE001  a timm model that cannot be built without memory is checked as it runs
        return
    shape = (BATCH, model.pretrained_cfg['input_size'][0], img_size, img_size)
    try:
        needed = inference_bytes(model, shape)
    except (RuntimeError, ValueError, AssertionError) as e:  # e.g. an input smaller than the net's downsampling
        raise UsageError(f'--img-size {img_size} does not fit {name}: {first_line(e)[:200]}') from None
    check_fits(needed, f'a forward pass of {name} at {img_size} px', 'lower --img-size')


def main(argv: Optional[List[str]] = None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv, options={'img_size': '--img-size'})
