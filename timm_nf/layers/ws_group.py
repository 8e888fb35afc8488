"""One Scaled-WS pass for all the WS convs of a network, in a fixed number of kernels (used on GPUs).

Per conv, the standardisation formula costs a dozen small kernels forward and as many backward; a net has 50 to 150
WS convs, and in eager mode on a GPU each launch costs about as much as the arithmetic. A WSGroup lays every conv's
weight rows end to end and standardises them together (two segmented sums, segments.py), with the gains, the
constant scalars and the SkipInit gains applied as per-row vectors, then hands each conv its slice: 16 to 20 kernels
forward and 22 to 31 backward for the whole net (counted with validate/op_count.py).

When the pass runs:
- only inside one forward of the whole net: NFNet.forward / forward_features / forward_intermediates and timm's
  features_only wrappers each open a window (`forward_window`), and a pass serves only the window it was made in.
  The stem conv, which every such forward starts with, makes the pass from the current weights; the other convs take
  their slices. Between two windows user code may have changed any weight in any way, `.data` included, which no
  version counter records, so no pass outlives its window. Outside a window (a stage or block called on its own,
  a wrapper of one's own calling the net's modules) every conv standardises its own weight;
- within the window a conv takes its slice only while its parameters are the same tensors, unmodified (version and
  storage), and the pass was made in a compatible mode (autocast dtype, autograd graph task, with a graph if one is
  needed now); otherwise the pass is made anew. A forward hook (or other code run inside the forward) that changes
  a weight through `.data`, `torch.from_numpy`/`.numpy()` views or DLPack, which bypass the version counter, is
  not seen until the next forward: that is the one way to get an older weight, and tests/test_ws_group.py shows it;
- a backward that recomputes a stage (gradient checkpointing) runs in no window: there the graph task is the
  window, a pass made in it serves the rest of that backward only;
- a backward through the pass drops it, so a backward that recomputes a stage itself (re-entrant checkpointing) gets
  a pass of its own and never back-propagates twice through one.
The pass runs outside saved-tensor hooks: non-reentrant checkpointing then recomputes a stage with the same saved
tensors as the original forward. Opening a window costs no kernel, so the kernel counts of validate/op_count.py are
those of the pass itself.

Where it runs: on the device types of `shared_pass_devices()`, CUDA by default. On the CPU launches cost little and
memory passes a lot, and the pass makes about twice as many passes over the weights as each conv's own hand-written
standardisation (measured on 1 CPU thread: nf_resnet50 training step 2.7-2.8 s with the pass, 1.9-2.1 s without, timm
1.8-2.0 s). `TIMM_NF_SHARED_WS=cuda,cpu` or `with shared_pass_on('cpu'):` switches it on elsewhere, which is how the
tests and the kernel counts exercise the GPU path on the CPU.
"""
import contextlib
import functools
import itertools
import os
import threading
import weakref
from typing import Callable, FrozenSet, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .segments import SegmentLayout, segment_expand, segment_sum

_Stamp = Tuple[int, int]  # (in-place version, storage address) of a tensor
_devices = frozenset(d.strip() for d in os.environ.get('TIMM_NF_SHARED_WS', 'cuda').split(',') if d.strip())


def shared_pass_devices() -> FrozenSet[str]:
    """The device types on which WS convs standardise in one shared pass."""
    return _devices


@contextlib.contextmanager
def shared_pass_on(*device_types: str) -> Iterator[None]:
    """Also use the shared pass on these device types (e.g. 'cpu'), for the duration."""
    global _devices
    before = _devices
    _devices = before | frozenset(device_types)
    try:
        yield
    finally:
        _devices = before


# the forward window of this thread: (nesting depth, serial of the outermost window open now, or None)
_window = threading.local()
_window_serials = itertools.count(1)


def _open_window(*_) -> None:
    depth = getattr(_window, 'depth', 0)
    if depth == 0:
        _window.serial = next(_window_serials)
    _window.depth = depth + 1


def _close_window(*_) -> None:
    _window.depth = max(0, getattr(_window, 'depth', 1) - 1)
    if _window.depth == 0:
        _window.serial = None


def _current_window() -> Optional[int]:
    return getattr(_window, 'serial', None)


@contextlib.contextmanager
def forward_window() -> Iterator[None]:
    """One forward of a whole net: shared passes made inside serve only inside (see the module docstring)."""
    _open_window()
    try:
        yield
    finally:
        _close_window()


def in_forward_window(method: Callable) -> Callable:
    """Runs a net's forward method inside a forward window (TorchScript and compilers see the method itself)."""
    @functools.wraps(method)
    def run(*args, **kwargs):
        if torch.compiler.is_compiling():
            return method(*args, **kwargs)
        with forward_window():
            return method(*args, **kwargs)
    return run


def open_window_around(module: torch.nn.Module) -> None:
    """Every call of `module` (e.g. timm's features_only wrapper of a net) runs inside a forward window."""
    module.register_forward_pre_hook(_open_window)
    module.register_forward_hook(_close_window, always_call=True)


def _stamp(t: Optional[torch.Tensor]) -> Optional[_Stamp]:
    return None if t is None else (t._version, t.data_ptr())


def _keep(t: torch.Tensor) -> torch.Tensor:
    return t


_serials = itertools.count()


def _dropper(group: weakref.ref, serial: int):
    """A gradient hook that forgets pass `serial` once a backward has gone through it."""
    def hook(grad: torch.Tensor) -> None:
        alive = group()
        if alive is not None:
            alive._drop(serial)
    return hook


class _Mode(NamedTuple):
    amp_dtype: Optional[torch.dtype]
    graph_task: int
    grad: bool
    inference: bool
    window: Optional[int]

    @staticmethod
    def now(device_type: str) -> '_Mode':
        amp = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        return _Mode(amp, torch._C._current_graph_task_id(), torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                     _current_window())

    @property
    def shares(self) -> bool:
        """A pass may serve more than one conv: inside a forward window, or in a backward's recomputation."""
        return self.window is not None or self.graph_task != -1

    def serves(self, wanted: '_Mode') -> bool:
        return (self.window == wanted.window and self.amp_dtype == wanted.amp_dtype
                and self.graph_task == wanted.graph_task
                and (self.grad or not wanted.grad) and (wanted.inference or not self.inference))


class _Pass(NamedTuple):
    serial: int
    mode: _Mode
    weights: List[torch.Tensor]
    biases: List[torch.Tensor]
    sources: List[Tuple]   # per conv: the (weight, gain, bias, out_gain) tensors it was computed from
    stamps: List[Tuple]    # per conv: their stamps


class _RowConstants(NamedTuple):
    layout: SegmentLayout
    inv_fan_in: torch.Tensor
    eps: Optional[torch.Tensor]       # var_eps·fan_in per row, None where all are 0
    floor: float
    weight_scale: torch.Tensor        # input × output scale per row
    output_scale: torch.Tensor        # output scale per row (bias)
    conv_layout: SegmentLayout        # rows per conv, to broadcast a per-conv value (the out gain) to its rows
    one: torch.Tensor


def _flat(weight: torch.Tensor) -> torch.Tensor:
    """The weight as one row-major (out channel first) vector, as a view whenever the memory format allows."""
    if weight.is_contiguous():
        return weight.view(-1)
    if weight.is_contiguous(memory_format=torch.channels_last):
        return weight.permute(0, 2, 3, 1).reshape(-1)  # rows stay contiguous; the order within a row differs
    return weight.reshape(-1)


def _unflat(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        o, i, kh, kw = like.shape
        return flat.view(o, kh, kw, i).permute(0, 3, 1, 2)
    return flat.view(like.shape)


class WSGroup:
    """Standardises the weights of `convs` (WSConv2d) together; see the module docstring for when.

    Members are held weakly and hold the group: copying or pickling a whole network copies its group with it (each
    conv re-registers in the copy), while a conv copied on its own falls back to its own formula.
    """

    def __init__(self, size: int):
        self._members: List[Optional[weakref.ref]] = [None] * size
        self._constants = {}
        self._pass: Optional[_Pass] = None

    @classmethod
    def attach(cls, convs: Sequence) -> 'WSGroup':
        """A group over `convs`, the first of which starts every forward (the stem); each conv is told its group."""
        floors = {c.var_floor for c in convs}
        if len(floors) > 1:
            raise ValueError(f'the convs of one WSGroup need one variance floor, got {sorted(floors)}')
        group = cls(len(convs))
        for index, conv in enumerate(convs):
            conv._ws_group = (group, index)
            group.adopt(index, conv)
        return group

    def adopt(self, index: int, conv) -> None:
        self._members[index] = weakref.ref(conv)
        self._constants, self._pass = {}, None

    def __getstate__(self):
        return {'_members': [None] * len(self._members), '_constants': {}, '_pass': None}

    # ---------------------------------------------------------------------------------------------- lookup

    def lookup(self, conv, index: int, out_gain: Optional[torch.Tensor]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """`conv`'s (weight, bias) from the shared pass, or None when it must use its own formula."""
        member = self._members[index]
        if member is None or member() is not conv:
            return None
        if out_gain is not None and conv._ws_out_gain[0] is not out_gain:
            conv._ws_out_gain = (out_gain,)  # the next pass includes it
        mode = _Mode.now(conv.weight.device.type)
        if not mode.shares:
            return None
        shared = self._pass
        if index == 0 or shared is None or not shared.mode.serves(mode):
            shared = self._compute(mode)
            if shared is None:
                return None
        tensors = (conv.weight, conv.gain, conv.bias, out_gain)
        if any(a is not b for a, b in zip(tensors, shared.sources[index])) \
                or shared.stamps[index] != tuple(_stamp(t) for t in tensors):
            return None
        return shared.weights[index], shared.biases[index]

    def _drop(self, serial: int) -> None:
        if self._pass is not None and self._pass.serial == serial:
            self._pass = None

    # ------------------------------------------------------------------------------------------------ pass

    def _compute(self, mode: _Mode) -> Optional[_Pass]:
        convs = [member() if member is not None else None for member in self._members]
        if any(conv is None for conv in convs):
            return None
        first = convs[0].weight
        if any(c.weight.device != first.device or c.weight.dtype != first.dtype for c in convs):
            return None
        out_gains = [c._ws_out_gain[0] for c in convs]
        sources = [(c.weight, c.gain, c.bias, g) for c, g in zip(convs, out_gains)]
        # half-precision weights are standardised in float32, as batch_norm and var_mean accumulate
        work = torch.float32 if first.dtype in (torch.float16, torch.bfloat16) else first.dtype
        k = self._row_constants(convs, first.device, work)
        with torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
            flat = torch.cat([_flat(c.weight) for c in convs]).to(work)
            centered = flat - segment_expand(segment_sum(flat, k.layout) * k.inv_fan_in, k.layout)
            var_fan_in = segment_sum(centered * centered, k.layout)
            if k.eps is not None:
                var_fan_in = var_fan_in + k.eps
            if k.floor > 0.0:
                var_fan_in = var_fan_in.clamp_min(k.floor)
            weight_scale, output_scale = k.weight_scale, k.output_scale
            if any(g is not None for g in out_gains):
                per_conv = torch.cat([k.one if g is None else g.reshape(1).to(work) for g in out_gains])
                per_row = segment_expand(per_conv, k.conv_layout)
                weight_scale, output_scale = weight_scale * per_row, output_scale * per_row
            gains = torch.cat([c.gain.reshape(-1) for c in convs]).to(work)
            weights = centered * segment_expand(gains * torch.rsqrt(var_fan_in) * weight_scale, k.layout)
            biases = torch.cat([c.bias for c in convs]).to(work) * output_scale
            # cast once here rather than once per conv inside autocast (which leaves float64 alone)
            out = mode.amp_dtype if mode.amp_dtype is not None and first.dtype != torch.float64 else first.dtype
            weights, biases = weights.to(out), biases.to(out)
        serial = next(_serials)
        if weights.requires_grad:
            weights.register_hook(_dropper(weakref.ref(self), serial))
        shared = _Pass(
            serial,
            mode,
            [_unflat(w, c.weight) for w, c in zip(weights.split([c.weight.numel() for c in convs]), convs)],
            list(biases.split([c.out_channels for c in convs])),
            sources,
            [tuple(_stamp(t) for t in s) for s in sources],
        )
        self._pass = shared
        return shared

    def _row_constants(self, convs, device: torch.device, dtype: torch.dtype) -> _RowConstants:
        key = (device, dtype)
        if key not in self._constants:
            def rows(values: Sequence[float]) -> torch.Tensor:
                return torch.tensor([v for c, v in zip(convs, values) for _ in range(c.out_channels)],
                                    dtype=dtype, device=device)

            self._constants[key] = _RowConstants(
                layout=SegmentLayout([c.fan_in for c in convs for _ in range(c.out_channels)], device),
                inv_fan_in=rows([1.0 / c.fan_in for c in convs]),
                eps=rows([c.var_eps_fan_in for c in convs]) if any(c.var_eps_fan_in for c in convs) else None,
                floor=convs[0].var_floor,
                weight_scale=rows([c.weight_scale for c in convs]),
                output_scale=rows([c.output_scale for c in convs]),
                conv_layout=SegmentLayout([c.out_channels for c in convs], device),
                one=torch.ones(1, dtype=dtype, device=device),
            )
        return self._constants[key]
