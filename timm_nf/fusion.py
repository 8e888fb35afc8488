"""Inference fusion: every weight-standardised conv becomes a frozen plain conv holding its folded weight and bias.

A normalizer-free net has no batch statistics, so at inference its weight standardisation, WS gains, γ, β, α and
SkipInit gains are constants. Each of our modules that holds them has a `fuse()` method (WSConv2d, NFBlock and the
shortcut), which is the interface timm's `reparameterize_model` (`--reparam` in its scripts) looks for; `fuse(model)`
here gives the same modules. timm's own NormFreeNet has no such methods: this module fuses it from outside, folding each
scalar into the neighbouring convolution wherever that is exact (a scalar on a conv's input or output; never through
a non-homogeneous activation such as SiLU).

Fused modules are snapshots (layers/frozen.py): they stay in eval mode and their parameters refuse gradients.
"""
import copy
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame, get_act_fn, get_act_layer
from timm.models import nfnet as timm_nfnet
from torch import nn

from ._arguments import require_type
from ._progress import progress_bar

from .layers import WSConv2d
from .layers.frozen import FrozenMixin, FusedConv2d, FusedConv2dSame, freeze_

__all__ = ['fuse', 'load_fused', 'FusedNormFreeNet', 'FusedNormFreeBlock']


class FusedNormFreeNet(FrozenMixin, timm_nfnet.NormFreeNet):
    """timm's NormFreeNet after `fuse()`. Built only by `fuse`."""


@torch.no_grad()
def _fuse_scaled_std_conv(conv: nn.Conv2d, input_scale: float = 1.0, output_scale: float = 1.0) -> nn.Conv2d:
    """timm's ScaledStdConv2d[Same], with scalars on its input or output folded in (both exact: the conv is linear)."""
    # the same batch_norm call timm's forward makes, so the folded weight is bit-for-bit the one timm convolves with
    weight = F.batch_norm(
        conv.weight.reshape(1, conv.out_channels, -1), None, None,
        weight=(conv.gain * conv.scale).view(-1), training=True, momentum=0., eps=conv.eps,
    ).reshape_as(conv.weight)
    weight = weight * (input_scale * output_scale)
    bias = None if conv.bias is None else conv.bias * output_scale
    same_pad = isinstance(conv, ScaledStdConv2dSame) and conv.same_pad
    return (FusedConv2dSame if same_pad else FusedConv2d).like(conv, weight, bias)


# ------------------------------------------------------------------------------------- timm's NormFreeNet

def _act_name(act_fn) -> str:
    for name in timm_nfnet._nonlin_gamma:
        try:
            if get_act_fn(name) is act_fn:
                return name
        except KeyError:  # a γ without an activation-function entry (e.g. 'identity')
            continue
    raise ValueError(f'cannot fuse a GammaAct around {act_fn!r}: expected one of {sorted(timm_nfnet._nonlin_gamma)}')


def _split_gamma(act: Optional[nn.Module]) -> Tuple[Optional[nn.Module], float]:
    """(activation without its output gain, that gain): a GammaAct's γ can move into the convs that consume it."""
    if isinstance(act, timm_nfnet.GammaAct):
        return get_act_layer(_act_name(act.act_fn))(inplace=act.inplace), float(act.gamma)
    return act, 1.0


def _scalar(value) -> float:
    return 1.0 if value is None else float(value.detach() if torch.is_tensor(value) else value)


class FusedNormFreeBlock(FrozenMixin, nn.Module):
    """timm's NormFreeBlock after fusion.

    β and every GammaAct γ fold into the convs reading the activation; α and the SkipInit gain fold into conv3 unless
    an SE follows it (its gate is not linear in its input), and then stay one scalar multiply. The attention gain of a
    mid-block SE folds into conv3 only through a ReLU (positively homogeneous); through SiLU it stays a multiply.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.act1, gamma1 = _split_gamma(block.act1)
        in_scale = block.beta * gamma1
        self.downsample = block.downsample
        if self.downsample is not None:
            self.downsample.conv = _fuse_scaled_std_conv(self.downsample.conv, input_scale=in_scale)
        self.conv1 = _fuse_scaled_std_conv(block.conv1, input_scale=in_scale)
        self.act2, gamma2 = _split_gamma(block.act2)
        self.conv2 = _fuse_scaled_std_conv(block.conv2, input_scale=gamma2)
        self.act2b, self.conv2b = None, None
        if block.conv2b is not None:
            self.act2b, gamma2b = _split_gamma(block.act2b)
            self.conv2b = _fuse_scaled_std_conv(block.conv2b, input_scale=gamma2b)
        self.attn = block.attn
        self.act3, gamma3 = _split_gamma(block.act3)
        conv3_in = gamma3
        self.attn_scale = 1.0
        if self.attn is not None:
            if type(self.act3) is nn.ReLU and block.attn_gain > 0:
                conv3_in *= block.attn_gain
            else:
                self.attn_scale = float(block.attn_gain)
        residual_scale = block.alpha * _scalar(block.skipinit_gain)
        self.attn_last = block.attn_last
        self.out_scale = 1.0
        if self.attn_last is None:
            self.conv3 = _fuse_scaled_std_conv(block.conv3, input_scale=conv3_in, output_scale=residual_scale)
        else:
            self.conv3 = _fuse_scaled_std_conv(block.conv3, input_scale=conv3_in)
            self.out_scale = float(block.attn_gain) * residual_scale
        self.drop_path = block.drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(x)
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv2(self.act2(self.conv1(out)))
        if self.conv2b is not None and self.act2b is not None:
            out = self.conv2b(self.act2b(out))
        if self.attn is not None:
            out = self.attn(out)
            if self.attn_scale != 1.0:
                out = out * self.attn_scale
        out = self.conv3(self.act3(out))
        if self.attn_last is not None:
            out = self.attn_last(out) * self.out_scale
        return self.drop_path(out) + shortcut


def _is_scaled_std_conv(module: nn.Module) -> bool:
    return isinstance(module, (ScaledStdConv2d, ScaledStdConv2dSame))


def _fuse_timm_stem(stem: nn.Sequential) -> None:
    """Fuses each stem conv; a GammaAct's γ moves into the conv right after it (a max-pool would not block it, but
    timm's stems never put one between an activation and a conv)."""
    names = list(stem._modules)
    pending = 1.0
    for idx, name in enumerate(names):
        module = stem._modules[name]
        if _is_scaled_std_conv(module):
            stem._modules[name] = _fuse_scaled_std_conv(module, input_scale=pending)
            pending = 1.0
        elif isinstance(module, timm_nfnet.GammaAct) and idx + 1 < len(names) \
                and _is_scaled_std_conv(stem._modules[names[idx + 1]]):
            stem._modules[name], pending = _split_gamma(module)


def _fuse_normfreenet(model: timm_nfnet.NormFreeNet) -> None:
    _fuse_timm_stem(model.stem)
    for stage in model.stages:
        for idx, block in enumerate(stage):
            stage[idx] = FusedNormFreeBlock(block)
    if _is_scaled_std_conv(model.final_conv):
        model.final_conv = _fuse_scaled_std_conv(model.final_conv)
    model.__class__ = FusedNormFreeNet


# ------------------------------------------------------------------------------------------------------ API

def check_fusable(model: nn.Module) -> bool:
    """True when `fuse` has work to do on `model`, False when it is fused already; TypeError naming `model` when it
    is not a net that fuses (cheap: run it on a model built on the meta device before building the real one)."""
    require_type('model', model, nn.Module, "a timm_nf NFNet or timm's NormFreeNet")
    modules = list(model.modules())
    has_ws = any(isinstance(m, WSConv2d) for m in modules)
    if not has_ws and not any(_is_scaled_std_conv(m) for m in modules) and any(isinstance(m, FrozenMixin)
                                                                                for m in modules):
        return False
    if not has_ws and not isinstance(model, timm_nfnet.NormFreeNet):
        hint = ' (fuse the model before torch.compile)' if hasattr(model, '_orig_mod') else ''
        raise TypeError(f"fuse() expects a timm_nf NFNet or timm's NormFreeNet, got {type(model).__name__}{hint}")
    return True


def fuse(model: nn.Module) -> nn.Module:
    """A frozen inference copy of `model` (our NFNet, or timm's NormFreeNet) with every WS conv folded, in eval mode.

    The copy computes the same outputs (within float rounding) with plain convolutions; the original is untouched.
    For our nets it walks the model as timm's `reparameterize_model` does (outermost `fuse()` first, without
    walking into what it replaced), so `--reparam`, `model.fuse()` and `fuse(model)` give the same modules and weights; `fuse` also freezes what has no `fuse()` (the classifier). Fusing an already
    fused model returns it unchanged. A progress bar shows on a terminal for deep nets.
    """
    if not check_fusable(model):
        return model  # fused already
    if isinstance(model, timm_nfnet.NormFreeNet):
        fused = copy.deepcopy(model)
        _fuse_normfreenet(fused)
        return freeze_(fused)
    fused = copy.deepcopy(model)
    fusible = [(parent, name) for parent in fused.modules() for name, child in parent.named_children()
               if hasattr(child, 'fuse')]
    # outermost first, as timm's walk does; a child of a replaced module is fused by its parent's fuse()
    replaced = set()
    for parent, name in progress_bar(fusible, desc='fusing', unit='module', show=None if len(fusible) > 100 else False):
        if id(parent) not in replaced:
            child = getattr(parent, name)
            replaced.update(id(m) for m in child.modules())
            setattr(parent, name, child.fuse())
    return freeze_(fused)


def __getattr__(name: str):
    # `from timm_nf.fusion import load_fused` keeps working without importing the file-format and checkpoint code
    # (and argparse with it) into every process that imports timm
    if name == 'load_fused':
        from .fused_file import load_fused
        return load_fused
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
