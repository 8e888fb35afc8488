"""The Python API says which argument is wrong: a TypeError for a wrong type, a ValueError for a wrong value, each
naming the argument, never one of the command line's options or a temporary file."""
import math

import pytest
import timm
import torch

from timm_nf import MODEL_CONFIGS, NFNet, fuse
from timm_nf.fusion import load_fused
from timm_nf.spp import BlockStats, SPPResult, plot_spp, signal_propagation

TINY = dict(depths=(1, 1, 1, 1))
RESULT = SPPResult('x', [BlockStats(0, 0, 0, 0.0, 1.0), BlockStats(1, 1, 0, 0.0, 1.04, 1.0)])


def _model():
    return timm.create_model('dm_nf_regnet_b0', **TINY)


# (call, expected exception, the argument the message must name)
CALLS = [
    (lambda: signal_propagation('resnet18'), TypeError, 'model'),
    (lambda: signal_propagation(_model(), 5), TypeError, 'inputs'),
    (lambda: signal_propagation(_model(), torch.randn(3)), ValueError, 'inputs'),
    (lambda: signal_propagation(_model(), '/no/such/folder'), ValueError, 'inputs'),
    (lambda: signal_propagation(_model(), batch=0), ValueError, 'batch'),
    (lambda: signal_propagation(_model(), batch=2.5), TypeError, 'batch'),
    (lambda: signal_propagation(_model(), batch=True), TypeError, 'batch'),
    (lambda: signal_propagation(_model(), img_size=-1), ValueError, 'img_size'),
    (lambda: signal_propagation(_model(), img_size=10 ** 9), ValueError, 'img_size'),
    (lambda: signal_propagation(_model(), img_size=16), ValueError, 'img_size'),
    (lambda: signal_propagation(_model(), seed=-1), ValueError, 'seed'),
    (lambda: signal_propagation(_model(), seed=2 ** 70), ValueError, 'seed'),
    (lambda: signal_propagation(_model(), skipinit_gain=math.nan), ValueError, 'skipinit_gain'),
    (lambda: signal_propagation(_model(), skipinit_gain='1'), TypeError, 'skipinit_gain'),
    (lambda: signal_propagation(timm.create_model('resnet18'), skipinit_gain=1.0, batch=2, img_size=32), ValueError,
     'skipinit_gain'),
    (lambda: signal_propagation(_model(), bn_stats='mean'), ValueError, 'bn_stats'),
    (lambda: signal_propagation(_model(), blocks=5), TypeError, 'blocks'),
    (lambda: signal_propagation(_model(), blocks='nomatch.*'), ValueError, 'blocks'),
    (lambda: signal_propagation(torch.nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8)), ValueError, 'blocks'),
    (lambda: signal_propagation(_model(), progress='yes'), TypeError, 'progress'),
    (lambda: plot_spp(RESULT, 'spp.png'), TypeError, 'results'),
    (lambda: plot_spp([], 'spp.png'), ValueError, 'results'),
    (lambda: plot_spp([RESULT], '/no/such/folder/spp.png'), ValueError, 'path'),
    (lambda: plot_spp([RESULT], 'spp.xyz'), ValueError, 'path'),
    (lambda: plot_spp([RESULT], 5), TypeError, 'path'),
    (lambda: plot_spp([RESULT], 'spp.png', title=r'$\frac{1}$'), ValueError, 'title'),
    (lambda: plot_spp([RESULT], 'spp.png', dpi=0), ValueError, 'dpi'),
    (lambda: fuse('nf_resnet50'), TypeError, 'model'),
    (lambda: fuse(timm.create_model('resnet18')), TypeError, 'NormFreeNet'),
    (lambda: NFNet('dm_nf_resnet50'), TypeError, 'cfg'),
    (lambda: NFNet(MODEL_CONFIGS['dm_nf_resnet50'], depths=(0, 1, 1, 1)), ValueError, 'depths'),
    (lambda: NFNet(MODEL_CONFIGS['dm_nf_resnet50'], width_factor=1e300), ValueError, 'width_factor'),
    (lambda: load_fused(None), TypeError, 'path'),
    (lambda: load_fused('fused.safetensors', model_name=5), TypeError, 'model_name'),
    (lambda: load_fused('/no/such/fused.safetensors'), ValueError, 'does not exist'),
]


@pytest.mark.parametrize('call, error, argument', CALLS, ids=[f'{i}-{a}' for i, (_, _, a) in enumerate(CALLS)])
def test_the_api_names_the_argument(tmp_path, monkeypatch, call, error, argument):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert argument in message and '--' not in message and '.tmp' not in message, message
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_writers_name_the_file_asked_for_not_a_temporary_one():
    with pytest.raises(FileNotFoundError) as raised:
        RESULT.to_csv('/no/such/folder/spp.csv')
    assert raised.value.filename == '/no/such/folder/spp.csv' and '.tmp' not in str(raised.value)
