"""Where to measure in each supported family: the stem output, the residual blocks, the end of each residual branch.

An SPP needs three places per net: the stem output (index 0), each residual block's output (after the skip add), and
the end of its residual branch before stochastic depth, the SkipInit gain, α and the add. Each family hides these in
different modules, so this file knows them by block type and nothing else in timm_nf.spp does.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.models import nfnet as timm_nfnet
from timm.models import resnet as timm_resnet
from timm.models import resnetv2 as timm_resnetv2
from torch import nn

from ..models.block import NFBlock
from ..models.net import NFNet

# (module whose forward output to read, its (inputs, output) → the branch-end variance, averaged over channels)
BranchProbe = Tuple[nn.Module, Callable[[Tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]]

SUPPORTED = ('timm_nf NFNet', "timm's NormFreeNet (nf_*, nfnet_*)", "timm's ResNet (resnet*)",
             "timm's ResNetV2 (resnetv2_*)")


@dataclass
class Site:
    """One residual block: its place in the net and, where the family allows, how to read its branch end."""
    stage: int              # 1-based, as timm's feature indices: 0 is the stem
    block: int              # 0-based within the stage
    module: nn.Module       # its forward output is the block output
    branch: Optional[BranchProbe]


@dataclass
class Anatomy:
    stem: nn.Module         # its forward output is index 0
    sites: List[Site]


def channel_var(x: torch.Tensor) -> torch.Tensor:
    """Average over channels of the biased variance over N, H, W."""
    return torch.var(x.float(), dim=(0, 2, 3), correction=0).mean()


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
    return block.conv3, lambda inputs, out: channel_var(out)


def _resnet_branch(block: nn.Module) -> Optional[BranchProbe]:
    last = getattr(block, 'se', None) or getattr(block, 'bn3', None) or getattr(block, 'bn2', None)
    return (last, lambda inputs, out: channel_var(out)) if last is not None else None


def _preact_branch(block: nn.Module) -> Optional[BranchProbe]:
    if isinstance(block, timm_resnetv2.Bottleneck):  # ResNetV2's post-activation block ends in a norm
        last = block.norm3
    else:
        last = getattr(block, 'conv3', None) or getattr(block, 'conv2', None)
    return (last, lambda inputs, out: channel_var(out)) if last is not None else None


def _sites(stages, branch_of: Callable[[nn.Module], Optional[BranchProbe]]) -> List[Site]:
    return [Site(stage_idx, block_idx, block, branch_of(block))
            for stage_idx, stage in enumerate(stages, start=1) for block_idx, block in enumerate(stage)]


def find_anatomy(model: nn.Module) -> Anatomy:
    """The stem and residual blocks of `model`; ValueError naming the supported families for anything else."""
    if isinstance(model, NFNet):
        return Anatomy(model.stem, _sites(model.stages, _nf_block_branch))
    if isinstance(model, timm_nfnet.NormFreeNet):
        return Anatomy(model.stem, _sites(model.stages, _normfree_block_branch))
    if isinstance(model, timm_resnet.ResNet):
        stages = [getattr(model, f'layer{i}') for i in range(1, 5)]
        return Anatomy(model.maxpool, _sites(stages, _resnet_branch))
    if isinstance(model, timm_resnetv2.ResNetV2):
        return Anatomy(model.stem, _sites([stage.blocks for stage in model.stages], _preact_branch))
    raise ValueError(f'cannot find the residual blocks of a {type(model).__name__}: signal propagation plots '
                     f'support {", ".join(SUPPORTED)}')
