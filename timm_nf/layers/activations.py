"""Activations and their variance-preserving gains γ.

γ = 1 / std(g(x)) for x ~ N(0, 1). The values are the Monte-Carlo estimates of the DeepMind reference code
(nfnets/base.py `nonlinearities`), which timm also uses, so weights move between the three implementations unchanged.
timm keeps its copy private to nfnet.py, hence this table; the activation modules themselves are timm's.
"""
from timm.layers import get_act_layer
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
    'selu': 1.0008515119552612,
    'identity': 1.0,
}


def activation_gamma(name: str) -> float:
    """The γ of a named activation; ValueError listing the supported names otherwise."""
    if name not in NONLINEARITY_GAMMA:
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(sorted(NONLINEARITY_GAMMA))}")
    return NONLINEARITY_GAMMA[name]


# In-place versions whose backward reads the input: autograd copies the input first, so in place saves no memory and
# costs one more kernel per call (measured with a TorchDispatchMode: silu_ and hardtanh_ add a clone, the others not).
_INPLACE_COPIES = frozenset({'silu', 'relu6'})


def create_activation(name: str, inplace: bool = False) -> nn.Module:
    activation_gamma(name)  # validates the name
    return get_act_layer(name)(inplace=inplace and name not in _INPLACE_COPIES)
