"""The variant table: every registered model is one row of data over one of two family presets.

Sources: DeepMind's reference code (github.com/deepmind/deepmind-research, nfnets/: `nf_resnet.py`, `nf_regnet.py`,
`base.nf_regnet_params`, `experiment_nf_regnets.py`) for the `dm_` family, timm's `models/nfnet.py` for the
timm-compatible family.
"""
from typing import Any, Dict

from .config import NFConfig

# Paper-exact: γ in the activations, floor rounding, scalar SkipInit gain, WS floor 1e-4, stochastic depth rate·i/N,
# TensorFlow 'SAME' padding and Haiku's default init of the SE linears, as in the reference code.
PAPER = dict(gamma_placement='act', channel_rounding='floor', skipinit='scalar', ws_var_floor=1e-4, ws_var_eps=0.0,
             stochastic_depth='paper', drop_path_rate=0.1, padding='same', se_init='truncated_normal')
# timm's NormFreeNet defaults: γ folded into every WS conv, widths rounded to 8, avg-pool shortcuts, zero-init last
# conv gains instead of a scalar, WS eps 1e-5 added to the variance, N(0, 0.01) classifier, no stochastic depth,
# symmetric padding (timm's published weights need it) and N(0, 1/fan_in) SE weights.
TIMM = dict(gamma_placement='conv', channel_rounding='div8', skipinit='conv_gain', ws_var_floor=0.0, ws_var_eps=1e-5,
            stochastic_depth='timm', shortcut='avgpool_conv', fc_init='normal', drop_path_rate=0.0,
            padding='symmetric', se_init='normal')

RESNET = dict(stem='resnet', stem_width=64, widths=(256, 512, 1024, 2048), bottleneck_from='output',
              bottleneck_ratio=0.25, act='relu')
REGNET = dict(stem='regnet', width_factor=0.75, bottleneck_from='input', bottleneck_ratio=2.25, first_block_ratio=1.0,
              group_size=8, se_ratio=0.5, act='silu')

RESNET_DEPTHS = {
    26: (2, 2, 2, 2),  # timm's addition, not in the paper
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    288: (24, 24, 24, 24),
}
SPP_RESNET600_DEPTHS = (50, 50, 50, 50)  # the paper's signal-propagation net: create_model(..., depths=...)

# level: (base widths, depths, final conv width = int(1280·C/440) of the ×0.75 last width, train px, test px, dropout)
REGNET_LEVELS = {
    0: ((48, 104, 208, 440), (1, 3, 6, 6), 960, 192, 224, 0.2),
    1: ((48, 104, 208, 440), (2, 4, 7, 7), 960, 224, 256, 0.2),
    2: ((56, 112, 232, 488), (2, 4, 8, 8), 1064, 240, 272, 0.3),
    3: ((56, 128, 248, 528), (2, 5, 9, 9), 1152, 288, 320, 0.3),
    4: ((64, 144, 288, 616), (2, 6, 11, 11), 1344, 320, 384, 0.4),
    5: ((80, 168, 336, 704), (3, 7, 14, 14), 1536, 384, 456, 0.4),
    6: ((88, 184, 376, 792), (3, 8, 16, 16), 1728, 448, 528, 0.5),
    7: ((96, 208, 416, 880), (4, 10, 19, 19), 1920, 512, 600, 0.5),
    8: ((104, 232, 456, 968), (4, 11, 22, 22), 2112, 600, 672, 0.5),
}

# Data configs of the timm-compatible names, as timm's nfnet.py registers them (timm's train/test sizes for
# b0-b5 differ from the paper's; b6-b8 and the deep ResNets are new here and use the paper's sizes).
TIMM_REGNET_SIZES = {0: (192, 256), 1: (256, 288), 2: (240, 272), 3: (288, 320), 4: (320, 384), 5: (384, 456),
                     6: (448, 528), 7: (512, 600), 8: (600, 672)}
TIMM_HAS = {'nf_resnet26', 'nf_resnet50', 'nf_resnet101'} | {f'nf_regnet_b{i}' for i in range(6)}

_IMAGENET = dict(num_classes=1000, interpolation='bicubic', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 first_conv='stem.conv', classifier='head.fc', license='apache-2.0')

def _data_cfg(train: int, test: int, crop_pct: float, test_crop_pct: float = None) -> Dict[str, Any]:
    cfg = dict(_IMAGENET, url='', input_size=(3, train, train), pool_size=(-(-train // 32),) * 2, crop_pct=crop_pct)
    if test != train:
        cfg['test_input_size'] = (3, test, test)
    if test_crop_pct is not None and test_crop_pct != crop_pct:
        cfg['test_crop_pct'] = test_crop_pct
    return cfg


def _paper_crop(size: int) -> float:
    return round(size / (size + 32), 4)  # the reference eval pads the centre crop by 32 px


def _build_table():
    configs: Dict[str, NFConfig] = {}
    data_cfgs: Dict[str, Dict[str, Any]] = {}
    for depth, depths in RESNET_DEPTHS.items():
        if depth != 26:
            configs[f'dm_nf_resnet{depth}'] = NFConfig(depths=depths, **RESNET, **PAPER)
            data_cfgs[f'dm_nf_resnet{depth}'] = _data_cfg(224, 224, _paper_crop(224))
        configs[f'nf_resnet{depth}'] = NFConfig(depths=depths, **RESNET, **TIMM)
        data_cfgs[f'nf_resnet{depth}'] = _data_cfg(224, 224, 0.9)
    for level, (widths, depths, final_width, train, test, drop) in REGNET_LEVELS.items():
        regnet = dict(REGNET, widths=widths, depths=depths, final_width=final_width, stem_width=widths[0])
        configs[f'dm_nf_regnet_b{level}'] = NFConfig(
            **regnet, **PAPER, shortcut='avgpool_conv', fc_init='zeros', drop_rate=drop)
        data_cfgs[f'dm_nf_regnet_b{level}'] = _data_cfg(train, test, _paper_crop(train), _paper_crop(test))
        configs[f'nf_regnet_b{level}'] = NFConfig(**regnet, **TIMM)
        data_cfgs[f'nf_regnet_b{level}'] = _data_cfg(*TIMM_REGNET_SIZES[level], 0.9)
    return configs, data_cfgs


MODEL_CONFIGS, DATA_CONFIGS = _build_table()
