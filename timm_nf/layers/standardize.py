"""The Scaled-WS formula for one conv's weight: in autograd ops, and as a function with a hand-written backward.

    Ŵ = (W − mean) · row_gain · rsqrt(max(var·fan_in + eps·fan_in, floor)),   per output row, biased var

`standardize` is the formula in plain autograd ops: compilers, TorchScript, FX and torch.func take it. The
hand-written backward of `standardize_fast` makes two passes over the weight where autograd's makes about twice as
many: on the CPU, where memory bandwidth and not kernel launches is the cost, it keeps the training step at timm's
speed. Its second-order gradients are the formula's: when a backward builds a graph (create_graph=True), it
differentiates `standardize` itself instead of using its saved intermediates.
"""
import torch


def standardize(weight: torch.Tensor, row_gain: torch.Tensor, fan_in: int, eps_fan_in: float,
                floor: float) -> torch.Tensor:
    """The formula in autograd ops; `row_gain` broadcasts against (out, 1, 1, 1)."""
    var, mean = torch.var_mean(weight, dim=(1, 2, 3), keepdim=True, correction=0)
    return (weight - mean) * (row_gain * torch.rsqrt(torch.clamp_min(var * fan_in + eps_fan_in, floor)))


def row_statistics(weight: torch.Tensor, fan_in: int, eps_fan_in: float, floor: float):
    """(centered rows (out, n), rsqrt of the floored variance term (out, 1), whether the floor is inactive (out, 1)):
    what the formula and its gradient are made of, outside autograd (here, and per example in ws_per_sample.py)."""
    w = weight.reshape(weight.shape[0], -1)
    centered = w - w.mean(1, keepdim=True)
    var = torch.linalg.vector_norm(centered, dim=1, keepdim=True).square_().div_(w.shape[1])
    var_fan_in = var * fan_in + eps_fan_in
    return centered, torch.rsqrt(torch.clamp_min(var_fan_in, floor)), var_fan_in > floor


class _StandardizeFast(torch.autograd.Function):

    @staticmethod
    def forward(ctx, weight, row_gain, fan_in: int, eps_fan_in: float, floor: float):
        centered, inv_std, floor_inactive = row_statistics(weight, fan_in, eps_fan_in, floor)
        row_scale = row_gain.reshape(-1, 1) * inv_std
        ctx.save_for_backward(weight, row_gain, centered, row_scale, inv_std, floor_inactive)
        ctx.constants = fan_in, eps_fan_in, floor
        return (centered * row_scale).reshape_as(weight)

    @staticmethod
    def backward(ctx, grad):
        weight, row_gain, centered, row_scale, inv_std, floor_inactive = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph is being built: differentiate the formula, so every order is exact
            wanted = [t for t, needed in zip((weight, row_gain), ctx.needs_input_grad) if needed]
            with torch.enable_grad():
                grads = iter(torch.autograd.grad(standardize(weight, row_gain, *ctx.constants), wanted, grad,
                                                 create_graph=True))
            return tuple(next(grads) if needed else None for needed in ctx.needs_input_grad[:2]) + (None,) * 3
        fan_in = ctx.constants[0]
        g = grad.reshape(centered.shape)
        grad_row_scale = (g * centered).sum(1, keepdim=True)
        # through var: d inv_std / d w = -inv_std³·fan_in·centered / n, zero where the floor holds inv_std constant
        var_coef = torch.where(floor_inactive, grad_row_scale * inv_std * inv_std * (fan_in / centered.shape[1]), 0.0)
        # (g − mean(g) − var_coef·centered)·row_scale in two passes over the weight
        grad_w = torch.addcmul(-(g.mean(1, keepdim=True) * row_scale), g, row_scale)
        grad_w.addcmul_(centered, -(var_coef * row_scale))
        return grad_w.reshape(grad.shape), (grad_row_scale * inv_std).reshape(row_gain.shape), None, None, None


def standardize_fast(weight: torch.Tensor, row_gain: torch.Tensor, fan_in: int, eps_fan_in: float,
                     floor: float) -> torch.Tensor:
    """`standardize` with the hand-written backward (eager mode only: not for compilers, FX or torch.func)."""
    return _StandardizeFast.apply(weight, row_gain, fan_in, eps_fan_in, floor)
