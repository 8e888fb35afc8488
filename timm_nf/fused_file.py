"""Fused weights as a file: safetensors with the model name and constructor arguments in its metadata."""
import json
from typing import Optional

import timm
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn


def load_fused(path: str, model_name: Optional[str] = None, **kwargs) -> nn.Module:
    """Build a fused model from a file written by `timm-nf fuse`, in one call.

    The model name and constructor arguments are read from the file's metadata; `model_name`/`kwargs` override them.
    """
    from .fusion import fuse  # fusion re-exports this function

    with safe_open(path, framework='pt') as f:
        meta = f.metadata() or {}
    model_name = model_name or meta.get('model')
    if not model_name:
        raise ValueError(f'{path} names no model in its metadata: pass model_name=')
    create_kwargs = {**json.loads(meta.get('create_kwargs', '{}')), **kwargs}
    model = fuse(timm.create_model(model_name, pretrained=False, **create_kwargs).eval())
    model.load_state_dict(load_file(path))
    return model
