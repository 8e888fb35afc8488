"""Squeeze-and-Excite with the NF nets' ×2 gate."""
import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """mean-pool → fc1 → ReLU → fc2 → 2·sigmoid, multiplied into the input.

    fc1/fc2 are 1x1 convs so the state_dict matches timm's SEModule. The paper's ×2 (it undoes the sigmoid's 0.5 at
    init) multiplies the N×C×1×1 gate instead of the full activation, which is exact: ×2 commutes with rounding.
    """

    def __init__(self, channels: int, hidden: int, device=None, dtype=None):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, device=device, dtype=dtype)
        self.fc2 = nn.Conv2d(hidden, channels, 1, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(F.relu(self.fc1(s)))
        return x * (2.0 * torch.sigmoid(s))
