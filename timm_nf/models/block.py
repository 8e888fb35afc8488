"""The normalizer-free pre-activation bottleneck block shared by NF-ResNets and NF-RegNets."""
import copy

import torch
from timm.layers import AvgPool2dSame, DropPath
from torch import nn

from ..layers import SqueezeExcite, WSConv2d, create_activation
from .fused import FusedNFBlock, FusedShortcut


class Shortcut(nn.Module):
    """Projection shortcut on act(x)·β: a WS 1x1 conv, strided (paper ResNet) or after a 2x2 avg-pool (RegNet, timm)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, dilation: int, avg_pool: bool, **conv_kwargs):
        super().__init__()
        if avg_pool and (stride > 1 or dilation > 1):
            if stride == 1:  # a dilated stage keeps its resolution: pool without stride, like timm
                self.pool = AvgPool2dSame(2, 1, ceil_mode=True, count_include_pad=False)
            else:
                self.pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
            stride = 1
        else:
            self.pool = nn.Identity()
        self.conv = WSConv2d(in_chs, out_chs, 1, stride=1 if avg_pool else stride, **conv_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))

    def fuse(self) -> FusedShortcut:
        return FusedShortcut(copy.deepcopy(self.pool), self.conv.fuse())


class NFBlock(nn.Module):
    """x + α · f(act(x) · β), with f = conv1x1 → act → conv3x3 → [SE] → act → conv1x1.

    β, α and γ are constants folded into the WS convs (see WSConv2d); the SkipInit gain is folded into the last conv
    at run time. What remains per block is exactly a plain ResNet block: convs, activations and one add.
    `fuse()` (timm's `reparameterize_model` calls it) returns the frozen inference block with everything folded.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            mid_chs: int,
            groups: int,
            stride: int,
            dilation: int,
            first_dilation: int,
            alpha: float,
            beta: float,
            gamma: float,
            act: str,
            se_hidden: int = 0,
            avg_pool_shortcut: bool = False,
            scalar_skipinit: bool = True,
            drop_path_rate: float = 0.0,
            drop_path_scale_by_keep: bool = False,
            var_floor: float = 0.0,
            var_eps: float = 0.0,
            padding: str = 'symmetric',
            device=None,
            dtype=None,
    ):
        super().__init__()
        ws = dict(var_floor=var_floor, var_eps=var_eps, padding=padding, device=device, dtype=dtype)
        # every conv of the block consumes an activation, so each carries γ; β scales the block input
        if in_chs != out_chs or stride != 1 or dilation != first_dilation:
            self.downsample = Shortcut(
                in_chs, out_chs, stride, dilation, avg_pool_shortcut, input_scale=gamma * beta, **ws)
        else:
            self.downsample = None
        # all out of place: act1's input is the identity shortcut; act2, act3 and the residual add would modify a
        # conv's output, which Opacus's backward hooks refuse, and in place they save no kernel and no saved tensor
        # in training (README, "Differentially private training"); the fused inference block runs them in place
        self.act_name = act
        self.act1 = create_activation(act)
        self.conv1 = WSConv2d(in_chs, mid_chs, 1, input_scale=gamma * beta, **ws)
        self.act2 = create_activation(act)
        self.conv2 = WSConv2d(
            mid_chs, mid_chs, 3, stride=stride, dilation=first_dilation, groups=groups, input_scale=gamma, **ws)
        self.attn = SqueezeExcite(mid_chs, se_hidden, device=device, dtype=dtype) if se_hidden else None
        self.act3 = create_activation(act)
        self.conv3 = WSConv2d(
            mid_chs, out_chs, 1, input_scale=gamma, output_scale=alpha, gain_init=1.0 if scalar_skipinit else 0.0, **ws)
        self.drop_path = DropPath(drop_path_rate, scale_by_keep=drop_path_scale_by_keep) \
            if drop_path_rate > 0 else nn.Identity()
        self.skipinit_gain = nn.Parameter(torch.zeros((), device=device, dtype=dtype)) if scalar_skipinit else None
        self.conv3._ws_out_gain = (self.skipinit_gain,)  # lets the network's shared WS pass fold it in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(x)
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.act2(out))
        if self.attn is not None:
            out = self.attn(out)
        out = self.drop_path(self.conv3(self.act3(out), out_gain=self.skipinit_gain))
        return out + shortcut

    def fuse(self) -> FusedNFBlock:
        """The frozen inference block: plain convs holding every folded scalar; the original is left untouched."""
        return FusedNFBlock(
            downsample=None if self.downsample is None else self.downsample.fuse(),
            act1=copy.deepcopy(self.act1),
            conv1=self.conv1.fuse(),
            act2=create_activation(self.act_name, inplace=True),
            conv2=self.conv2.fuse(),
            attn=copy.deepcopy(self.attn),
            act3=create_activation(self.act_name, inplace=True),
            conv3=self.conv3.fuse(self.skipinit_gain),
        )
