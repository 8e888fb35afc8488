"""SPP inputs: a seeded unit-Gaussian batch, or real images from a folder preprocessed with the model's data config;
and timm models built for the requested input size."""
import os
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

from .._arguments import BadArgument

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')


def _current_input(model: nn.Module) -> Tuple[Tuple[int, int, int], bool]:
    """((C, H, W) the model is built for, whether that is the only size it takes)."""
    try:  # timm >= 1.0.31 knows the size a model was built at (img_size=), not only its pretrained cfg's
        from timm.models._input import get_model_input_config
        current = get_model_input_config(model)
        return tuple(current['input_size']), bool(current['fixed_input_size'])
    except (ImportError, KeyError, TypeError):
        cfg = getattr(model, 'pretrained_cfg', None) or {}
        return tuple(resolve_data_config({}, model=model)['input_size']), bool(cfg.get('fixed_input_size'))


def model_input_size(model: nn.Module, img_size: Optional[int] = None) -> Tuple[int, int, int]:
    """(C, H, W): the model's own input size, with H = W = img_size when given."""
    channels, height, width = _current_input(model)[0]
    if img_size is not None:
        check_img_size(model, img_size)
        height = width = img_size
    return channels, height, width


def check_img_size(model: nn.Module, img_size: int) -> None:
    """BadArgument saying what the model accepts, for sizes it cannot take or that leave no variance to measure."""
    (_, default, _), fixed = _current_input(model)
    if fixed and img_size != default:
        raise BadArgument('img_size', f'{{arg}} {img_size} does not fit {_name(model)}: it was built for {default} px '
                                      f'and takes no other size')
    reduction = max((info['reduction'] for info in getattr(model, 'feature_info', [])), default=32)
    if img_size < reduction:
        raise BadArgument('img_size', f'{{arg}} {img_size} is too small for {_name(model)}: it downsamples '
                                      f'{reduction}x, so it accepts {reduction} px or more (its default is {default} px)')


def size_kwargs(name: str, img_size: Optional[int]) -> Dict[str, Any]:
    """{'img_size': img_size} when timm builds `name` for one input size only (ViT, Swin, Mixer, ...) and
    `img_size` is another, so that timm builds it at that size; else nothing."""
    from timm.models import get_pretrained_cfg
    if img_size is None:
        return {}
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag: create_model says so
        return {}
    if cfg is None or not cfg.fixed_input_size or cfg.input_size[-1] == img_size:
        return {}
    return {'img_size': img_size}


def create_at_size(name: str, img_size: Optional[int] = None, **kwargs) -> nn.Module:
    """timm.create_model(name, **kwargs), built for `img_size` where timm builds the model for one size only;
    BadArgument (img_size) when timm cannot build it at that size."""
    extra = size_kwargs(name, img_size)
    try:
        return timm.create_model(name, **extra, **kwargs)
    except TypeError as e:
        if not extra or 'img_size' not in str(e):
            raise
        raise BadArgument('img_size', f'{{arg}} {img_size} does not fit {name}: it takes only its default size and '
                                      f'timm cannot build it for another') from None


def gaussian_input(model: nn.Module, batch: int = 32, img_size: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """Unit Gaussian N(0, 1) of shape (batch, C, H, W), drawn from its own generator: the global RNG is untouched."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *model_input_size(model, img_size)), generator=generator)


def list_images(folder: str) -> List[str]:
    """Image files under `folder` (recursively), sorted; BadArgument (inputs) when there are none."""
    if not os.path.isdir(folder):
        raise BadArgument('inputs', f'{{arg}} must be "gaussian" or a folder of images; {folder!r} is neither')
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise BadArgument('inputs', f'{{arg}}: no images in {folder!r}: expected files ending in '
                                    f'{", ".join(IMAGE_EXTENSIONS)} (searched sub-folders too)')
    return paths


def folder_input(model: nn.Module, folder: str, batch: int = 32, img_size: Optional[int] = None) -> torch.Tensor:
    """The first `batch` images of `folder` (sorted), transformed with the model's eval data config."""
    from PIL import Image  # a timm dependency

    paths = list_images(folder)[:batch]
    overrides = {}
    if img_size is not None:
        check_img_size(model, img_size)
        overrides['input_size'] = (model_input_size(model)[0], img_size, img_size)
    transform = create_transform(**resolve_data_config(overrides, model=model))
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(transform(image.convert('RGB')))
        except OSError as e:
            raise BadArgument('inputs', f'{{arg}}: cannot read image {path!r}: {e}') from e
    return torch.stack(images)


def _name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') or type(model).__name__
