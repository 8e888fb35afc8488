"""Differentially private training with Opacus: exact per-example gradients for every parameter, in every mode.

Opacus (github.com/meta-pytorch/opacus, opacus/grad_sample/) hooks every module that owns a trainable parameter and
asks a grad sampler registered for its exact type for the per-example gradients; a module without one is re-run
per example under vmap (`grad_sample/functorch.py`). For our nets that re-run would be slow, and wrong or failing
where a module's parameter acts through a child: the paper-exact NFBlock owns the SkipInit gain that its last conv
applies, so Opacus would re-run the whole block (stochastic depth included, which vmap refuses) and, in 'functorch'
mode, count its convs twice. Here:
- WSConv2d gets a sampler (layers/ws_per_sample.py): per-example gradients of W, gain, bias and of the parent block's
  SkipInit gain, which the conv applies (`out_gain`), in a few batched ops per conv;
- NFBlock gets a sampler that adds nothing, so that Opacus descends into the block and its SkipInit gain is counted
  once, by its last conv's sampler;
- in 'functorch' mode (`force_functorch`: every hooked module re-run under vmap) both answer with the same samplers
  instead: Opacus reads each module's `ft_compute_sample_grad`, which these classes provide;
- 'ghost' mode takes the same samplers (fast gradient clipping: per-example norms from per-example gradients);
  'ew' mode (torch's ExpandedWeights) goes through WSConv2d's own ExpandedWeights path (layers/ws_conv.py).
The squeeze-excite's plain convs and the classifier keep Opacus's own samplers.

`register()` runs when timm_nf is imported after opacus, or when opacus is imported after timm_nf
(timm_nf/__init__.py): the user imports nothing beyond timm and opacus.
"""
import functools
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from .layers import WSConv2d
from .layers.ws_per_sample import ws_conv_grad_samples
from .models.block import NFBlock

_registered = False


def _ws_conv_samples(conv: WSConv2d, activations: Sequence[torch.Tensor],
                     backprops: torch.Tensor) -> Dict[torch.Tensor, torch.Tensor]:
    """Opacus grad sampler of a WS conv: its own parameters and the out gain it was last called with."""
    return ws_conv_grad_samples(conv, activations[0], backprops, conv._ws_out_gain[0])


_NO_GAIN_SAMPLE = ('Opacus: the SkipInit gain of an NFBlock got no per-example gradient: its last conv was not called '
                   'with it (NFBlock.forward passes it as conv3(x, out_gain=...))')


def _block_samples(block: NFBlock, activations, backprops) -> Dict[torch.Tensor, torch.Tensor]:
    """Opacus grad sampler of an NFBlock: nothing, its last conv's sampler has given the SkipInit gain's."""
    gain = block.skipinit_gain
    if gain is not None and gain.requires_grad and not hasattr(gain, '_current_grad_sample'):
        raise RuntimeError(_NO_GAIN_SAMPLE)
    return {}


# ------------------------------------------------------------------------------------------- functorch mode

def _functorch_answer(samples_fn, module: nn.Module, params: Sequence[torch.Tensor], activations: torch.Tensor,
                      backprops: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """What Opacus's functorch mode expects of `module.ft_compute_sample_grad(params, activations, backprops)`: one
    per-example gradient per parameter of `params` (the module's, recursively). Gradients of parameters the module
    does not own (a block's SkipInit gain, from its conv) are parked on the parameter for their owner to answer."""
    samples = samples_fn(module, [activations], backprops) if samples_fn is not None else {}
    own, direct = {id(p) for p in params}, {id(p) for p in module.parameters(recurse=False)}
    for p, grad in samples.items():
        if id(p) not in own:
            parked = getattr(p, '_timm_nf_grad_sample', None)
            p._timm_nf_grad_sample = grad if parked is None else parked + grad
    answer = []
    for p in params:
        grad = samples.get(p)
        if grad is None:
            grad = p.__dict__.pop('_timm_nf_grad_sample', None)
        if grad is None and id(p) in direct and p.requires_grad:  # a block's SkipInit gain that no conv applied
            raise RuntimeError(_NO_GAIN_SAMPLE)
        if grad is None:  # a child module's parameter: its own hook has counted it
            grad = torch.zeros((), dtype=p.dtype, device=p.device).expand(len(activations), *p.shape)
        answer.append(grad)
    return tuple(answer)


class _FunctorchMode:
    """The `ft_compute_sample_grad` attribute of a class: Opacus's functorch mode sets it to its vmap re-run of the
    module (opacus/grad_sample/functorch.py, `prepare_layer`) and calls it; this keeps the module's exact sampler
    instead. Per instance: missing until Opacus sets it, gone when Opacus deletes it (remove_hooks). A subclass, whose
    forward may differ, keeps Opacus's own re-run as a plain attribute."""

    def __init__(self, cls: type, samples_fn):
        self.cls = cls
        self.samples_fn = samples_fn

    def __get__(self, module, owner=None):
        if module is None:
            return self
        if type(module) is not self.cls:
            if 'ft_compute_sample_grad' not in module.__dict__:
                raise AttributeError('ft_compute_sample_grad')
            return module.__dict__['ft_compute_sample_grad']
        if not module.__dict__.get('_timm_nf_functorch_mode', False):
            raise AttributeError('ft_compute_sample_grad')
        return functools.partial(_functorch_answer, self.samples_fn, module)

    def __set__(self, module, value):
        if type(module) is not self.cls and self.cls is NFBlock:
            raise RuntimeError(
                f'Opacus: {type(module).__name__} subclasses NFBlock, so it has no grad sampler of its own, and '
                f're-running it per example would count its convs twice: register one for it with '
                f'opacus.grad_sample.register_grad_sampler, as timm_nf/privacy.py does for NFBlock')
        if type(module) is not self.cls:
            module.__dict__['ft_compute_sample_grad'] = value
        else:
            module.__dict__['_timm_nf_functorch_mode'] = True

    def __delete__(self, module):
        key = 'ft_compute_sample_grad' if type(module) is not self.cls else '_timm_nf_functorch_mode'
        if key not in module.__dict__:
            raise AttributeError('ft_compute_sample_grad')
        del module.__dict__[key]


def register() -> None:
    """Register the samplers with Opacus (idempotent; imports opacus)."""
    global _registered
    if _registered:
        return
    from opacus.grad_sample import register_grad_sampler

    register_grad_sampler(WSConv2d)(_ws_conv_samples)
    register_grad_sampler(NFBlock)(_block_samples)
    WSConv2d.ft_compute_sample_grad = _FunctorchMode(WSConv2d, _ws_conv_samples)
    NFBlock.ft_compute_sample_grad = _FunctorchMode(NFBlock, None)
    _registered = True
