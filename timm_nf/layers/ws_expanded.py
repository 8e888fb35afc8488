"""WS convs under torch's ExpandedWeights: `torch.nn.utils._per_sample_grad.call_for_per_sample_grads`, which is
Opacus's grad_sample_mode='ew'.

ExpandedWeights swaps every parameter for an `ExpandedWeight` that allows only the ops it has per-example rules for
(conv2d, linear, the norms, embedding: torch/nn/utils/_expanded_weights/); the Scaled-WS formula multiplies and
reduces its weight, which it refuses. So a WS conv whose weight is expanded runs the conv with the effective weight
of the original parameters, outside autograd, and the backward through its output hands each original parameter its
`grad_sample` (layers/ws_per_sample.py), as torch's own expanded ops do: added to an existing one, and scaled by
the batch size for a mean loss (`maybe_scale_by_batch_size`).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.utils._expanded_weights import ExpandedWeight

from .ws_per_sample import ws_conv_grad_samples


def is_expanded(t: Optional[torch.Tensor]) -> bool:
    return isinstance(t, ExpandedWeight)


def any_expanded(*tensors: Optional[torch.Tensor]) -> bool:
    return any(isinstance(t, ExpandedWeight) for t in tensors)


def _original(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t.orig_weight if is_expanded(t) else t


def conv_with_expanded_weights(conv, x: torch.Tensor, out_gain: Optional[torch.Tensor]) -> torch.Tensor:
    """conv(x, out_gain=out_gain) while the conv's parameters are ExpandedWeights (called from WSConv2d.forward)."""
    expanded = next(t for t in (conv.weight, conv.gain, conv.bias, out_gain) if is_expanded(t))
    originals = {name: _original(getattr(conv, name)) for name in ('weight', 'gain', 'bias')}
    gain = _original(out_gain)
    with torch.no_grad(), torch.nn.utils.stateless._reparametrize_module(conv, originals):
        weight, bias = conv.standardized_weight(gain)
    # a bias leaf that requires grad, so that even the stem conv (whose input needs none) has an output to hook
    out = F.conv2d(conv.pad_input(x), weight, bias.detach().requires_grad_(), conv.stride, conv.padding,
                   conv.dilation, conv.groups)
    x = x.detach()

    def per_example(grad_out: torch.Tensor) -> None:
        with torch.nn.utils.stateless._reparametrize_module(conv, originals):
            samples = ws_conv_grad_samples(conv, x, grad_out, gain)
        for param, grad in samples.items():
            if expanded.loss_reduction == 'mean':
                grad = grad * expanded.batch_size
            param.grad_sample = grad if getattr(param, 'grad_sample', None) is None else param.grad_sample + grad

    out.register_hook(per_example)
    return out
