"""The two families' padding: timm's symmetric padding, or TensorFlow's 'SAME', as the reference code pads.

'SAME' (DeepMind's nfnets pass padding='SAME' to every Haiku conv and pool) pads each spatial side of n pixels by
max((ceil(n/s) - 1)·s + (k - 1)·d + 1 - n, 0) in total, the smaller half before. A stride-1 conv with an odd kernel
gets the same amount on both sides at any size, so it pads statically, as timm's does; a strided conv or pool pads
by an amount that depends on the input size (7x7/2 at an even size: 2 before, 3 after; 3x3/2: 0 and 1), so it pads
the input at run time with timm's `pad_same` (one extra kernel per strided layer in a forward). timm.layers has every
helper; this file only says which layer needs which.
"""
from typing import Tuple

from timm.layers import create_pool2d
from timm.layers.padding import get_padding_value
from torch import nn

PADDINGS = ('symmetric', 'same')


def _timm_padding(padding: str) -> str:
    if padding not in PADDINGS:  # timm would read any other string as symmetric
        raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}')
    return 'same' if padding == 'same' else ''  # timm's '' is its symmetric ((s - 1) + d·(k - 1)) // 2


def conv_padding(padding: str, kernel_size: int, stride: int = 1, dilation: int = 1) -> Tuple[int, bool]:
    """(the conv's static padding, whether its input must be SAME-padded at run time instead) for a padding mode."""
    if _timm_padding(padding) == 'same' and dilation * (kernel_size - 1) == 0:
        return 0, False  # a 1x1 kernel pads nothing under SAME at any stride, so it costs no extra kernel
    return get_padding_value(_timm_padding(padding), kernel_size, stride=stride, dilation=dilation)


def max_pool(padding: str, kernel_size: int = 3, stride: int = 2) -> nn.Module:
    """The ResNet stem's max pool: nn.MaxPool2d, or timm's MaxPool2dSame (pads with -inf) for 'same'."""
    return create_pool2d('max', kernel_size, stride, padding=_timm_padding(padding))
