"""Parameters and MACs of a registered model at any input size, counted cheaply and exactly.

One forward on the meta device (no memory, no arithmetic) records each conv's and linear's weight size and output
grid at a probe size. In these nets every spatial reduction halves the grid with ceil rounding (3x3/2 convs with
padding 1, the 7x7/2 stem, 3x3/2 max-pool, 2x2/2 ceil-mode avg-pool), so a conv whose output is 1/r of the probe
has ceil(S/r)² outputs at size S, and global (squeeze-excite) convs have one. MACs = Σ outputs × weight size;
tests/test_hub.py checks this against torch's FlopCounterMode (FLOPs / 2) at odd sizes.
"""
import math
from typing import Dict, Iterable, List, Tuple
from unittest import mock

import torch
import timm
from torch import nn

from timm_nf.layers.ws_conv import WSConv2d

_PROBE = 256  # a multiple of the largest reduction (32) that still leaves stage-5 grids (8) apart from global (1)


def _plain_weight(conv: WSConv2d, out_gain=None, with_output_scale: bool = True):
    # standardisation rescales weights, not activations: no MACs, same shapes, and 5x faster to trace on meta
    return conv.weight, conv.bias


def _layers(name: str, model_kwargs: Dict) -> Tuple[int, List[Tuple[int, int]]]:
    """(params, [(weight numel, reduction or 0 for global/linear)]) from one meta forward at the probe size."""
    model = timm.create_model(name, device='meta', **model_kwargs).eval()
    layers: List[Tuple[int, int]] = []

    def record(module: nn.Module, _, out: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            layers.append((module.weight.numel(), 0))
        else:  # conv MACs = output pixels × out channels × in channels/groups × k² = pixels × weight numel
            grid = out.shape[-1]
            layers.append((module.weight.numel(), 0 if grid == 1 else _PROBE // grid))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad(), mock.patch.object(WSConv2d, 'standardized_weight', _plain_weight):
        model(torch.empty(1, model.in_chans, _PROBE, _PROBE, device='meta'))  # in_chans: the checkpoint's, not the cfg's
    for hook in hooks:
        hook.remove()
    return sum(p.numel() for p in model.parameters()), layers


def params_and_macs(name: str, sizes: Iterable[int], **model_kwargs) -> Tuple[int, Dict[int, int]]:
    """Parameter count and {size: MACs per image} for square inputs of each size."""
    params, layers = _layers(name, model_kwargs)
    macs = {}
    for size in sizes:
        macs[size] = sum(numel * (math.ceil(size / r) ** 2 if r else 1) for numel, r in layers)
    return params, macs
