"""Per-example gradients of a WS conv's parameters, from its input and the gradient of its output.

What DP-SGD needs (timm_nf/privacy.py hands it to Opacus; WSConv2d uses it under torch's ExpandedWeights). With
Ŵ = c·r, c = W − mean(W) per output row and r = row_gain·rsqrt(max(var·fan_in + eps·fan_in, floor)) (standardize.py),
and G_i = dL_i/dŴ = (output gradient of example i) · (its unfolded input)ᵀ, the formula's backward is

    dL_i/dW = r·(G_i − mean(G_i) − v_i·c),   v_i = Σ(G_i·c)·r²/row_gain²·fan_in/n (0 where the floor holds),
    dL_i/d row_gain = Σ(G_i·c)·rsqrt(...),   dL_i/db̂ = Σ (output gradient of example i) over positions,

sums and means over each row's n = fan-in entries. Per conv, for the whole batch: the mean drops out by centring the
unfolded input, r folds into the output gradient before the one batched matmul, and Σ(G_i·c) comes from c times the
unfolded input (or from G_i where the output has more positions than the fan-in), so the N weight-sized results are
written once and corrected in place once. The (out,)-sized rest, row_gain = gain·scales·out_gain and b̂ = b·α·out_gain,
is pulled back by the conv's own autograd for the whole batch at once (`is_grads_batched`). So every parameter the
conv reads gets its exact per-example gradient: W, gain, bias and, for the last conv of a paper-exact block, the
block's SkipInit gain (`out_gain`), for which Opacus would otherwise have to re-run the whole block.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from .standardize import row_statistics


def _conv_input_patches(conv, x: torch.Tensor) -> torch.Tensor:
    """(N, groups, fan_in, L): for every example, the inputs each of the L output positions of `conv` reads.

    `x` is the tensor the conv was called with; it is padded as WSConv2d.forward pads it: first the run-time 'SAME'
    padding of a strided conv (`conv.pad_input`), then the static `conv.padding` that F.conv2d applies.
    """
    x = conv.pad_input(x)
    n, groups = x.shape[0], conv.groups
    padding = conv.padding  # always numbers: WSConv2d resolves its padding mode at construction (layers/padding.py)
    if tuple(conv.kernel_size) == (1, 1) and tuple(padding) == (0, 0):
        sh, sw = conv.stride
        patches = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
        return patches.reshape(n, groups, x.shape[1] // groups, patches.shape[2] * patches.shape[3])
    patches = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    return patches.view(n, groups, patches.shape[1] // groups, patches.shape[2])


def ws_conv_grad_samples(conv, x: torch.Tensor, grad_out: torch.Tensor,
                         out_gain: Optional[torch.Tensor] = None) -> Dict[torch.Tensor, torch.Tensor]:
    """{parameter: per-example gradient (N, *parameter.shape)} of a WSConv2d called as conv(x, out_gain=out_gain).

    Covers every parameter that requires a gradient among the conv's weight, gain and bias and `out_gain`. The sum
    over examples is the batch gradient of the same forward; computed in the parameters' dtype.
    """
    weight = conv.weight
    dtype, n, groups = weight.dtype, x.shape[0], conv.groups
    wanted = [p for p in (weight, conv.gain, conv.bias, out_gain) if p is not None and p.requires_grad]
    if n == 0:  # an empty batch, which Poisson sampling can draw
        return {p: torch.zeros((0,) + p.shape, dtype=dtype, device=x.device) for p in wanted}
    patches = _conv_input_patches(conv, x.to(dtype))
    patches = patches - patches.mean(2, keepdim=True)  # the formula's backward removes each row's mean
    g = grad_out.to(dtype).reshape(n, groups, conv.out_channels // groups, grad_out[0, 0].numel())
    if patches.shape[-1] != g.shape[-1]:
        raise RuntimeError(
            f'per-example gradients of {type(conv).__name__}: its input {tuple(x.shape)} gives {patches.shape[-1]} '
            f'output positions with padding {conv.padding}, but its output gradient has {g.shape[-1]}: the conv '
            f'pads its input in a way this function does not reproduce')
    with torch.enable_grad():  # (out,)-sized: the row gains and the bias, as the conv computes them
        row_gain, bias = conv._row_gain_and_bias(out_gain)
    centered, inv_std, floor_inactive = row_statistics(weight.detach(), conv.fan_in, conv.var_eps_fan_in,
                                                       conv.var_floor)
    inv_std, floor_inactive = inv_std.view(-1), floor_inactive.view(-1)
    centered = centered.view(groups, -1, centered.shape[1])
    row_scale = (row_gain.detach().reshape(-1) * inv_std).view(groups, -1)
    var_coef = torch.where(floor_inactive, inv_std * inv_std * (conv.fan_in / centered.shape[-1]), 0.0)
    if patches.shape[-1] <= centered.shape[-1]:  # fewer output positions than fan-in: Σ(G·c) from c·patches
        grad_dot_c = (g * torch.einsum('goj,ngjl->ngol', centered, patches)).sum(-1)
        grad_w = torch.einsum('ngol,ngjl->ngoj', g * row_scale[:, :, None], patches)
    else:
        grad_w = torch.einsum('ngol,ngjl->ngoj', g, patches)
        grad_dot_c = torch.einsum('ngoj,goj->ngo', grad_w, centered)
        grad_w.mul_(row_scale[:, :, None])
    grad_w.addcmul_((grad_dot_c * var_coef.view(groups, -1) * row_scale)[..., None], centered, value=-1.0)

    samples = {weight: grad_w.view(n, *weight.shape)} if weight.requires_grad else {}
    grad_bias = g.sum(-1).view(n, -1)
    scalars = [p for p in (conv.gain, conv.bias, out_gain) if p is not None and p.requires_grad]
    pairs = [(row_gain, (grad_dot_c.view(n, -1) * inv_std).view(n, *row_gain.shape))] if row_gain.requires_grad \
        else []
    if bias is conv.bias:  # no output scale: b̂ is b itself
        if bias.requires_grad:
            samples[bias] = grad_bias
            scalars = [p for p in scalars if p is not bias]
    elif bias.requires_grad:
        pairs.append((bias, grad_bias))
    if scalars:
        outputs, cotangents = zip(*pairs)
        grads = torch.autograd.grad(outputs, scalars, cotangents, is_grads_batched=True, allow_unused=True)
        for p, grad in zip(scalars, grads):
            samples[p] = torch.zeros((n,) + p.shape, dtype=dtype, device=x.device) if grad is None else grad
    return samples
