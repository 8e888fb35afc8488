"""Memory estimates for the commands: a batch or image size that cannot fit is refused up front, with the estimate
and what this machine has, instead of an allocator error (or the kernel's out-of-memory killer) mid-run.

The activation sizes come from one forward on the meta device (shapes only, no memory, no arithmetic), so they are
exact for the model at hand; the peak is estimated from them:
- inference under no_grad: the input, plus three of the largest activation (a layer's input, its output and a
  residual shortcut alive at once);
- a training step: the input plus every module's output (what autograd keeps for backward, roughly), plus four
  copies of the parameters (weights, gradients, optimizer state, a spare).
"""
import os
from typing import Callable, Iterable, Optional, Tuple

import torch
from torch import nn

from ._command_line import UsageError

GiB = 2 ** 30


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> Optional[int]:
    """Memory this process can still take: the system's available memory, and within a container its cgroup limit
    less what the cgroup uses; None where neither can be read."""
    found = []
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES'))
        except (AttributeError, OSError, ValueError):
            pass
    for limit_file, usage_file in (('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'),
                                   ('/sys/fs/cgroup/memory/memory.limit_in_bytes',
                                    '/sys/fs/cgroup/memory/memory.usage_in_bytes')):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:  # v1 says "no limit" with a huge number
            found.append(max(0, limit - usage))
    return min(found) if found else None


def _tensors(value) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _activation_bytes(model: nn.Module, input_shape: Tuple[int, ...], dtype: torch.dtype = torch.float32,
                      forward: Optional[Callable] = None) -> Tuple[int, int]:
    """(largest activation, sum of every module's output) in bytes for one forward of `model` (on the meta device,
    built that way or with meta parameters swapped in) on an input of `input_shape`. Raises what the forward raises,
    e.g. for an input too small for the net."""
    sizes = []

    def record(module, args, out):
        sizes.extend(t.numel() * t.element_size() for t in _tensors(out))

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    x = torch.empty(input_shape, device='meta', dtype=dtype)
    meta_state = {name: torch.empty_like(t, device='meta')
                  for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.device.type != 'meta'}
    try:
        with torch.no_grad():
            if meta_state:
                torch.func.functional_call(model, meta_state, (x,), strict=False)
            else:
                (forward or model)(x)
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes, default=0), sum(sizes)


def inference_bytes(model: nn.Module, input_shape: Tuple[int, ...], dtype: torch.dtype = torch.float32,
                    forward: Optional[Callable] = None) -> int:
    largest, _ = _activation_bytes(model, input_shape, dtype, forward)
    return _numel(input_shape) * _itemsize(dtype) + 3 * largest


def training_bytes(model: nn.Module, input_shape: Tuple[int, ...], dtype: torch.dtype = torch.float32) -> int:
    _, total = _activation_bytes(model, input_shape, dtype)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return _numel(input_shape) * _itemsize(dtype) + total + 4 * params


def check_training_fits(build: Callable[[], nn.Module], input_shape: Tuple[int, ...], what: str, advice: str,
                        available: Optional[int] = None) -> None:
    """UsageError when one training step of the model `build()` makes (built here on the meta device) needs more
    memory than is available."""
    with torch.device('meta'):
        model = build().train()
    check_fits(training_bytes(model, input_shape), what, advice, available)


def check_fits(needed: int, what: str, advice: str, available: Optional[int] = None) -> None:
    """UsageError when `needed` bytes exceed what this machine has available (no check where that is unknown)."""
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise UsageError(f'{what} needs about {_format_bytes(needed)} of memory (estimated from its layer sizes); '
                         f'{_format_bytes(available)} is available here: {advice}')


def _format_bytes(n: float) -> str:
    for unit, size in (('TiB', 2 ** 40), ('GiB', GiB), ('MiB', 2 ** 20)):
        if n >= size:
            return f'{n / size:.1f} {unit}'
    return f'{n / 1024:.1f} KiB'


def _numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
