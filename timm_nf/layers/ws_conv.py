"""Scaled Weight Standardisation, with the scalars around the conv folded into the weight it computes anyway."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class _StandardizeWeight(torch.autograd.Function):
    """(W − mean)·gain·rsqrt(max(var·fan_in + eps_fan_in, floor)) per output row, with a hand-written backward.

    Autograd's version of this formula makes about twice as many passes over every weight per training step; for the
    53 convs of nf_resnet50 on the CPU this one takes a third of its time. Used in eager mode only (see WSConv2d).
    """

    @staticmethod
    def forward(ctx, weight, gain, fan_in: int, eps_fan_in: float, floor: float):
        w = weight.reshape(weight.shape[0], -1)
        centered = w - w.mean(1, keepdim=True)
        var = torch.linalg.vector_norm(centered, dim=1, keepdim=True).square_().div_(w.shape[1])
        var_fan_in = var * fan_in + eps_fan_in
        inv_std = torch.rsqrt(torch.clamp_min(var_fan_in, floor))
        row_scale = gain.reshape(-1, 1) * inv_std
        ctx.save_for_backward(centered, row_scale, inv_std, var_fan_in > floor)
        ctx.fan_in, ctx.gain_shape = fan_in, gain.shape
        return (centered * row_scale).reshape_as(weight)

    @staticmethod
    def backward(ctx, grad):
        centered, row_scale, inv_std, floor_inactive = ctx.saved_tensors
        g = grad.reshape(centered.shape)
        grad_row_scale = (g * centered).sum(1, keepdim=True)
        # through var: d inv_std / d w = -inv_std³·fan_in·centered / n, zero where the floor holds inv_std constant
        var_coef = torch.where(
            floor_inactive, grad_row_scale * inv_std * inv_std * (ctx.fan_in / centered.shape[1]), 0.0)
        # (g − mean(g) − var_coef·centered)·row_scale in two passes over the weight
        grad_w = torch.addcmul(-(g.mean(1, keepdim=True) * row_scale), g, row_scale)
        grad_w.addcmul_(centered, -(var_coef * row_scale))
        return grad_w.reshape(grad.shape), (grad_row_scale * inv_std).reshape(ctx.gain_shape), None, None, None


def _same_size_padding(kernel_size: int, stride: int, dilation: int) -> int:
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


class WSConv2d(nn.Conv2d):
    """Conv with the weight Ŵ = gain · (W − mean) / sqrt(max(var·fan_in + var_eps·fan_in, var_floor)) · scale.

    mean/var are per output channel over the fan-in (biased var). Two standardisations share the formula:
    the paper's (var_floor=1e-4, var_eps=0: a floor on var·fan_in) and timm's ScaledStdConv2d (var_floor=0, var_eps=1e-5).

    Any scalar that multiplies the conv's input (`input_scale`: β, γ) or its output (`output_scale`: α, and at run time
    the SkipInit gain `out_gain`) is applied to the tiny per-channel scale vector rather than to the activations, so
    the only full-size work per forward is the standardisation itself. Output scalars also scale the bias.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 1,
            stride: int = 1,
            dilation: int = 1,
            groups: int = 1,
            input_scale: float = 1.0,
            output_scale: float = 1.0,
            gain_init: float = 1.0,
            var_floor: float = 0.0,
            var_eps: float = 0.0,
            device=None,
            dtype=None,
    ):
        padding = _same_size_padding(kernel_size, stride, dilation)
        super().__init__(
            in_chs, out_chs, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
            bias=True, device=device, dtype=dtype)
        self.gain = nn.Parameter(torch.full((out_chs, 1, 1, 1), gain_init, device=device, dtype=dtype))
        self.fan_in = (in_chs // groups) * kernel_size * kernel_size
        self.input_scale = float(input_scale)
        self.output_scale = float(output_scale)
        self.var_floor = float(var_floor)
        self.var_eps_fan_in = float(var_eps) * self.fan_in
        nn.init.kaiming_normal_(self.weight, mode='fan_in', nonlinearity='linear')
        nn.init.zeros_(self.bias)

    def standardized_weight(
            self,
            out_gain: Optional[torch.Tensor] = None,
            with_output_scale: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The effective (weight, bias) of this conv; `with_output_scale=False` leaves out α and `out_gain`."""
        gain = self.gain * self.input_scale
        bias = self.bias
        assert bias is not None  # always built with a bias; this tells TorchScript so
        if with_output_scale:
            gain = gain * self.output_scale
            bias = bias * self.output_scale
            if out_gain is not None:
                gain = gain * out_gain
                bias = bias * out_gain
        if torch.jit.is_scripting() or torch.compiler.is_compiling():
            # compilers fuse the plain formula themselves; TorchScript cannot run autograd Functions
            var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, correction=0)
            inv_std = torch.rsqrt(torch.clamp_min(var * self.fan_in + self.var_eps_fan_in, self.var_floor))
            return (self.weight - mean) * (gain * inv_std), bias
        return self._standardize_eager(gain), bias

    @torch.jit.unused
    def _standardize_eager(self, gain: torch.Tensor) -> torch.Tensor:
        return _StandardizeWeight.apply(self.weight, gain, self.fan_in, self.var_eps_fan_in, self.var_floor)

    def forward(self, x: torch.Tensor, out_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
        weight, bias = self.standardized_weight(out_gain)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.input_scale != 1.0:
            s += f', input_scale={self.input_scale:.4g}'
        if self.output_scale != 1.0:
            s += f', output_scale={self.output_scale:.4g}'
        return s
