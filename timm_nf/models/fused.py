"""What an NFBlock becomes after fusion: convs, activations, [SE] and one add, every scalar inside the conv weights."""
from typing import Optional

import torch
from torch import nn

from ..layers.frozen import FrozenMixin, freeze_


class FusedShortcut(FrozenMixin, nn.Module):
    """The projection shortcut with its WS conv folded: [avg-pool →] plain conv."""

    def __init__(self, pool: nn.Module, conv: nn.Module):
        super().__init__()
        self.pool = pool
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class FusedNFBlock(FrozenMixin, nn.Module):
    """act → [shortcut conv] ; conv → act → conv → [SE] → act → conv → + shortcut.

    β, γ, α, the WS gains and the SkipInit gain are all inside the plain convs' weights and biases (NFBlock.fuse).
    """

    def __init__(self, downsample: Optional[nn.Module], act1: nn.Module, conv1: nn.Module, act2: nn.Module,
                 conv2: nn.Module, attn: Optional[nn.Module], act3: nn.Module, conv3: nn.Module):
        super().__init__()
        self.downsample = downsample
        self.act1 = act1
        self.conv1 = conv1
        self.act2 = act2
        self.conv2 = conv2
        self.attn = attn
        self.act3 = act3
        self.conv3 = conv3
        freeze_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(x)
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv2(self.act2(self.conv1(out)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.conv3(self.act3(out))
        return out.add_(shortcut)  # in place, as in NFBlock
