"""timm's tools and torch's model transforms on our models: FX tracing and FX feature extraction, classifier resets on
any device/dtype, pruning to any tap, checkpoints, EMA, timm's layer config and timm's train.py (with a checkout)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.layers import set_layer_config
from timm.utils import ModelEmaV3

from helpers import perturb_, rel_err

KINDS = ['dm_nf_regnet_b0', 'nf_resnet26']  # paper RegNet (final conv, 3x3 stem), timm ResNet (7x7 stem + pool)
SMALL = dict(depths=(1, 1, 1, 1))


def _small(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **SMALL, **kwargs)


@pytest.mark.parametrize('name', KINDS)
def test_fx_tracing_matches_eager_and_keeps_the_input_check(name):
    from torchvision.models.feature_extraction import create_feature_extractor
    model = perturb_(_small(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        traced = torch.fx.symbolic_trace(model)
        assert rel_err(traced(x), model(x)) < 1e-5  # the traced graph standardises per conv, eager per network
        with pytest.raises(ValueError, match=r'expected an input of shape \(N, 3, H, W\), got .*1, 1, 64, 64'):
            traced(torch.randn(1, 1, 64, 64))
        taps = model.forward_intermediates(x, intermediates_only=True)
        extractor = create_feature_extractor(model, return_nodes={'stages.1': 'stage1'})
        torch.testing.assert_close(extractor(x)['stage1'], taps[2])


@pytest.mark.parametrize('name', KINDS)
def test_fx_feature_model_matches_the_default_one_and_trains(name):
    x = torch.randn(2, 3, 64, 64)
    hooks = _small(name, features_only=True).eval()
    graph = _small(name, features_only=True, feature_cls='fx').eval()
    with torch.no_grad():
        for a, b in zip(graph(x), hooks(x)):
            torch.testing.assert_close(a, b)
    graph.train()
    sum(f.sum() for f in graph(x)).backward()
    missing = [n for n, p in graph.named_parameters() if p.grad is None]
    assert not missing


def test_reset_classifier_keeps_device_dtype_mode_and_pool():
    model = timm.create_model('dm_nf_regnet_b0', **SMALL).eval().to(device='meta', dtype=torch.float64)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), torch.nn.Identity) and model.num_classes == 0
    model.reset_classifier(7)
    fc = model.get_classifier()
    assert (fc.weight.device.type, fc.weight.dtype, fc.weight.shape) == ('meta', torch.float64, (7, 960))
    assert not any(m.training for m in model.modules())
    x = torch.empty(2, 3, 64, 64, device='meta', dtype=torch.float64)
    assert model(x).shape == (2, 7)  # global_pool=None kept the average pool
    model.reset_classifier(0, '')
    assert model(x).shape == (2, 960, 2, 2)


@pytest.mark.parametrize('name', KINDS)
def test_pruned_to_a_tap_the_features_end_there(name):
    x = torch.randn(2, 3, 64, 64)
    model = perturb_(_small(name)).eval()
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        for index in (0, 2):
            pruned = _small(name).eval()
            pruned.load_state_dict(model.state_dict())
            # the head, sized for the final features, goes even with prune_head=False
            assert pruned.prune_intermediate_layers([index], prune_head=False) == [index]
            torch.testing.assert_close(pruned.forward_features(x), taps[index])
            assert pruned.num_features == model.feature_info[index]['num_chs'] and pruned.num_classes == 0
            torch.testing.assert_close(pruned(x), taps[index])  # no pool, no classifier left
            if index == 0:  # tap 0 is the stem conv: a ResNet stem's max pool goes too
                assert [name for name, _ in pruned.stem.named_children()] == ['conv'] and len(pruned.stages) == 0


def test_load_checkpoint_picks_the_ema_weights(tmp_path):
    model = perturb_(_small('nf_resnet26'), seed=1)
    ema = perturb_(_small('nf_resnet26'), seed=2)
    path = tmp_path / 'checkpoint.pth.tar'  # the layout train.py saves
    torch.save({'epoch': 1, 'arch': 'nf_resnet26', 'state_dict': model.state_dict(),
                'state_dict_ema': ema.state_dict()}, path)
    x = torch.randn(1, 3, 64, 64)
    for use_ema, source in ((False, model), (True, ema)):
        loaded = _small('nf_resnet26').eval()
        timm.models.load_checkpoint(loaded, str(path), use_ema=use_ema)
        with torch.no_grad():
            assert rel_err(loaded(x), source.eval()(x)) < 1e-6


def test_model_ema_v3_averages_and_its_copy_runs_on_its_own_weights():
    model = _small('dm_nf_regnet_b0')
    ema = ModelEmaV3(model, decay=0.75)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    perturb_(model, seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    ema.update(model)
    for n, p in ema.module.named_parameters():
        torch.testing.assert_close(p, 0.75 * before[n] + 0.25 * dict(model.named_parameters())[n])
    # the copy computes with its own (averaged) weights, not the live model's
    reference = _small('dm_nf_regnet_b0').eval()
    reference.load_state_dict(ema.module.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ema.module.eval()(x), reference(x)) < 1e-6
        assert rel_err(model.eval()(x), reference(x)) > 1e-3


def test_scriptable_exportable_layer_config_scripts():
    with set_layer_config(scriptable=True, exportable=True):
        model = perturb_(_small('dm_nf_regnet_b0')).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(torch.jit.script(model)(x), model(x)) < 1e-5


# --- timm's own train.py (not on PyPI: set TIMM_SCRIPTS_DIR to a pytorch-image-models checkout) ---

SCRIPTS = os.environ.get('TIMM_SCRIPTS_DIR')


@pytest.mark.slow
@pytest.mark.skipif(not (SCRIPTS and (Path(SCRIPTS) / 'train.py').is_file()),
                    reason='timm ships train.py only in its repository: set TIMM_SCRIPTS_DIR to a checkout')
def test_timm_train_py_with_ema_and_grad_checkpointing(tmp_path):
    from test_run import _tiny_image_folder
    data = _tiny_image_folder(tmp_path / 'data')
    cmd = [sys.executable, str(Path(SCRIPTS) / 'train.py'), '--data-dir', str(data), '--model', 'dm_nf_regnet_b0',
           '--model-kwargs', 'depths=(1,1,1,1)', '--num-classes', '2', '--img-size', '32', '--device', 'cpu',
           '--workers', '1', '-b', '4', '--epochs', '1', '--warmup-epochs', '0', '--lr', '0.01',
           '--model-ema', '--model-ema-decay', '0.5', '--grad-checkpointing',
           '--output', str(tmp_path), '--experiment', 'run']
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'), cwd=SCRIPTS)
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = torch.load(tmp_path / 'run' / 'last.pth.tar', map_location='cpu', weights_only=False)
    assert checkpoint['arch'] == 'dm_nf_regnet_b0'
    live, ema = checkpoint['state_dict'], checkpoint['state_dict_ema']
    assert live.keys() == ema.keys()
    assert any(not torch.equal(live[k], ema[k]) for k in live)  # the EMA lags the trained weights
