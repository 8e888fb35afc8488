"""Fused weights as a file: the state dict of `timm_nf.fuse(model)` as safetensors, with the model name and its
constructor arguments in the file's metadata, so that `load_fused(path)` rebuilds the fused model in one call.

    timm-nf fuse nf_resnet50 --checkpoint trained.pth -o nf_resnet50_fused.safetensors
    model = timm_nf.fusion.load_fused('nf_resnet50_fused.safetensors')
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ._arguments import require_type
from ._atomic import atomic_path
from ._command_line import UsageError
from .checkpoint import state_dict_mismatch, unreadable_reason

FORMAT = 'timm_nf.fused'
SUFFIX = '.safetensors'
_ZIP_MAGIC = b'PK\x03\x04'  # torch.save writes a zip archive


class FusedFileError(UsageError):
    """A file that cannot be fused weights (or a model they do not fit); the message says what was expected."""


def save_fused(fused: nn.Module, path: str, model_name: str, create_kwargs: Dict[str, Any]) -> Tuple[int, int]:
    """Write `fused`'s state dict to `path` (through a temporary file); returns (tensors, values) written."""
    if not str(path).endswith(SUFFIX):
        raise FusedFileError(f'fused weights are written as safetensors: name the file *{SUFFIX}, not {path}')
    tensors = {name: t.detach().contiguous() for name, t in fused.state_dict().items()}
    metadata = {'model': model_name, 'create_kwargs': json.dumps(create_kwargs), 'format': FORMAT}
    with atomic_path(str(path)) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return len(tensors), sum(t.numel() for t in tensors.values())


def _metadata(path: Path) -> Dict[str, str]:
    if not path.is_file():
        raise FusedFileError(f'{path} does not exist' if not path.exists() else f'{path} is a folder, not a file')
    reason = unreadable_reason(path)
    if reason:
        raise FusedFileError(f'{reason}: expected fused weights written by `timm-nf fuse`')
    with open(path, 'rb') as f:
        if f.read(4) == _ZIP_MAGIC:
            raise FusedFileError(f'{path} is a PyTorch checkpoint (torch.save), not fused weights: make them with '
                                 f'`timm-nf fuse MODEL --checkpoint {path} -o NAME{SUFFIX}`')
    try:
        with safe_open(str(path), framework='pt') as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise FusedFileError(f'{path} is not a readable safetensors file (truncated or corrupt?): {e}') from None


def load_fused(path: str, model_name: Optional[str] = None, **kwargs) -> nn.Module:
    """Build a fused model from a file written by `timm-nf fuse`, in one call.

    The model name and constructor arguments are read from the file's metadata; `model_name`/`kwargs` override them
    (a safetensors file without that metadata needs `model_name`). FusedFileError (a ValueError) says what is wrong
    with a missing, empty, text, truncated or torch.save file, or with weights of another model.
    """
    import timm

    from . import fuse

    require_type('path', path, (str, os.PathLike), 'the path of a file written by `timm-nf fuse`')
    if model_name is not None:
        require_type('model_name', model_name, str, 'None or a registered model name')
    path = Path(path)
    meta = _metadata(path)
    model_name = model_name or meta.get('model')
    if not model_name:
        raise FusedFileError(f'{path} has no `timm-nf fuse` metadata naming its model: pass model_name= and the '
                             f"model's arguments")
    try:
        create_kwargs = {**json.loads(meta.get('create_kwargs', '{}')), **kwargs}
        model = fuse(timm.create_model(model_name, pretrained=False, **create_kwargs).eval())
    except (RuntimeError, TypeError, ValueError) as e:
        raise FusedFileError(f'cannot build {model_name} for {path}: {e}') from None
    state_dict = load_file(str(path))
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise FusedFileError(f'{path} does not hold fused {model_name} weights ({create_kwargs}): ' + '; '.join(problems))
    model.load_state_dict(state_dict)
    return model
