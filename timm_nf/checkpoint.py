"""Read what timm's train.py writes and turn it into a model with exactly those weights (`timm-nf fuse`, `hub`).

A train.py checkpoint is a dict: arch, args (argparse.Namespace), epoch, metric, version, state_dict and, with
--model-ema, state_dict_ema; keys may carry the `module.` (DDP) or `_orig_mod.` (torch.compile) prefixes.
A train.py output folder holds model_best.pth.tar (preferred) and last.pth.tar. A .safetensors file is a bare
state dict (then the architecture must be given).
"""
import argparse
import codecs
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import safetensors.torch
import timm
import torch
from safetensors import SafetensorError
from timm.models import clean_state_dict, create_model

from ._arguments import first_line
from ._command_line import UsageError

# the order train.py's CheckpointSaver makes them in, best first
_FOLDER_CHECKPOINTS = ('model_best.pth.tar', 'last.pth.tar')
_EMA_KEYS = ('state_dict_ema', 'model_ema')
_RAW_KEYS = ('state_dict', 'model')


class CheckpointError(UsageError):
    """A checkpoint that cannot become the requested model; the message says what was expected."""


def unreadable_reason(path: Path) -> Optional[str]:
    """Why `path` cannot be a weights file at all (empty, text), or None; cheaper and clearer than the loaders'
    own errors (torch.load of a text file says "retry with weights_only=False", of an empty one EOFError)."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return f'{path} is empty (0 bytes)'
    if b'\0' not in head:
        try:  # incremental: a character cut at byte 512 is not an error
            text = codecs.getincrementaldecoder('utf-8')().decode(head)
        except UnicodeDecodeError:
            return None
        if any(c < ' ' and c not in '\t\n\r\f' for c in text):  # control characters: binary after all
            return None
        first = text.strip().splitlines()[0][:60] if text.strip() else ''
        return f'{path} is a text file (it starts with {first!r}), not a weights file'
    return None


@dataclass
class TrainCheckpoint:
    path: Path
    arch: str
    state_dict: Dict[str, torch.Tensor]
    weights: str                                    # which entry the weights came from, e.g. 'state_dict_ema'
    model_args: Dict[str, Any] = field(default_factory=dict)
    train_args: Dict[str, Any] = field(default_factory=dict)
    epoch: Optional[int] = None
    metric: Optional[float] = None
    version: Optional[int] = None
    recorded_arch: Optional[str] = None             # what the checkpoint itself says it is

    @property
    def is_ema(self) -> bool:
        """The weights are train.py's EMA weights."""
        return self.weights in _EMA_KEYS


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """A safetensors file's tensors; CheckpointError if the file is empty, text, truncated or corrupt."""
    reason = unreadable_reason(Path(path))
    if reason:
        raise CheckpointError(f'{reason}: expected a .safetensors file')
    try:
        return safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f'{path} is not a readable safetensors file (truncated or corrupt?): {e}') from None


def checkpoint_file(path) -> Path:
    """The file a checkpoint path names (a train.py output folder: its best checkpoint); CheckpointError if there is
    none or it is empty or text. Cheap: use it to fail before slow work."""
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_CHECKPOINTS:
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f'{path} is a folder without a train.py checkpoint: expected one of '
                                  f'{_FOLDER_CHECKPOINTS}')
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} not found')
    reason = unreadable_reason(path)
    if reason:
        raise CheckpointError(f'{reason}: expected a train.py checkpoint, a torch.save state dict or .safetensors')
    return path


def _torch_load(path: Path) -> Any:
    # weights_only, like timm's own loader; train.py stores its args as an argparse.Namespace
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001  anything the unpickler raises means: not a checkpoint we can read
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
                              f'{first_line(e)[:200]}') from None


def _check_state_dict(state_dict: Any, path: Path, where: str) -> Dict[str, torch.Tensor]:
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in state_dict.items()):
        raise CheckpointError(f'{path}: {where} is a {type(state_dict).__name__} '
                              f'{"holding other things than tensors " if isinstance(state_dict, dict) else ""}'
                              f'where a state dict (parameter name → tensor) was expected')
    return state_dict


def _train_args(meta: Dict[str, Any], path: Path) -> Dict[str, Any]:
    """train.py's arguments as a dict (its argparse.Namespace, or a dict); CheckpointError for anything else."""
    args = meta.get('args')
    if args is None:
        return {}
    if not isinstance(args, (argparse.Namespace, dict)):
        raise CheckpointError(f"{path}: its 'args' is a {type(args).__name__}, expected train.py's argparse.Namespace "
                              f'(or a dict) of training arguments')
    args = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    if not isinstance(args.get('model_kwargs') or {}, dict):
        raise CheckpointError(f"{path}: its args.model_kwargs is a {type(args['model_kwargs']).__name__}, expected a "
                              f'dict of create_model arguments')
    if not isinstance(args.get('model') or '', str):
        raise CheckpointError(f"{path}: its args.model is a {type(args['model']).__name__}, expected a model name")
    return args


def _pick_weights(checkpoint: Dict[str, Any], use_ema: bool) -> Tuple[str, Dict[str, torch.Tensor]]:
    # timm.models.load_state_dict makes the same choice but does not say which one it made; the report needs it
    for key in (_EMA_KEYS + _RAW_KEYS) if use_ema else _RAW_KEYS:
        if checkpoint.get(key) is not None:
            return key, checkpoint[key]
    raise CheckpointError(f'checkpoint holds none of {(_EMA_KEYS + _RAW_KEYS) if use_ema else _RAW_KEYS}; '
                          f'its keys are {sorted(checkpoint)}')


def model_args_from_train_args(train_args: Dict[str, Any]) -> Dict[str, Any]:
    """The create_model kwargs train.py used: num_classes, in_chans, global_pool (--gp), then --model-kwargs."""
    args = {k: train_args.get(src) for k, src in (('num_classes', 'num_classes'), ('in_chans', 'in_chans'),
                                                  ('global_pool', 'gp'))}
    args.update(train_args.get('model_kwargs') or {})
    return {k: v for k, v in args.items() if v is not None}


def read_checkpoint(path, use_ema: bool = True, arch: Optional[str] = None,
                    model_args: Optional[Dict[str, Any]] = None) -> TrainCheckpoint:
    """Load a train.py checkpoint (file or output folder) or a bare .safetensors state dict.

    `arch` / `model_args` override what the checkpoint records (they are required for a bare state dict).
    """
    path = checkpoint_file(path)
    if path.suffix == '.safetensors':
        weights, state_dict, meta, train_args = 'safetensors', read_safetensors(path), {}, {}
    else:
        meta = _torch_load(path)
        if not isinstance(meta, dict):
            raise CheckpointError(f'{path} holds a {type(meta).__name__}, expected a train.py checkpoint dict')
        if all(isinstance(v, torch.Tensor) for v in meta.values()):
            weights, state_dict, meta = 'state_dict', meta, {}  # a bare state dict saved with torch.save
        else:
            weights, state_dict = _pick_weights(meta, use_ema)
            state_dict = _check_state_dict(state_dict, path, f"its '{weights}'")
        train_args = _train_args(meta, path)
        if not isinstance(meta.get('arch') or '', str):
            raise CheckpointError(f"{path}: its 'arch' is a {type(meta['arch']).__name__}, expected a model name")
    recorded_arch = meta.get('arch') or train_args.get('model')
    arch = arch or recorded_arch
    if not arch:
        raise CheckpointError(f'{path} does not record its architecture: pass the model name (--model)')
    if not timm.is_model(arch):
        raise CheckpointError(f'{path}: {arch!r} is not a registered timm model; pass the model name (--model)')
    recorded = model_args_from_train_args(train_args)
    state_dict = clean_state_dict(state_dict)
    head = state_dict.get('head.fc.weight')
    if 'num_classes' not in recorded and head is not None:
        recorded['num_classes'] = head.shape[0]  # a bare state dict does not record it; its classifier does
    return TrainCheckpoint(
        path=path, arch=arch, state_dict=state_dict, weights=weights,
        model_args={**recorded, **(model_args or {})}, train_args=train_args,
        epoch=_number(meta.get('epoch'), int), metric=_number(meta.get('metric'), float),
        version=_number(meta.get('version'), int), recorded_arch=recorded_arch)


def _number(value: Any, kind: type) -> Any:
    """A recorded number, or None for anything else (it is only reported, never computed with)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return kind(value) if number else None


def _describe(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f' (and {len(keys) - limit} more)' if len(keys) > limit else '')


def state_dict_mismatch(expected: Dict[str, torch.Tensor], given: Dict[str, torch.Tensor]) -> List[str]:
    """Lines naming missing keys, unexpected keys and shape mismatches; empty when `given` fits `expected`."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    lines = []
    if missing:
        lines.append(f'missing keys ({len(missing)}): {_describe(missing)}')
    if unexpected:
        lines.append(f'unexpected keys ({len(unexpected)}): {_describe(unexpected)}')
    if shapes:
        lines.append(f'shape mismatches ({len(shapes)}): ' + _describe(
            [f'{k} {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}' for k in shapes]))
    return lines


def build_model(checkpoint: TrainCheckpoint) -> torch.nn.Module:
    """create_model(arch, **model_args) with the checkpoint's weights, in eval mode; CheckpointError naming keys."""
    try:
        model = create_model(checkpoint.arch, pretrained=False, **checkpoint.model_args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'cannot build {checkpoint.arch} with {checkpoint.model_args}: {e}') from None
    problems = state_dict_mismatch(model.state_dict(), checkpoint.state_dict)
    if problems:
        recorded = checkpoint.recorded_arch
        note = f' (the checkpoint says it is {recorded})' if recorded and recorded != checkpoint.arch else ''
        raise CheckpointError(
            f'{checkpoint.path} does not hold {checkpoint.arch} weights{note}, model args {checkpoint.model_args}: '
            + '; '.join(problems))
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model.eval()
