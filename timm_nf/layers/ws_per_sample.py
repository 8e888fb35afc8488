"""Per-example gradients of a WS conv's parameters, from its input and the gradient of its output.

What DP-SGD needs (timm_nf/privacy.py hands it to Opacus; WSConv2d uses it under torch's ExpandedWeights). Two steps:
1. the per-example gradient of the effective weight Ŵ and bias b̂, as for any conv: each example's output gradient
   against its unfolded input (one batched matmul per conv; a strided view instead of an unfold for 1x1 convs);
2. pulled back through Ŵ = f(W, gain, out_gain) and b̂ = b·α·out_gain by the formula's own autograd, once for the
   whole batch (`is_grads_batched`: a vmap over the cotangents of one graph).
So every parameter the conv reads gets its exact per-example gradient: W, gain, bias and, for the last conv of a
paper-exact block, the block's SkipInit gain (`out_gain`), which Opacus would otherwise have to re-run the block for.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F


def conv_input_patches(conv, x: torch.Tensor) -> torch.Tensor:
    """(N, groups, fan_in, L): for every example, the inputs each output position of `conv` reads.

    `x` is the tensor the conv was called with; the padding is the conv's own (`conv.padding`), as WSConv2d.forward
    applies it through F.conv2d.
    """
    n, groups = x.shape[0], conv.groups
    padding = conv.padding
    if isinstance(padding, str):  # 'valid' or 'same' (stride 1), as F.conv2d reads them
        if padding == 'valid':
            padding = (0, 0)
        else:
            total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
            x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
            padding = (0, 0)
    if conv.kernel_size == (1, 1) and tuple(padding) == (0, 0):
        sh, sw = conv.stride
        patches = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
        return patches.reshape(n, groups, x.shape[1] // groups, -1)
    patches = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    return patches.view(n, groups, patches.shape[1] // groups, -1)


def effective_grad_samples(conv, x: torch.Tensor, grad_out: torch.Tensor):
    """Per-example (dL/dŴ, dL/db̂) of a conv: shapes (N, *weight.shape) and (N, out_channels)."""
    n, groups = x.shape[0], conv.groups
    patches = conv_input_patches(conv, x)
    g = grad_out.reshape(n, groups, conv.out_channels // groups, -1)
    if patches.shape[-1] != g.shape[-1]:
        raise RuntimeError(
            f'per-example gradients of {type(conv).__name__}: its input {tuple(x.shape)} gives {patches.shape[-1]} '
            f'output positions with padding {conv.padding}, but its output gradient has {g.shape[-1]}: the conv '
            f'pads its input in a way this function does not reproduce')
    weight = torch.einsum('ngol,ngil->ngoi', g, patches).reshape(n, *conv.weight.shape)
    return weight, g.sum(-1).reshape(n, conv.out_channels)


def ws_conv_grad_samples(conv, x: torch.Tensor, grad_out: torch.Tensor,
                         out_gain: Optional[torch.Tensor] = None) -> Dict[torch.Tensor, torch.Tensor]:
    """{parameter: per-example gradient (N, *parameter.shape)} of a WSConv2d called as conv(x, out_gain=out_gain).

    Covers every parameter that requires a gradient among the conv's weight, gain and bias and `out_gain`. The sum
    over examples is the batch gradient of the same forward; computed in the parameters' dtype.
    """
    dtype = conv.weight.dtype
    grad_weight, grad_bias = effective_grad_samples(conv, x.to(dtype), grad_out.to(dtype))
    candidates = [conv.weight, conv.gain, conv.bias] + ([] if out_gain is None else [out_gain])
    wanted = [p for p in candidates if p.requires_grad]
    if not wanted:
        return {}
    with torch.enable_grad():
        weight, bias = conv.standardized_weight(out_gain)
    samples = {}
    if bias is conv.bias:  # no output scale: b̂ is b itself
        if bias.requires_grad:
            samples[bias] = grad_bias
        wanted = [p for p in wanted if p is not bias]
        bias = bias.detach()
    pairs = [(t, g) for t, g in ((weight, grad_weight), (bias, grad_bias)) if t.requires_grad]
    if wanted:
        outputs, cotangents = zip(*pairs)
        grads = torch.autograd.grad(outputs, wanted, cotangents, is_grads_batched=True, allow_unused=True)
        for p, grad in zip(wanted, grads):
            samples[p] = torch.zeros((len(x),) + p.shape, dtype=dtype, device=x.device) if grad is None else grad
    return samples
