"""timm-nf: normalizer-free ResNets and RegNets (Brock, De & Smith, ICLR 2021) for timm.

Importing this package registers every model with timm. After `pip install`, a start-up hook does the same for any
process that imports timm (set TIMM_NF_AUTOLOAD=0 to turn it off). With a timm or torch older than supported it
raises ImportError (timm_nf._versions) before registering anything. Once opacus is imported too (before or after),
its grad samplers for our layers are registered (timm_nf/privacy.py), without this package ever importing opacus.
"""
from ._versions import require_supported

require_supported()

from .models import MODEL_CONFIGS, NFConfig, NFNet, SPP_RESNET600_DEPTHS  # noqa: E402
from .fusion import fuse  # noqa: E402
from ._opacus_hook import register_with_opacus_when_imported  # noqa: E402

register_with_opacus_when_imported()

__version__ = '0.1.0'
__all__ = ['MODEL_CONFIGS', 'NFConfig', 'NFNet', 'SPP_RESNET600_DEPTHS', 'fuse', '__version__']
