"""Activations and their variance-preserving gains γ.

γ = 1 / std(g(x)) for x ~ N(0, 1). The values are the Monte-Carlo estimates of the DeepMind reference code
(nfnets/base.py `nonlinearities`), which timm copies too, so weights move between the three implementations unchanged.
"""
from torch import nn

NONLINEARITY_GAMMA = {
    'relu': 1.7139588594436646,
    'silu': 1.7881293296813965,
    'gelu': 1.7015043497085571,
    'elu': 1.2716004848480225,
    'celu': 1.270926833152771,
    'leaky_relu': 1.70590341091156,
    'relu6': 1.7131484746932983,
    'tanh': 1.5939117670059204,
    'sigmoid': 4.803835391998291,
    'softplus': 1.9203323125839233,
    'selu': 1.0008515119552612,
    'identity': 1.0,
}

_MODULES = {
    'relu': nn.ReLU, 'silu': nn.SiLU, 'gelu': nn.GELU, 'elu': nn.ELU, 'celu': nn.CELU, 'leaky_relu': nn.LeakyReLU,
    'relu6': nn.ReLU6, 'tanh': nn.Tanh, 'sigmoid': nn.Sigmoid, 'softplus': nn.Softplus, 'selu': nn.SELU,
    'identity': nn.Identity,
}
_INPLACE = {'relu', 'silu', 'elu', 'celu', 'leaky_relu', 'relu6', 'selu'}


def activation_gamma(name: str) -> float:
    """The γ of a named activation; ValueError listing the supported names otherwise."""
    if name not in NONLINEARITY_GAMMA:
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(sorted(NONLINEARITY_GAMMA))}")
    return NONLINEARITY_GAMMA[name]


def create_activation(name: str, inplace: bool = False) -> nn.Module:
    activation_gamma(name)  # validates the name
    if name in _INPLACE:
        return _MODULES[name](inplace=inplace)
    return _MODULES[name]()
