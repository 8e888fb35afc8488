"""Scaled Weight Standardisation, with the scalars around the conv folded into the weight it computes anyway."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import pad_same
from torch import nn

from .frozen import FusedConv2d, FusedConv2dSame
from .padding import conv_padding
from .standardize import standardize, standardize_fast
from .ws_expanded import any_expanded, conv_with_expanded_weights
from .ws_group import shared_pass_devices

# FX tracing records the run-time SAME padding as one node: its amounts come from the input's size, not a Proxy's
torch.fx.wrap('pad_same')


def _per_conv_formula_only(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Where a shared standardisation pass cannot run: graph capture, torch.func transforms, the meta device."""
    return (torch.compiler.is_compiling() or isinstance(x, torch.fx.Proxy) or weight.device.type == 'meta'
            or torch._C._functorch.is_functorch_wrapped_tensor(weight)
            or torch._C._functorch.is_functorch_wrapped_tensor(x))


class WSConv2d(nn.Conv2d):
    """Conv with the weight Ŵ = gain · (W − mean) / sqrt(max(var·fan_in + var_eps·fan_in, var_floor)) · scale.

    mean/var are per output channel over the fan-in (biased var). Two standardisations share the formula:
    the paper's (var_floor=1e-4, var_eps=0: a floor on var·fan_in) and timm's ScaledStdConv2d (var_floor=0, var_eps=1e-5).

    Any scalar that multiplies the conv's input (`input_scale`: β, γ) or its output (`output_scale`: α, and at run time
    the SkipInit gain `out_gain`) scales the standardised weight's rows instead of the activations; the constant ones
    are multiplied together once, here (`weight_scale`). Output scalars also scale the bias.

    Inside a network on a GPU, a `WSGroup` standardises every WS conv's weight in one pass (ws_group.py) and this conv
    takes its slice: kernel launches are the cost there. On the CPU, where memory passes are the cost, each conv
    standardises its own weight with a hand-written backward (standardize.py). Compilers, TorchScript, FX and
    torch.func get the formula in plain autograd ops.

    `padding='same'` pads as TensorFlow's 'SAME' (the reference code's): a strided conv with a kernel above 1x1 pads
    its input at run time by the amount its size calls for (layers/padding.py); every other conv pads statically.
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
            padding: str = 'symmetric',
            device=None,
            dtype=None,
    ):
        static_padding, same_pad = conv_padding(padding, kernel_size, stride, dilation)
        super().__init__(
            in_chs, out_chs, kernel_size, stride=stride, padding=static_padding, dilation=dilation, groups=groups,
            bias=True, device=device, dtype=dtype)
        self.same_pad = same_pad
        self.gain = nn.Parameter(torch.full((out_chs, 1, 1, 1), gain_init, device=device, dtype=dtype))
        self.fan_in = (in_chs // groups) * kernel_size * kernel_size
        self.input_scale = float(input_scale)
        self.output_scale = float(output_scale)
        self.weight_scale = self.input_scale * self.output_scale
        self.var_floor = float(var_floor)
        self.var_eps_fan_in = float(var_eps) * self.fan_in
        self._ws_group = None  # (group, index in it), set by WSGroup.attach
        self._ws_out_gain = (None,)  # the out_gain tensor this conv is called with, for the group's pass
        nn.init.kaiming_normal_(self.weight, mode='fan_in', nonlinearity='linear')
        nn.init.zeros_(self.bias)

    def standardized_weight(
            self,
            out_gain: Optional[torch.Tensor] = None,
            with_output_scale: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The effective (weight, bias) of this conv by the formula; `with_output_scale=False` leaves out α and out_gain.

        The plain formula in autograd ops: every order of gradients, torch.func, TorchScript and compilers take it.
        """
        row_gain, bias = self._row_gain_and_bias(out_gain, with_output_scale)
        return standardize(self.weight, row_gain, self.fan_in, self.var_eps_fan_in, self.var_floor), bias

    def _row_gain_and_bias(self, out_gain: Optional[torch.Tensor],
                           with_output_scale: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        bias = self.bias
        assert bias is not None  # always built with a bias; this tells TorchScript so
        if not with_output_scale:
            return self.gain * self.input_scale, bias
        row_gain = self.gain * self.weight_scale
        if self.output_scale != 1.0:
            bias = bias * self.output_scale
        if out_gain is not None:
            row_gain = row_gain * out_gain
            bias = bias * out_gain
        return row_gain, bias

    @torch.jit.unused
    def _eager_weight(self, x: torch.Tensor, out_gain: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        if _per_conv_formula_only(x, self.weight):
            return self.standardized_weight(out_gain)
        if out_gain is not self._ws_out_gain[0]:  # the out gain Opacus's per-example sampler reads (privacy.py)
            self._ws_out_gain = (out_gain,)
        if self._ws_group is not None and self.weight.device.type in shared_pass_devices():
            group, index = self._ws_group
            shared = group.lookup(self, index, out_gain)
            if shared is not None:
                return shared
        row_gain, bias = self._row_gain_and_bias(out_gain)
        return standardize_fast(self.weight, row_gain, self.fan_in, self.var_eps_fan_in, self.var_floor), bias

    def forward(self, x: torch.Tensor, out_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            weight, bias = self.standardized_weight(out_gain)
        elif any_expanded(self.weight, self.gain, self.bias, out_gain):
            # torch's per-example gradients (ExpandedWeights, Opacus's 'ew' mode), which expand only what trains
            return conv_with_expanded_weights(self, x, out_gain)
        else:
            weight, bias = self._eager_weight(x, out_gain)
        return F.conv2d(self.pad_input(x), weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """x with the run-time SAME padding of a strided conv, if it has one; F.conv2d applies the static padding."""
        if self.same_pad:
            return pad_same(x, self.kernel_size, self.stride, self.dilation)
        return x

    @torch.no_grad()
    def fuse(self, out_gain: Optional[torch.Tensor] = None) -> FusedConv2d:
        """A frozen plain conv holding this conv's effective weight and bias (timm's `reparameterize_model` calls it)."""
        weight, bias = self.standardized_weight(out_gain)
        return (FusedConv2dSame if self.same_pad else FusedConv2d).like(self, weight, bias)

    def __setstate__(self, state):
        state.setdefault('same_pad', False)  # pickled before padding was a choice: it padded symmetrically
        super().__setstate__(state)
        if self._ws_group is not None:  # a copy of a grouped conv joins the copy of its group
            self._ws_group[0].adopt(self._ws_group[1], self)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.same_pad:
            s += ', padding=same'
        if self.input_scale != 1.0:
            s += f', input_scale={self.input_scale:.4g}'
        if self.output_scale != 1.0:
            s += f', output_scale={self.output_scale:.4g}'
        return s
