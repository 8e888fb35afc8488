"""Bad input to the models gets a clear error that names the argument and says what was expected."""
import math

import pytest
import timm
import torch

from timm_nf import MODEL_CONFIGS, NFNet


def test_unknown_argument_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"\['bogus', 'colour'\]"):
        timm.create_model('dm_nf_regnet_b0', bogus=1, colour='red')


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_chans=0), r'in_chans must be a whole number in \[1, 16384\], got 0'),
    (dict(num_classes=-3), r'num_classes must be a whole number in \[0, 1000000\], got -3'),
    (dict(num_classes=2.5), r'num_classes must be a whole number in \[0, 1000000\], got 2.5'),
    (dict(output_stride=12), r'output_stride must be 8, 16 or 32, got 12'),
    (dict(act='swish'), r"unknown activation 'swish': expected one of"),
    (dict(shortcut='pool'), r"shortcut='pool' is not valid: expected one of"),
    (dict(depths=(1, 1)), r'must have one entry per stage each \(got 2 and 4\)'),
    (dict(depths=3), r'depths must be a non-empty sequence of whole numbers >= 1'),
    (dict(depths=(3, 0, 1, 1)), r'every entry of depths must be a whole number in \[1, 1000\], got 0'),
    (dict(width_factor=0), r'width_factor must be a number in \(0, 64\], got 0'),
    (dict(width_factor=-0.5), r'width_factor must be a number in \(0, 64\], got -0.5'),
    (dict(se_ratio=-0.5), r'se_ratio must be a number in \[0, 64\], got -0.5'),
    (dict(alpha=math.nan), r'alpha must be a number in \(0, 100\], got nan'),
    (dict(alpha=math.inf), r'alpha must be a number in \(0, 100\], got inf'),
    (dict(drop_path_rate=1.5), r'drop_path_rate must be a number in \[0, 1\), got 1.5'),
    (dict(drop_rate=-0.1), r'drop_rate must be a number in \[0, 1\), got -0.1'),
    (dict(bottleneck_ratio=0), r'bottleneck_ratio must be a number in \(0, 64\], got 0'),
    (dict(stem_width=0), r'stem_width must be a whole number in \[1, 16384\], got 0'),
    (dict(final_width=-5), r'final_width must be a whole number in \[0, 16384\], got -5'),
    (dict(group_size=-8), r'group_size must be a whole number in \[0, 16384\], got -8'),
    (dict(ws_var_floor=0.0, ws_var_eps=0.0), r'ws_var_floor and ws_var_eps are both 0'),
    # values so large they overflowed (OverflowError, a torch TypeError) or hung, before they had bounds
    (dict(width_factor=1e300), r'width_factor must be a number in \(0, 64\], got 1e\+300'),
    (dict(stem_width=10 ** 30), r'stem_width must be a whole number in \[1, 16384\]'),
    (dict(widths=(10 ** 30, 1, 1, 1)), r'every entry of widths must be a whole number in \[1, 16384\]'),
    (dict(depths=(10 ** 12, 1, 1, 1)), r'every entry of depths must be a whole number in \[1, 1000\]'),
    (dict(num_classes=10 ** 30), r'num_classes must be a whole number in \[0, 1000000\]'),
    (dict(alpha=1e300), r'alpha must be a number in \(0, 100\], got 1e\+300'),
    (dict(ws_var_floor=1e300), r'ws_var_floor must be a number in \[0, 1\]'),
    (dict(depths=(True, 1, 1, 1)), r'every entry of depths must be a whole number'),
    # a ratio that rounds to no channel: an error naming it, not a net of 1-channel layers
    (dict(bottleneck_ratio=1e-9), r'bottleneck_ratio=1e-09 of 256 channels gives a layer of 0 channels'),
    (dict(width_factor=0.001), r'stem_width=64 × width_factor=0.001 gives a layer of 0 channels'),
])
def test_impossible_configurations_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NFNet(MODEL_CONFIGS['dm_nf_resnet50'], device='meta', **kwargs)


@pytest.mark.parametrize('name, kwargs, message', [
    ('dm_nf_regnet_b0', dict(group_size=1000), r'group_size=1000 is more than the 36 channels of a grouped conv'),
    ('dm_nf_regnet_b0', dict(width_factor=0.05), r'group_size=8 is more than the 2 channels'),
    ('dm_nf_regnet_b0', dict(bottleneck_ratio=0.04), r'group_size must be a whole number in \[0, 1\] here'),
    ('dm_nf_regnet_b0', dict(bottleneck_ratio=0.001), r'bottleneck_ratio=0.001 of 36 channels gives a layer of 0'),
])
def test_grouped_convs_need_a_group(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        timm.create_model(name, device='meta', **kwargs)


def test_the_group_check_follows_the_nets_own_rounding():
    # timm's rounding to multiples of 8 keeps every width >= 8, so the same factor gives a small but possible net
    model = timm.create_model('nf_regnet_b0', width_factor=0.01, device='meta')
    assert min(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)) == 8


def test_create_model_passes_impossible_configurations_on():
    with pytest.raises(ValueError, match='output_stride must be 8, 16 or 32'):
        timm.create_model('nf_resnet50', output_stride=4, device='meta')
    with pytest.raises(ValueError, match='drop_path_rate must be a number in'):
        timm.create_model('dm_nf_regnet_b0', drop_path_rate=1.0, device='meta')


@pytest.mark.parametrize('shape', [(3, 64, 64), (2, 4, 64, 64), (2, 3, 64)])
def test_wrong_input_shape_names_the_expected_shape(shape):
    model = timm.create_model('dm_nf_regnet_b0', depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r'expected an input of shape \(N, 3, H, W\)'):
        model(torch.randn(*shape))
