"""Sums over, and broadcasts back to, the variable-length rows of one flat tensor: two kernels for any number of rows.

`SegmentLayout` describes the rows (every output channel of every conv, laid end to end). `segment_sum` reduces each
row to one value (`torch.segment_reduce`), `segment_expand` repeats each row's value over the row (`index_select`).
Each is the other's transpose, so each one's backward is the other: gradients of every order stay two-kernel ops.
`torch.segment_reduce` alone has no double backward, and autograd's backward of `index_select` is an atomic
`index_add`, which is why both have a hand-written backward here.
"""
from typing import Sequence

import torch


class SegmentLayout:
    """Row lengths of a flat tensor on one device, and the row index of every element (for `index_select`)."""

    def __init__(self, lengths: Sequence[int], device: torch.device):
        self.numel = sum(lengths)
        self.lengths = torch.tensor(lengths, dtype=torch.long, device=device)
        rows = torch.arange(len(lengths), dtype=torch.int32, device=device)
        self.row_index = rows.repeat_interleave(self.lengths, output_size=self.numel)


class _SegmentSum(torch.autograd.Function):
    @staticmethod
    def forward(values: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
        return torch.segment_reduce(values, 'sum', lengths=layout.lengths, unsafe=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.layout = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return segment_expand(grad, ctx.layout), None


class _SegmentExpand(torch.autograd.Function):
    @staticmethod
    def forward(row_values: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
        return row_values.index_select(0, layout.row_index)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.layout = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return segment_sum(grad, ctx.layout), None


def segment_sum(values: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
    """(numel,) → (rows,): the sum of each row."""
    return _SegmentSum.apply(values, layout)


def segment_expand(row_values: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
    """(rows,) → (numel,): each row's value repeated over the row."""
    return _SegmentExpand.apply(row_values, layout)
