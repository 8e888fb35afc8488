"""Bad input gets a clear error that says what was expected."""
import pytest
import timm
import torch

from timm_nf import MODEL_CONFIGS, NFNet


def test_unknown_argument_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"\['bogus', 'colour'\]"):
        timm.create_model('dm_nf_regnet_b0', bogus=1, colour='red')


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_chans=0), 'in_chans must be at least 1'),
    (dict(num_classes=-3), 'num_classes must be 0'),
    (dict(output_stride=12), 'output_stride must be 8, 16 or 32'),
    (dict(act='swish'), "unknown activation 'swish': expected one of"),
    (dict(shortcut='pool'), "shortcut='pool' is not valid: expected one of"),
    (dict(depths=(1, 1)), 'must be non-empty, of equal length'),
])
def test_impossible_configurations_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NFNet(MODEL_CONFIGS['dm_nf_resnet50'], device='meta', **kwargs)


def test_create_model_passes_impossible_configurations_on():
    with pytest.raises(ValueError, match='output_stride must be 8, 16 or 32'):
        timm.create_model('nf_resnet50', output_stride=4, device='meta')


@pytest.mark.parametrize('shape', [(3, 64, 64), (2, 4, 64, 64), (2, 3, 64)])
def test_wrong_input_shape_names_the_expected_shape(shape):
    model = timm.create_model('dm_nf_regnet_b0', depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r'expected an input of shape \(N, 3, H, W\)'):
        model(torch.randn(*shape))
