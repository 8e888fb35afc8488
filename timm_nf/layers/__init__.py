"""Building blocks shared by both NF families."""
from .activations import NONLINEARITY_GAMMA, activation_gamma, create_activation
from .squeeze_excite import SqueezeExcite
from .ws_conv import WSConv2d

__all__ = ['NONLINEARITY_GAMMA', 'activation_gamma', 'create_activation', 'SqueezeExcite', 'WSConv2d']
