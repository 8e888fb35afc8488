"""`timm-nf list`: the registered families with parameter counts, and a forward pass through each listed model."""
import argparse
import time
from typing import List, Optional

import torch
import timm

from .models import MODEL_CONFIGS


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='timm-nf list', description=__doc__)
    parser.add_argument('pattern', nargs='?', default='*nf_*', help='name filter (default: every timm-nf model)')
    parser.add_argument('--forward', default='dm_nf_regnet_b0,nf_resnet26',
                        help="comma-separated models to run a forward pass on ('none' to skip)")
    parser.add_argument('--img-size', type=int, default=128)
    args = parser.parse_args(argv)

    names = [n for n in timm.list_models(args.pattern) if n in MODEL_CONFIGS]
    if not names:
        parser.error(f'no timm-nf model matches {args.pattern!r}; try dm_nf_* or nf_regnet_*')
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

    forward = [] if args.forward == 'none' else [n for n in args.forward.split(',') if n]
    for name in forward:
        model = timm.create_model(name).eval()
        x = torch.randn(2, 3, args.img_size, args.img_size)
        start = time.perf_counter()
        with torch.no_grad():
            logits = model(x)
        ok = bool(torch.isfinite(logits).all())
        print(f'forward {name}: input {tuple(x.shape)} -> logits {tuple(logits.shape)}, finite={ok}, '
              f'{time.perf_counter() - start:.2f}s')
        if not ok:
            return 1
    return 0
