"""NFConfig: every value that tells one NF net from another. The two families differ only in these values."""
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional, Tuple

from ..layers import activation_gamma

_CHOICES = {
    'stem': ('resnet', 'regnet'),
    'bottleneck_from': ('output', 'input'),
    'gamma_placement': ('act', 'conv'),
    'channel_rounding': ('floor', 'div8'),
    'shortcut': ('conv', 'avgpool_conv'),
    'skipinit': ('scalar', 'conv_gain'),
    'fc_init': ('normal', 'zeros'),
    'stochastic_depth': ('paper', 'timm'),
}


@dataclass(frozen=True)
class NFConfig:
    depths: Tuple[int, ...]
    widths: Tuple[int, ...]              # stage output widths, before width_factor
    stem: str = 'resnet'                 # 'resnet': 7x7/2 conv + 3x3/2 max-pool; 'regnet': 3x3/2 conv
    stem_width: int = 64                 # before width_factor
    width_factor: float = 1.0
    bottleneck_from: str = 'output'      # middle width from the block's output (ResNet) or input (RegNet) width
    bottleneck_ratio: float = 0.25
    first_block_ratio: Optional[float] = None  # the net's first block (RegNet: expansion 1, as in EfficientNet)
    group_size: int = 0                  # channels per group of the 3x3 conv; 0: dense
    se_ratio: float = 0.0                # SE on the middle width, hidden = ratio·width; 0: no SE
    final_width: int = 0                 # 1x1 WS conv before the head (RegNet: int(1280·C/440)); 0: none
    act: str = 'relu'
    alpha: float = 0.2                   # residual branch scale: variance grows by α² per block
    gamma_placement: str = 'act'         # 'act': γ belongs to the activations (paper); 'conv': every WS conv has γ (timm)
    channel_rounding: str = 'floor'      # 'floor': int() as in the reference code; 'div8': timm's make_divisible(·, 8)
    shortcut: str = 'conv'               # projection: strided 1x1 WS conv, or 2x2 avg-pool then 1x1 WS conv
    skipinit: str = 'scalar'             # zero-init residuals: a scalar gain per block, or the last conv's gains
    ws_var_floor: float = 1e-4           # paper: rsqrt(max(var·fan_in, 1e-4))
    ws_var_eps: float = 0.0              # timm: rsqrt((var + 1e-5)·fan_in)
    fc_init: str = 'normal'              # classifier weight ~ N(0, 0.01), or zeros
    stochastic_depth: str = 'paper'      # 'paper': rate·i/N, no rescale; 'timm': linspace to rate, 1/keep rescale
    drop_rate: float = 0.0               # dropout before the classifier
    drop_path_rate: float = 0.0          # stochastic depth rate

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name}={getattr(self, name)!r} is not valid: expected one of {allowed}')
        activation_gamma(self.act)
        if len(self.depths) != len(self.widths) or not self.depths or min(self.depths) < 1:
            raise ValueError(f'depths {self.depths} and widths {self.widths} must be non-empty, of equal length, '
                             f'with at least one block per stage')


_FIELDS = frozenset(f.name for f in fields(NFConfig))


def override(cfg: NFConfig, overrides: Dict[str, Any], variant: str = 'model') -> NFConfig:
    """cfg with `overrides` applied; TypeError naming any argument that is neither a constructor nor a config field."""
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise TypeError(f'{variant} got unexpected argument(s) {unknown}; besides the constructor arguments it '
                        f'accepts the config fields {sorted(_FIELDS)}')
    if 'depths' in overrides:
        overrides = {**overrides, 'depths': tuple(overrides['depths'])}
    return replace(cfg, **overrides) if overrides else cfg
