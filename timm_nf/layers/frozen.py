"""Fused modules are inference snapshots: they stay in eval mode and their parameters never take gradients.

A fused module holds folded weights that no longer follow the trainable parameters they came from, so training it
would silently train something else. Yet a frozen fused backbone or teacher inside a trainable parent is normal, so
the parent's `.train()` must keep working: the fused part stays in eval mode and says so once per process.
"""
import warnings
from typing import Optional

import torch
from timm.layers import Conv2dSame, register_notrace_module
from torch import nn

_told_about_train = False


def _refuse_gradients(what: str) -> RuntimeError:
    return RuntimeError(f'{what} belongs to a fused inference module and cannot take gradients: its weights are a '
                        'snapshot of the folded standardised weights. Train the original (unfused) model and fuse '
                        'it again.')


class FrozenParameter(nn.Parameter):
    """A Parameter that refuses `requires_grad_(True)` and `requires_grad = True` with an explanation."""

    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad:
            raise _refuse_gradients('This parameter')
        return super().requires_grad_(False)

    @property
    def requires_grad(self) -> bool:
        return torch._C.TensorBase.requires_grad.__get__(self)

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        if requires_grad:
            raise _refuse_gradients('This parameter')
        torch._C.TensorBase.requires_grad.__set__(self, False)


def freeze_(module: nn.Module) -> nn.Module:
    """Turn every parameter of `module` into a FrozenParameter (same data, no gradients), in place."""
    for owner in module.modules():
        for name, param in list(owner._parameters.items()):
            if param is not None and not isinstance(param, FrozenParameter):
                owner._parameters[name] = FrozenParameter(param.detach(), requires_grad=False)
    return module.eval()


def keep_eval(module: nn.Module) -> nn.Module:
    """What `.train()` does to a fused module: eval mode for it and its children, and a warning once per process."""
    global _told_about_train
    if not _told_about_train:
        _told_about_train = True
        warnings.warn(f'{type(module).__name__} is a fused inference module: it stays in eval mode when it or its '
                      'parent is put in training mode (this is said once per process)', UserWarning, stacklevel=3)
    return nn.Module.train(module, False)


class FrozenMixin:
    """For fused module classes: `.train()` keeps eval mode (and says so once), `.requires_grad_(True)` is refused."""

    def train(self, mode: bool = True):
        return keep_eval(self) if mode else super().train(False)

    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad:
            raise _refuse_gradients(type(self).__name__)
        return super().requires_grad_(False)


class FusedConv2d(FrozenMixin, nn.Conv2d):
    """A plain conv holding a folded weight and bias: what a WS conv becomes after fusion."""

    @classmethod
    def like(cls, conv: nn.Conv2d, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> 'FusedConv2d':
        """A fused conv with `conv`'s geometry holding (weight, bias), in the weight's memory format."""
        fused = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=bias is not None, device='meta')
        with torch.no_grad():  # empty_like keeps the source weight's memory format (channels_last stays so)
            fused.weight = nn.Parameter(torch.empty_like(conv.weight).copy_(weight))
            fused.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        return freeze_(fused)


@register_notrace_module  # as timm registers Conv2dSame: its padding depends on the input's size
class FusedConv2dSame(FusedConv2d, Conv2dSame):
    """A fused conv that pads as TensorFlow's 'SAME' at run time (timm's Conv2dSame): a fused strided SAME WS conv."""
