"""The timm and torch releases timm-nf supports, checked before it registers anything with timm.

The floors are those of pyproject.toml, set by what the package calls: timm 1.0.21 is the first release whose layers
and heads take device=/dtype= (ClassifierHead among them); torch 2.5 the first with torch.serialization.safe_globals
(checkpoint.py), the newest torch API in the package (torch.get_autocast_dtype(device_type), layers/ws_group.py, needs
2.4). hub/ needs a newer timm (README, Compatibility).
"""
import re
from typing import Optional, Tuple

TIMM_FLOOR = '1.0.21'
TORCH_FLOOR = '2.5'


class UnsupportedVersions(ImportError):
    """timm or torch is older than timm-nf supports; nothing was registered with timm."""


def release(version: str) -> Tuple[int, ...]:
    """The release numbers of a version string: (1, 0, 22) for '1.0.22', '1.0.22.dev0' and '1.0.22+local'."""
    match = re.match(r'\d+(?:\.\d+)*', version.strip())
    return tuple(int(part) for part in match.group().split('.')) if match else ()


def unsupported(timm_version: str, torch_version: str) -> Optional[str]:
    """None if both are supported, else a one-line message naming the versions found and those supported."""
    if release(timm_version) >= release(TIMM_FLOOR) and release(torch_version) >= release(TORCH_FLOOR):
        return None
    return (f'timm-nf supports timm >= {TIMM_FLOOR} with torch >= {TORCH_FLOOR}, found timm {timm_version} with '
            f'torch {torch_version}: its models are not registered (timm\'s own are unaffected); '
            f'upgrade with: pip install -U "timm>={TIMM_FLOOR}" "torch>={TORCH_FLOOR}"')


def require_supported() -> None:
    """Raise UnsupportedVersions (an ImportError) unless the timm and torch imported here are supported."""
    import timm
    import torch
    message = unsupported(timm.__version__, str(torch.__version__))
    if message:
        raise UnsupportedVersions(message)
