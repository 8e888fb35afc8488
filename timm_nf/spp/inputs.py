"""SPP inputs: a seeded unit-Gaussian batch, or real images from a folder preprocessed with the model's data config."""
import os
from typing import List, Optional, Tuple

import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')


def model_input_size(model: nn.Module, img_size: Optional[int] = None) -> Tuple[int, int, int]:
    """(C, H, W): the model's own input size from its data config, with H = W = img_size when given."""
    channels, height, width = resolve_data_config({}, model=model)['input_size']
    if img_size is not None:
        check_img_size(model, img_size)
        height = width = img_size
    return channels, height, width


def check_img_size(model: nn.Module, img_size: int) -> None:
    """ValueError saying what the model accepts, for sizes it cannot take or that leave no variance to measure."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    default = cfg.get('input_size', (3, 224, 224))[-1]
    if cfg.get('fixed_input_size') and img_size != default:
        raise ValueError(f'image size {img_size} does not fit {_name(model)}: it only accepts {default} px')
    reduction = max((info['reduction'] for info in getattr(model, 'feature_info', [])), default=32)
    if img_size < reduction:
        raise ValueError(f'image size {img_size} is too small for {_name(model)}: it downsamples {reduction}x, so it '
                         f'accepts {reduction} px or more (its default is {default} px)')


def gaussian_input(model: nn.Module, batch: int = 32, img_size: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """Unit Gaussian N(0, 1) of shape (batch, C, H, W), drawn from its own generator: the global RNG is untouched."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *model_input_size(model, img_size)), generator=generator)


def list_images(folder: str) -> List[str]:
    """Image files under `folder` (recursively), sorted; ValueError when there are none."""
    if not os.path.isdir(folder):
        raise ValueError(f'--input must be "gaussian" or a folder of images; {folder!r} is neither')
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f'no images in {folder!r}: expected files ending in {", ".join(IMAGE_EXTENSIONS)} '
                         f'(searched sub-folders too)')
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
            raise ValueError(f'cannot read image {path!r}: {e}') from e
    return torch.stack(images)


def _name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') or type(model).__name__
