"""The plain nf_* names are a drop-in for timm's NormFreeNet: same state_dict, same logits, same pretrained cfgs."""
import subprocess
import sys

import pytest
import timm
import torch

from timm_nf.models.variants import TIMM_HAS

from helpers import OUR_TIMM_FLAVOUR, TIMM_NAMES, perturb_, rel_err, timm_reference


def test_replaced_names_are_ours_and_others_are_timms():
    assert set(TIMM_NAMES) == TIMM_HAS
    for name in OUR_TIMM_FLAVOUR:
        assert timm.models.model_entrypoint(name).__module__ == 'timm_nf.models.nfnet'
    for name in ('nf_seresnet50', 'nf_ecaresnet26', 'nfnet_f0', 'dm_nfnet_f0', 'eca_nfnet_l0'):
        assert timm.models.model_entrypoint(name).__module__ == 'timm.models.nfnet'
    assert {'nf_resnet50', 'nf_regnet_b1', 'nf_seresnet50'} <= set(timm.list_models(module='nfnet'))


def test_timms_pretrained_tags_stay_default():
    assert timm.list_pretrained('nf_*') == ['nf_regnet_b1.ra2_in1k', 'nf_resnet50.ra2_in1k']
    for name, crop in (('nf_regnet_b1', 0.9), ('nf_resnet50', 0.94)):
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.tag == 'ra2_in1k' and cfg.hf_hub_id == f'timm/{name}.ra2_in1k'
        assert cfg.input_size == (3, 256, 256) and cfg.test_input_size == (3, 288, 288) and cfg.crop_pct == crop
    assert timm.models.get_pretrained_cfg('nf_regnet_b0').input_size == (3, 192, 192)


def test_import_gives_no_overwriting_warning():
    # timm's "Overwriting ... in registry" is a UserWarning; other categories (torch deprecations) are not ours
    code = ('import warnings; warnings.simplefilter("error", UserWarning); import timm, timm_nf; '
            'print(len(timm.list_models("*nf_*")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'Overwriting' not in out.stderr


@pytest.mark.parametrize('name', TIMM_NAMES)
def test_same_state_dict_and_logits_as_timm(name):
    ref = perturb_(timm_reference(name)).eval()
    ours = timm.create_model(name).eval()
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert all(our_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    ours.load_state_dict(ref_sd)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.parametrize('name', ['nf_resnet50', 'nf_regnet_b1'])
@pytest.mark.parametrize('size_key', ['input_size', 'test_input_size'])
def test_same_logits_at_train_and_test_size(name, size_key):
    ref = perturb_(timm_reference(name)).eval()
    ours = timm.create_model(name).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, *ours.pretrained_cfg[size_key])
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


def test_pretrained_weights_load_with_head_and_input_adaptation(tmp_path):
    """timm's loader with a timm-format checkpoint: strict load, then in_chans=1 and num_classes=5 adaptation."""
    ref = perturb_(timm_reference('nf_regnet_b0')).eval()
    path = tmp_path / 'weights.pth'
    torch.save(ref.state_dict(), path)
    overlay = dict(file=str(path))
    loaded = timm.create_model('nf_regnet_b0', pretrained=True, pretrained_cfg_overlay=overlay).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(loaded(x), ref(x)) < 1e-5
    adapted = timm.create_model('nf_regnet_b0', pretrained=True, pretrained_cfg_overlay=overlay, in_chans=1,
                                num_classes=5).eval()
    assert adapted.stem.conv.weight.shape[1] == 1 and adapted.get_classifier().out_features == 5
    torch.testing.assert_close(adapted.stem.conv.weight, ref.stem.conv.weight.sum(1, keepdim=True))
    torch.testing.assert_close(adapted.stages[0][0].conv1.weight, ref.stages[0][0].conv1.weight)
    assert adapted(torch.randn(2, 1, 64, 64)).shape == (2, 5)


def test_checkpoint_with_wrong_keys_is_refused(tmp_path):
    model = timm.create_model('nf_resnet26')
    state = model.state_dict()
    state.pop('stem.conv.gain')
    state['stem.conv.extra'] = torch.zeros(1)
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    with pytest.raises(RuntimeError) as err:
        timm.models.load_checkpoint(timm.create_model('nf_resnet26'), str(path))
    assert 'Missing key(s)' in str(err.value) and 'stem.conv.gain' in str(err.value)
    assert 'Unexpected key(s)' in str(err.value) and 'stem.conv.extra' in str(err.value)
