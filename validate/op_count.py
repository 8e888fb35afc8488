"""Kernel-launching ops per step: a deterministic stand-in for what eager mode pays a GPU in launches.

Every aten op that reaches the dispatcher is counted with a TorchDispatchMode, except those that launch no kernel:
views, reshapes and aliases (`OpOverload.is_view`), `detach`, the `empty*` allocations, `lift_fresh` and
`_local_scalar_dense`. A training step is forward, cross-entropy backward and an SGD step (momentum 0.9, the foreach
implementation a GPU uses); an eval step is one forward under no_grad. Counts are taken after two warm-up steps, at
batch 2 and 64 px unless told otherwise; they do not depend on the machine.
"""
import collections
from typing import Counter, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_NO_KERNEL = {_aten.detach, _aten.empty, _aten.empty_strided, _aten.empty_like, _aten.lift_fresh,
              _aten._local_scalar_dense}


class KernelCounter(TorchDispatchMode):
    """Counts kernel-launching aten ops by name while active."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (func.is_view or func.overloadpacket in _NO_KERNEL):
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def _batch(model: nn.Module, batch: int, size: int, device, channels_last: bool):
    x = torch.randn(batch, model.pretrained_cfg['input_size'][0] if hasattr(model, 'pretrained_cfg') else 3,
                    size, size, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    classes = getattr(model, 'num_classes', 1000) or 1
    return x, torch.randint(0, classes, (batch,), device=device)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of every benchmarked and counted training step: SGD with momentum, foreach (few kernels)."""
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, foreach=True)


def autocast(device_type: str, amp_dtype: Optional[torch.dtype]):
    return torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp_dtype: Optional[torch.dtype] = None) -> None:
    """One eager training step: forward, cross-entropy, backward, optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(x.device.type, amp_dtype):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def train_step_ops(model: nn.Module, batch: int = 2, size: int = 64, amp_dtype: Optional[torch.dtype] = None,
                   channels_last: bool = False) -> KernelCounter:
    """Ops of one eager training step of `model` (trained in place: pass a copy)."""
    device = next(model.parameters()).device
    x, y = _batch(model, batch, size, device, channels_last)
    optimizer = sgd(model)
    model.train()
    train_step(model, optimizer, x, y, amp_dtype), train_step(model, optimizer, x, y, amp_dtype)
    with KernelCounter() as counter:
        train_step(model, optimizer, x, y, amp_dtype)
    return counter


def eval_step_ops(model: nn.Module, batch: int = 2, size: int = 64, amp_dtype: Optional[torch.dtype] = None,
                  channels_last: bool = False) -> KernelCounter:
    """Ops of one eval-mode forward under no_grad (the model is left in eval mode)."""
    device = next(model.parameters()).device
    x, _ = _batch(model, batch, size, device, channels_last)
    model.eval()
    with torch.no_grad(), autocast(device.type, amp_dtype):
        model(x), model(x)
        with KernelCounter() as counter:
            model(x)
    return counter
