"""The NF-ResNet / NF-RegNet implementation: config, variant table, block, network, timm registration."""
from .config import NFConfig
from .net import NFNet
from .variants import MODEL_CONFIGS, SPP_RESNET600_DEPTHS
from . import nfnet  # registers the models with timm

__all__ = ['NFConfig', 'NFNet', 'MODEL_CONFIGS', 'SPP_RESNET600_DEPTHS']
