"""The reference nets of the paper's signal-propagation figures that no registered model provides.

- 600-layer pre-activation BatchNorm ResNets in both orders: timm's ResNetV2 is BN→ReLU→Conv (its BatchNormAct2d);
  ReLU→BN→Conv is the same net with a norm layer that applies the ReLU first. He-initialised (fan-in, gain √2),
  no zero-init of the last layer, as in the paper's Fig. 1 (DeepMind's 'ResNet600' variant, depths 50-50-50-50).
- "NF, He init" (paper Fig. 2): the paper-exact NF-ResNet with α and β but plain He-initialised convs instead of
  Scaled WS, and no γ (He's √2 plays its part).
- GroupNorm + weight standardisation, the normalised peer that needs no batch statistics (the batch-size, private and
  DP-cost studies): timm's ResNetV2 with BiT's layers.
"""
from functools import partial
from typing import Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct, StdConv2d
from torch import nn

from timm_nf.layers import WSConv2d, activation_gamma

RESNET600_DEPTHS = (50, 50, 50, 50)


class ReLUThenBatchNorm2d(nn.BatchNorm2d):
    """ReLU → BN, as a drop-in for ResNetV2's BN→ReLU norm layer, so its blocks become ReLU→BN→Conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.relu(x))


def _relu_then_batch_norm(num_features: int, **kwargs) -> ReLUThenBatchNorm2d:
    # a function, not a class: timm's ResNetV2 maps norm classes to norm+act classes but takes factories as they are
    return ReLUThenBatchNorm2d(num_features, device=kwargs.get('device'), dtype=kwargs.get('dtype'))


class HeInitConv2d(WSConv2d):
    """A WSConv2d that uses its weight as drawn (He init) instead of standardising it; the folded scalars remain."""

    def standardized_weight(self, out_gain: Optional[torch.Tensor] = None,
                            with_output_scale: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        row_gain, bias = self._row_gain_and_bias(out_gain, with_output_scale)
        return self.weight * row_gain, bias

    def _eager_weight(self, x: torch.Tensor, out_gain: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.standardized_weight(out_gain)  # not the shared WS pass nor the fast standardisation


def _he_init_convs(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode='fan_in', nonlinearity='relu')
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def bn_resnet(order: str, depths: Sequence[int] = RESNET600_DEPTHS) -> nn.Module:
    """Pre-activation bottleneck ResNet with BatchNorm, blocks in `order` 'bn_relu_conv' or 'relu_bn_conv'."""
    if order not in ('bn_relu_conv', 'relu_bn_conv'):
        raise ValueError(f"order must be 'bn_relu_conv' or 'relu_bn_conv', got {order!r}")
    kwargs = dict(layers=list(depths), zero_init_last=False)
    if order == 'relu_bn_conv':
        kwargs['norm_layer'] = _relu_then_batch_norm
    return _he_init_convs(timm.create_model('resnetv2_50', **kwargs))


def nf_resnet_he_init(depths: Sequence[int] = RESNET600_DEPTHS) -> nn.Module:
    """dm_nf_resnet with every Scaled-WS conv replaced by a plain He-initialised conv and γ taken out."""
    model = timm.create_model('dm_nf_resnet50', depths=tuple(depths))
    gamma = activation_gamma(model.cfg.act)
    for parent_name, parent in list(model.named_modules()):
        for name, conv in list(parent.named_children()):
            if not isinstance(conv, WSConv2d):
                continue
            follows_act = f'{parent_name}.{name}' != 'stem.conv'  # the stem conv sees the raw input
            he = HeInitConv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.dilation[0],
                conv.groups, input_scale=conv.input_scale / gamma if follows_act else conv.input_scale,
                output_scale=conv.output_scale, padding=model.cfg.padding)
            nn.init.kaiming_normal_(he.weight, mode='fan_in', nonlinearity='relu' if follows_act else 'linear')
            with torch.no_grad():
                he.gain.copy_(conv.gain)
            setattr(parent, name, he)
    return model


def gn_ws_resnet(num_groups: int, **kwargs) -> nn.Module:
    """timm's resnetv2_50 (shape in `kwargs`) with BiT's StdConv2d and GroupNorm, activations out of place: Opacus's
    backward hooks refuse an in-place op on a hooked module's output, and the numbers are the same either way."""
    return timm.create_model('resnetv2_50', conv_layer=partial(StdConv2d, eps=1e-8),
                             norm_layer=partial(GroupNormAct, num_groups=num_groups, inplace=False), **kwargs)
