"""Building blocks shared by both NF families."""
from .activations import NONLINEARITY_GAMMA, activation_gamma, create_activation
from .frozen import FusedConv2d
from .squeeze_excite import SqueezeExcite
from .ws_conv import WSConv2d
from .ws_group import WSGroup

__all__ = ['NONLINEARITY_GAMMA', 'activation_gamma', 'create_activation', 'FusedConv2d', 'SqueezeExcite', 'WSConv2d',
           'WSGroup']
