"""Shared helpers for the tests: timm's own NormFreeNet as the reference, weights that are not at their init, and
torch's thread count."""
import contextlib

import torch
from timm.models import nfnet as timm_nfnet

TIMM_NAMES = ['nf_resnet26', 'nf_resnet50', 'nf_resnet101'] + [f'nf_regnet_b{i}' for i in range(6)]
DM_NAMES = [f'dm_nf_resnet{d}' for d in (50, 101, 152, 200, 288)] + [f'dm_nf_regnet_b{i}' for i in range(9)]
OUR_TIMM_FLAVOUR = TIMM_NAMES + ['nf_resnet152', 'nf_resnet200', 'nf_resnet288'] + [f'nf_regnet_b{i}' for i in (6, 7, 8)]
ALL_NAMES = DM_NAMES + OUR_TIMM_FLAVOUR


def timm_reference(name: str, **kwargs) -> torch.nn.Module:
    """timm's own NormFreeNet for `name`, built from timm.models.nfnet directly (our registration replaced it)."""
    return timm_nfnet.NormFreeNet(timm_nfnet.model_cfgs[name], **kwargs)


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Move gains, biases and SkipInit gains away from their 1/0 init so equivalences are not trivially met."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith('gain'):
            p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.75)
        elif name.endswith('bias'):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def one_error_line(err: str, prog: str) -> str:
    """The single stderr line of a command's bad-input exit (`PROG: error: ...`, no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: ') and 'Traceback' not in err, err
    return lines[0]


@contextlib.contextmanager
def torch_threads(count: int = 1):
    """torch's thread count set for a block, restored after. One thread for the small training runs: on a shared
    2-core machine a second OpenMP thread per process makes their small steps up to 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
