"""NFConfig: every value that tells one NF net from another. The two families differ only in these values.

Every value is range-checked when a config is made (and so when create_model gets an override): an impossible value
is a ValueError naming the argument and the allowed range, not a net of 1-channel layers or a NaN at the first step.
"""
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional, Tuple

from ..layers import activation_gamma
from ..layers.padding import PADDINGS

_CHOICES = {
    'stem': ('resnet', 'regnet'),
    'bottleneck_from': ('output', 'input'),
    'gamma_placement': ('act', 'conv'),
    'channel_rounding': ('floor', 'div8'),
    'shortcut': ('conv', 'avgpool_conv'),
    'skipinit': ('scalar', 'conv_gain'),
    'fc_init': ('normal', 'zeros'),
    'stochastic_depth': ('paper', 'timm'),
    'padding': PADDINGS,
    'se_init': ('normal', 'truncated_normal'),
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
    se_init: str = 'truncated_normal'    # SE weights: std 1/√fan_in cut at 2 std (Haiku's Linear), or N(0, 1/fan_in)
    padding: str = 'same'                # TensorFlow's 'SAME' as the reference code (layers/padding.py), or symmetric
    stochastic_depth: str = 'paper'      # 'paper': rate·i/N, no rescale; 'timm': linspace to rate, 1/keep rescale
    drop_rate: float = 0.0               # dropout before the classifier
    drop_path_rate: float = 0.0          # stochastic depth rate

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name}={getattr(self, name)!r} is not valid: expected one of {allowed}')
        activation_gamma(self.act)
        _check_fields(self)


_FIELDS = frozenset(f.name for f in fields(NFConfig))


def override(cfg: NFConfig, overrides: Dict[str, Any], variant: str = 'model') -> NFConfig:
    """cfg with `overrides` applied; TypeError naming any argument that is neither a constructor nor a config field."""
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise TypeError(f'{variant} got unexpected argument(s) {unknown}; besides the constructor arguments it '
                        f'accepts the config fields {sorted(_FIELDS)}')
    # lists from JSON / YAML model args become the tuples the config holds
    overrides = {k: tuple(v) if k in ('depths', 'widths') and isinstance(v, list) else v for k, v in overrides.items()}
    return replace(cfg, **overrides) if overrides else cfg


# upper bounds far beyond any variant (widest layer 2112 channels, deepest stage 36 blocks) that keep a mistyped
# value from overflowing or from building a net no machine holds
MAX_CHANNELS = 16384
MAX_DEPTH = 1000
MAX_CLASSES = 10 ** 6
MAX_FACTOR = 64.0

# field → (lowest, highest, lowest allowed itself?, highest allowed itself?, must be a whole number?)
_RANGES = {
    'stem_width': (1, MAX_CHANNELS, True, True, True),
    'width_factor': (0, MAX_FACTOR, False, True, False),
    'bottleneck_ratio': (0, MAX_FACTOR, False, True, False),
    'first_block_ratio': (0, MAX_FACTOR, False, True, False),
    'group_size': (0, MAX_CHANNELS, True, True, True),
    'se_ratio': (0, MAX_FACTOR, True, True, False),
    'final_width': (0, MAX_CHANNELS, True, True, True),
    'alpha': (0, 100, False, True, False),
    'ws_var_floor': (0, 1, True, True, False),
    'ws_var_eps': (0, 1, True, True, False),
    'drop_rate': (0, 1, True, False, False),
    'drop_path_rate': (0, 1, True, False, False),
}


def allowed_range(low: float, high: float, low_in: bool, high_in: bool, whole: bool) -> str:
    kind = 'a whole number' if whole else 'a number'
    low_text, high_text = f'{low:g}', f'{high:g}'
    if whole:  # 1000000, not 1e+06
        low_text, high_text = str(int(low)), str(int(high)) if high != math.inf else high_text
    if high == math.inf:
        return f'{kind} {">=" if low_in else ">"} {low_text}'
    return f'{kind} in {"[" if low_in else "("}{low_text}, {high_text}{"]" if high_in else ")"}'


def check_number(name: str, value: Any, low: float, high: float = math.inf, low_in: bool = True,
                 high_in: bool = False, whole: bool = False) -> None:
    """ValueError naming `name` and its allowed range unless `value` is a finite number inside it."""
    expected = allowed_range(low, high, low_in, high_in, whole)
    number = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
    if not number or math.isnan(value) or not (low < value or low_in and value == low) \
            or not (value < high or high_in and value == high):
        raise ValueError(f'{name} must be {expected}, got {value!r}')


def _check_fields(cfg: 'NFConfig') -> None:
    for name, bounds in _RANGES.items():
        value = getattr(cfg, name)
        if value is not None or name != 'first_block_ratio':
            check_number(name, value, *bounds)
    for name in ('depths', 'widths'):
        values = getattr(cfg, name)
        if not isinstance(values, (tuple, list)) or not values:
            raise ValueError(f'{name} must be a non-empty sequence of whole numbers >= 1, one per stage, got {values!r}')
        for value in values:
            check_number(f'every entry of {name}', value, 1, MAX_DEPTH if name == 'depths' else MAX_CHANNELS,
                         high_in=True, whole=True)
    if len(cfg.depths) != len(cfg.widths):
        raise ValueError(f'depths {tuple(cfg.depths)} and widths {tuple(cfg.widths)} must have one entry per stage '
                         f'each (got {len(cfg.depths)} and {len(cfg.widths)})')
    if cfg.ws_var_floor == 0 and cfg.ws_var_eps == 0:
        raise ValueError('ws_var_floor and ws_var_eps are both 0: at least one must be > 0, or a constant filter '
                         'divides by zero in the weight standardisation')


def check_channels(channels: int, made_from: str) -> int:
    """The width of a layer computed from config values (`made_from` names them), or ValueError: a value that
    rounds to no channel at all, or to more than any layer may have, is an error, not a 1-channel or giant layer."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f'{made_from} gives a layer of {channels} channels: every layer needs 1 to {MAX_CHANNELS}; '
                         f'change these values')
    return channels


def check_arguments(cfg: NFConfig, num_classes: Any, in_chans: Any, output_stride: Any, drop_rate: Any,
                    drop_path_rate: Any) -> None:
    """NFNet's constructor arguments as ValueErrors naming the argument (the net checks its grouped widths)."""
    check_number('num_classes', num_classes, 0, MAX_CLASSES, high_in=True, whole=True)
    check_number('in_chans', in_chans, 1, MAX_CHANNELS, high_in=True, whole=True)
    if output_stride not in (8, 16, 32):
        raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride!r}')
    for name, value in (('drop_rate', drop_rate), ('drop_path_rate', drop_path_rate)):
        if value is not None:
            check_number(name, value, *_RANGES[name])
