"""timm_nf.fuse: fused models compute the unfused outputs with plain convs, export everywhere, and stay frozen."""
import dataclasses
import os
import warnings

import pytest
import timm
import torch
from helpers import ALL_NAMES, perturb_, rel_err, timm_reference
from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame
from timm.models import nfnet as timm_nfnet
from timm.utils import reparameterize_model
from torch import nn

from timm_nf.cli import main as cli_main
from timm_nf.fusion import FusedNormFreeNet, fuse, load_fused
from timm_nf.layers import WSConv2d, frozen
from timm_nf.models.fused import FusedNFBlock

TOL = 1e-5  # relative, fp32


def _model(name: str, **kwargs) -> nn.Module:
    model = perturb_(timm.create_model(name, **kwargs)).eval()
    with torch.no_grad():  # the dm_ family zero-inits the classifier, which would make the logits trivially equal
        model.head.fc.weight.normal_(0.0, 0.05)
    return model


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _assert_fully_fused(fused: nn.Module, head_too: bool = True) -> None:
    for name, module in fused.named_modules():
        assert not isinstance(module, (WSConv2d, ScaledStdConv2d, ScaledStdConv2dSame)), name
        assert getattr(module, 'skipinit_gain', None) is None, name
    # reparameterize_model leaves the classifier alone (it has no fuse()); fuse() freezes it too
    assert not any(p.requires_grad for n, p in fused.named_parameters() if head_too or not n.startswith('head.'))


@pytest.mark.parametrize('name', ALL_NAMES)
def test_every_variant_fuses_exactly(name):
    # few blocks keep the big variants fast; the second block of stage 2 has the identity shortcut, every later
    # block repeats one of the two block structures
    model = _model(name, depths=(1, 2, 1, 1))
    fused = fuse(model)
    _assert_fully_fused(fused)
    x = torch.randn(2, 3, 48, 48)
    assert rel_err(_outputs(fused, x), _outputs(model, x)) < TOL  # the classifier is random: logits see every feature


@pytest.mark.parametrize('name', ['nf_resnet26', 'dm_nf_regnet_b0'])
def test_full_depth_at_train_and_test_sizes(name):
    model = _model(name)
    fused = fuse(model)
    cfg = model.pretrained_cfg
    for size in {cfg['input_size'][-1], (cfg.get('test_input_size') or cfg['input_size'])[-1]}:
        x = torch.randn(1, 3, size, size)
        assert rel_err(_outputs(fused, x), _outputs(model, x)) < TOL, size


def test_loaded_weights_match_timm_normfreenet():
    # weights "loaded" from timm's own model (as a checkpoint would be), then fused: equal to timm's outputs
    reference = perturb_(timm_reference('nf_regnet_b0', depths=(1, 2, 1, 1)), seed=3).eval()
    ours = timm.create_model('nf_regnet_b0', depths=(1, 2, 1, 1)).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert rel_err(_outputs(fuse(ours), x), _outputs(reference, x)) < TOL


@pytest.mark.parametrize('cfg_name', ['nf_resnet26', 'nf_regnet_b0', 'nf_seresnet26', 'nf_ecaresnet26',
                                      'dm_nfnet_f0', 'eca_nfnet_l0'])
def test_timm_normfreenet_fuses_exactly(cfg_name):
    # covers SE after conv3 (attn gain stays a multiply), SE mid-block through SiLU, ECA, GammaAct with SAME padding
    cfg = dataclasses.replace(timm_nfnet.model_cfgs[cfg_name], depths=(1, 1, 1, 1), skipinit=True)
    model = perturb_(timm_nfnet.NormFreeNet(cfg)).eval()
    fused = fuse(model)
    assert isinstance(fused, FusedNormFreeNet)
    _assert_fully_fused(fused)
    assert not any(isinstance(m, timm_nfnet.GammaAct) for m in fused.stages.modules())
    x = torch.randn(2, 3, 67, 67)  # odd size: exercises dynamic SAME padding
    assert rel_err(_outputs(fused, x), _outputs(model, x)) < TOL


def test_reparam_model_fuse_and_fuse_agree():
    """timm's reparameterize_model (--reparam in timm's scripts), model.fuse() and timm_nf.fuse() give the same model."""
    model = _model('dm_nf_regnet_b0', depths=(1, 2, 1, 1)).train()  # timm's scripts reparameterize in training mode
    via_timm, via_method, via_function = reparameterize_model(model), model.fuse(), fuse(model)
    assert isinstance(model.stem.conv, WSConv2d) and model.training  # the original is left as it was
    reference = [(k, tuple(v.shape)) for k, v in via_function.state_dict().items()]
    x = torch.randn(2, 3, 64, 64)
    expected = _outputs(model.eval(), x)
    for fused in (via_timm, via_method, via_function):
        _assert_fully_fused(fused, head_too=fused is not via_timm)
        assert [(k, tuple(v.shape)) for k, v in fused.state_dict().items()] == reference
        assert [type(m) for m in fused.modules()] == [type(m) for m in via_function.modules()]
        assert rel_err(_outputs(fused.eval(), x), expected) < TOL
    assert sum(isinstance(m, FusedNFBlock) for m in via_timm.modules()) == 5


def test_fused_model_stays_frozen_inside_a_trained_parent():
    fused = fuse(_model('dm_nf_regnet_b0', depths=(1, 1, 1, 1)))
    parent = nn.Sequential(fused, nn.Linear(1000, 3))
    frozen._told_about_train = False
    with pytest.warns(UserWarning, match='stays in eval mode') as record:
        parent.train()
    assert len(record) == 1  # once, not once per fused module
    assert parent.training and parent[1].training
    assert not any(m.training for m in fused.modules())
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        parent.train()  # said once per process
    for ask in (lambda p: p.requires_grad_(), lambda p: setattr(p, 'requires_grad', True)):
        with pytest.raises(RuntimeError, match='cannot take gradients'):
            ask(fused.stem.conv.weight)
    with pytest.raises(RuntimeError, match='cannot take gradients'):
        fused.requires_grad_()
    with pytest.raises(RuntimeError, match='cannot take gradients'):
        parent.requires_grad_()
    assert not any(p.requires_grad for p in fused.parameters())
    loss = parent(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()  # the parent's own layer trains; nothing flows into the fused model
    assert parent[1].weight.grad is not None and all(p.grad is None for p in fused.parameters())
    assert fuse(fused) is fused and fused.fuse() is fused
    with pytest.raises(TypeError, match='NormFreeNet'):
        fuse(timm.create_model('resnet18').eval())


def test_channels_last_and_autocast():
    model = _model('dm_nf_regnet_b0', depths=(1, 1, 2, 1))
    x = torch.randn(2, 3, 64, 64)
    expected = _outputs(model, x)
    fused_cl = fuse(model).to(memory_format=torch.channels_last)
    assert rel_err(_outputs(fused_cl, x.to(memory_format=torch.channels_last)), expected) < TOL
    fused = fuse(model)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast('cpu', dtype=dtype):
            low = _outputs(fused, x)
        assert low.dtype == dtype
        assert rel_err(low.float(), expected) < 0.05, dtype  # reduced precision, not a fusion error


@pytest.mark.parametrize('name', ['nf_regnet_b0', 'dm_nf_resnet50'])  # symmetric, and SAME padding at an even size
def test_script_export_compile_onnx(tmp_path, name):
    model = _model(name, depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16)
    fused = fuse(model)
    x = torch.randn(2, 3, 64, 64)
    expected = _outputs(model, x)
    assert rel_err(_outputs(torch.jit.script(fused), x), expected) < TOL
    exported = torch.export.export(fused, (x,))
    assert rel_err(_outputs(exported.module(), x), expected) < TOL
    # aot_eager traces the whole graph through dynamo and AOT autograd without the slow C++ codegen of inductor
    compiled = torch.compile(fused, backend='aot_eager', fullgraph=True)
    assert rel_err(_outputs(compiled, x), expected) < TOL

    onnxruntime = pytest.importorskip('onnxruntime')
    path = str(tmp_path / 'fused.onnx')
    torch.onnx.export(fused, (x,), path, input_names=['x'], output_names=['logits'], dynamo=False)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    (onnx_out,) = session.run(None, {'x': x.numpy()})
    assert rel_err(torch.from_numpy(onnx_out), expected) < TOL


def _cli(capsys, *args):
    """(exit code, stderr) of `timm-nf fuse ARGS`, run in this process (a subprocess would re-import torch)."""
    code = cli_main(['fuse', *args])
    return code, capsys.readouterr().err


def test_cli_writes_loadable_fused_weights(tmp_path, capsys):
    model = _model('dm_nf_regnet_b0', num_classes=10)
    checkpoint = tmp_path / 'trained.pth'
    torch.save(model.state_dict(), checkpoint)
    out = tmp_path / 'fused.safetensors'
    code, err = _cli(capsys, 'dm_nf_regnet_b0', '--checkpoint', str(checkpoint), '--num-classes', '10', '-o', str(out))
    assert code == 0, err
    loaded = load_fused(str(out))  # model name and num_classes come from the file's metadata
    assert loaded.is_fused and not loaded.training
    x = torch.randn(2, 3, 64, 64)
    assert rel_err(_outputs(loaded, x), _outputs(model, x)) < TOL
    assert sorted(os.listdir(tmp_path)) == ['fused.safetensors', 'trained.pth']  # no temporary file left


def test_cli_bad_input_leaves_nothing(tmp_path, capsys):
    out = str(tmp_path / 'x.safetensors')
    code, err = _cli(capsys, 'no_such_model', '-o', out)
    assert code == 2 and "unknown model 'no_such_model'" in err
    code, err = _cli(capsys, 'resnet18', '-o', out)
    assert code == 2 and 'NormFreeNet' in err
    code, err = _cli(capsys, 'nf_resnet26', '--checkpoint', str(tmp_path / 'missing.pth'), '-o', out)
    assert code == 2 and 'not found' in err
    code, err = _cli(capsys, 'nf_resnet26', '-o', str(tmp_path / 'no_dir' / 'x.safetensors'))
    assert code == 2 and 'does not exist' in err
    assert os.listdir(tmp_path) == []
