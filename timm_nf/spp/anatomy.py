"""Where to measure in a timm model: its residual blocks, grouped in stages, and where the block structure is known,
the end of each residual branch.

An SPP needs, per residual block, its output (after the skip add) and the end of its residual branch (before
stochastic depth, any SkipInit gain or layer scale, α and the add); index 0 is the input of the first block (the stem
output). The blocks are found by timm's naming conventions (timm_nf/spp/conventions.py) or by a `blocks` pattern;
the branch ends are known by block type, here, and nowhere else in timm_nf.spp. Blocks of other types get no
residual-branch value.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.models import _efficientnet_blocks as timm_effnet
from timm.models import convnext as timm_convnext
from timm.models import nfnet as timm_nfnet
from timm.models import regnet as timm_regnet
from timm.models import resnet as timm_resnet
from timm.models import resnetv2 as timm_resnetv2
from timm.models import vision_transformer as timm_vit
from torch import nn

from ..models.block import NFBlock
from .conventions import find_stages

# (module whose forward hook reads the branch end, its (inputs, output) → the branch-end variance, averaged over
# channels)
BranchProbe = Tuple[nn.Module, Callable[[Tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]]

# the block types whose residual branch end is known: timm_nf's NF block and these timm blocks
BRANCH_KNOWN = ('timm_nf NFBlock', "timm's NormFreeBlock", 'ResNet BasicBlock/Bottleneck (and any block of a timm '
                'ResNet with se/bn3/bn2)', 'ResNetV2 blocks', 'RegNet Bottleneck/PreBottleneck', 'ConvNeXtBlock',
                'EfficientNet/MobileNet DepthwiseSeparableConv, InvertedResidual, EdgeResidual, '
                'UniversalInvertedResidual (where they have a skip)', 'ViT Block (its MLP branch)')


@dataclass
class Site:
    """One residual block: its place in the net and, where the block type allows, how to read its branch end."""
    stage: int              # 1-based, as timm's feature indices: 0 is the stem
    block: int              # 0-based within the stage
    module: nn.Module       # its forward output is the block output
    branch: Optional[BranchProbe]


@dataclass
class Anatomy:
    sites: List[Site]       # in forward order; index 0 of the SPP is the input of sites[0]
    channels_last: bool     # 4-D activations are (N, H, W, C) (timm's output_fmt 'NHWC', e.g. Swin)


def reduce_dims(x: torch.Tensor, channels_last: bool = False) -> Tuple[int, ...]:
    """The dims to average over, leaving channels: (N, C, H, W) → N, H, W; tokens (N, L, C) → N, L (every token is a
    position, class tokens included); (N, C) → N."""
    if x.ndim == 3 or (x.ndim == 4 and channels_last):
        return tuple(range(x.ndim - 1))
    if x.ndim in (2, 4):
        return (0,) + tuple(range(2, x.ndim))
    raise ValueError(f'cannot take channel statistics of a {x.ndim}-d activation of shape {tuple(x.shape)}: expected '
                     '(N, C, H, W), (N, H, W, C) or tokens (N, L, C)')


def channel_var(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Average over channels of the biased variance over every other dim."""
    return torch.var(x.float(), dim=reduce_dims(x, channels_last), correction=0).mean()


def _output_var(module: Optional[nn.Module], channels_last: bool = False) -> Optional[BranchProbe]:
    return (module, lambda inputs, out: channel_var(out, channels_last)) if module is not None else None


def _input_var(module: nn.Module, channels_last: bool = False) -> BranchProbe:
    return module, lambda inputs, out: channel_var(inputs[0], channels_last)


def _nf_block_branch(block: NFBlock) -> BranchProbe:
    conv3 = block.conv3

    def branch_var(inputs, out):
        # conv3 folds α and the SkipInit gain into its weight AND bias, so out = scale · branch end exactly
        scale = conv3.output_scale
        if block.skipinit_gain is not None:
            scale = scale * float(block.skipinit_gain)
        if scale != 0.0:
            return channel_var(out) / (scale * scale)
        weight, bias = conv3.standardized_weight(with_output_scale=False)  # a zero gain erased the branch: recompute
        return channel_var(F.conv2d(inputs[0], weight, bias, conv3.stride, conv3.padding, conv3.dilation, conv3.groups))

    return conv3, branch_var


def _normfree_block_branch(block: 'timm_nfnet.NormFreeBlock') -> BranchProbe:
    if block.attn_last is not None:  # SE/ECA after conv3, then ×attn_gain outside any module
        gain = block.attn_gain
        return block.attn_last, lambda inputs, out: channel_var(out) * (gain * gain)
    return _output_var(block.conv3)


def _resnet_branch(block: nn.Module) -> Optional[BranchProbe]:
    return _output_var(getattr(block, 'se', None) or getattr(block, 'bn3', None) or getattr(block, 'bn2', None))


def _preact_branch(block: nn.Module) -> Optional[BranchProbe]:
    if isinstance(block, timm_resnetv2.Bottleneck):  # ResNetV2's post-activation block ends in a norm
        return _output_var(block.norm3)
    return _output_var(getattr(block, 'conv3', None) or getattr(block, 'conv2', None))


def _regnet_branch(block: nn.Module) -> Optional[BranchProbe]:
    # downsample None: the block has no shortcut at all, so there is no residual branch
    return _output_var(block.conv3) if block.downsample is not None else None


def _convnext_branch(block: 'timm_convnext.ConvNeXtBlock') -> BranchProbe:
    # the MLP output, before the layer scale γ: (N, C, H, W) with conv_mlp, else (N, H, W, C)
    return _output_var(block.mlp, channels_last=not block.use_conv_mlp)


def _effnet_branch(last: str) -> Callable[[nn.Module], Optional[BranchProbe]]:
    return lambda block: _output_var(getattr(block, last)) if block.has_skip else None


def _uir_branch(block: nn.Module) -> Optional[BranchProbe]:
    return _input_var(block.layer_scale) if block.has_skip else None  # before the layer scale


def _vit_branch(block: nn.Module) -> BranchProbe:
    return _output_var(block.mlp)  # the block's second residual branch, before ls2 and drop_path2; tokens (N, L, C)


# block type → its branch-end probe; the first matching entry wins (subclasses such as CondConvResidual follow)
_BRANCHES: Sequence[Tuple[type, Callable[[nn.Module], Optional[BranchProbe]]]] = (
    (NFBlock, _nf_block_branch),
    (timm_nfnet.NormFreeBlock, _normfree_block_branch),
    (timm_resnet.BasicBlock, _resnet_branch),
    (timm_resnet.Bottleneck, _resnet_branch),
    (timm_resnetv2.PreActBasic, _preact_branch),
    (timm_resnetv2.PreActBottleneck, _preact_branch),
    (timm_resnetv2.Bottleneck, _preact_branch),
    (timm_regnet.Bottleneck, _regnet_branch),
    (timm_regnet.PreBottleneck, _regnet_branch),
    (timm_convnext.ConvNeXtBlock, _convnext_branch),
    (timm_effnet.DepthwiseSeparableConv, _effnet_branch('bn2')),
    (timm_effnet.InvertedResidual, _effnet_branch('bn3')),
    (timm_effnet.EdgeResidual, _effnet_branch('bn2')),
    (timm_effnet.UniversalInvertedResidual, _uir_branch),
    (timm_vit.Block, _vit_branch),
)


def branch_probe(model: nn.Module, block: nn.Module) -> Optional[BranchProbe]:
    """How to read the end of `block`'s residual branch; None where the block type is not known (or has no skip)."""
    for block_type, probe in _BRANCHES:
        if isinstance(block, block_type):
            return probe(block)
    if isinstance(model, timm_resnet.ResNet):  # its other blocks (ResNeSt, Res2Net, ...) still end in se/bn3/bn2
        return _resnet_branch(block)
    return None


def find_anatomy(model: nn.Module, blocks: Optional[str] = None) -> Anatomy:
    """The residual blocks of `model`, by timm's conventions or named by the `blocks` pattern; ValueError when
    neither finds any (the message names the pattern option)."""
    stages = find_stages(model, blocks)
    sites = [Site(stage_idx, block_idx, module, branch_probe(model, module))
             for stage_idx, stage in enumerate(stages, start=1) for block_idx, (_, module) in enumerate(stage)]
    return Anatomy(sites, channels_last=getattr(model, 'output_fmt', 'NCHW') == 'NHWC')
