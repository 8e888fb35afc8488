"""Why NF nets exist: without batch statistics an example's output does not depend on the rest of its batch, so

- in training mode (dropout and stochastic depth off) a batch's outputs are its examples' outputs one at a time, and
- gradients accumulated over k micro-batches are the whole batch's gradient,

for every registered family, on both WS paths (per conv, and the shared pass). BatchNorm fails both, which the last
test shows with the same checks, so they can fail.
"""
import contextlib

import pytest
import timm
import torch
import torch.nn.functional as F

from timm_nf.layers.ws_group import shared_pass_on

from helpers import perturb_, rel_err

# one small variant per family (narrow widths, one block per stage: every block structure the family has)
TINY = dict(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, num_classes=5, drop_rate=0.0,
            drop_path_rate=0.0, dtype=torch.float64)
FAMILIES = ['dm_nf_resnet50', 'dm_nf_regnet_b0', 'nf_resnet50', 'nf_regnet_b0']
BATCH, MICRO = 6, 2
SIZE = 34  # even: the dm_ family's SAME padding is asymmetric here


def _model(name: str) -> torch.nn.Module:
    model = perturb_(timm.create_model(name, **TINY))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith('skipinit_gain') or n == 'head.fc.weight':  # residual branches and logits away from 0
                p.normal_(0.5 if n.endswith('skipinit_gain') else 0.0, 0.2)
    return model.train()


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(BATCH, 3, SIZE, SIZE, generator=gen, dtype=torch.float64),
            torch.randint(0, 5, (BATCH,), generator=gen))


def _one_at_a_time_error(model) -> float:
    x, _ = _data()
    with torch.no_grad():
        return rel_err(torch.cat([model(x[i:i + 1]) for i in range(BATCH)]), model(x))


def _accumulation_error(model) -> float:
    """Largest relative difference over parameters between the whole batch's gradient and the sum over micro-batches
    (the loss is a sum over examples, so the two are the same quantity)."""
    x, y = _data(1)
    params = [p for p in model.parameters() if p.requires_grad]
    whole = torch.autograd.grad(F.cross_entropy(model(x), y, reduction='sum'), params)
    accumulated = [torch.zeros_like(p) for p in params]
    for i in range(0, BATCH, MICRO):
        loss = F.cross_entropy(model(x[i:i + MICRO]), y[i:i + MICRO], reduction='sum')
        for acc, g in zip(accumulated, torch.autograd.grad(loss, params)):
            acc += g
    return max(rel_err(a, w) for a, w in zip(accumulated, whole) if w.abs().max() > 0)


@pytest.mark.parametrize('shared_pass', [False, True], ids=['per_conv', 'shared_pass'])
@pytest.mark.parametrize('name', FAMILIES)
def test_no_example_depends_on_its_batch(name, shared_pass):
    model = _model(name)
    with shared_pass_on('cpu') if shared_pass else contextlib.nullcontext():
        assert _one_at_a_time_error(model) < 1e-12
        assert _accumulation_error(model) < 1e-12


def test_batchnorm_fails_both():
    # timm's pre-activation BatchNorm ResNet in the same tiny shape
    model = timm.create_model('resnetv2_50', layers=TINY['depths'], channels=TINY['widths'], stem_chs=16,
                              num_classes=5).double().train()
    assert _one_at_a_time_error(model) > 1e-2
    assert _accumulation_error(model) > 1e-2
