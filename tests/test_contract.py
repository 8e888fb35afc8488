"""timm's model contract (as timm's own tests/test_models.py checks it) for every registered name."""
import pytest
import timm
import torch
from timm.models import group_parameters

from helpers import ALL_NAMES, perturb_, rel_err

# one of each structure: paper ResNet / RegNet, timm-flavour ResNet / RegNet; one block per stage keeps them quick
KINDS = ['dm_nf_resnet50', 'dm_nf_regnet_b0', 'nf_resnet26', 'nf_regnet_b0']
SMALL = dict(depths=(1, 1, 1, 1))


@pytest.mark.parametrize('name', ALL_NAMES)
def test_api_contract_at_input_size(name):
    """Shapes at the data config's input size (on the meta device), heads, groups, weight decay, classifier order."""
    model = timm.create_model(name, device='meta')
    cfg = model.pretrained_cfg
    x = torch.empty(1, *cfg['input_size'], device='meta')
    assert model.in_chans == cfg['input_size'][0]
    features = model.forward_features(x)
    assert features.shape == (1, model.num_features, *cfg['pool_size'])
    assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
    assert model(x).shape == (1, 1000)
    final, intermediates = model.forward_intermediates(x)
    assert final.shape == features.shape
    assert [t.shape[1] for t in intermediates] == [f['num_chs'] for f in model.feature_info]
    size = cfg['input_size'][-1]
    assert [t.shape[-1] for t in intermediates] == [-(-size // r) for r in (2, 4, 8, 16, 32)]

    params = dict(model.named_parameters())
    no_decay = model.no_weight_decay()
    assert no_decay <= set(params)
    assert {n for n in params if n.endswith(('gain', 'bias'))} == no_decay
    assert len(group_parameters(model, model.group_matcher())) > 1
    assert list(params)[-2:] == ['head.fc.weight', 'head.fc.bias']  # timm's AGC skips the last two
    assert model.get_classifier() is model.head.fc
    state = model.state_dict()
    assert cfg['classifier'] + '.weight' in state and cfg['first_conv'] + '.weight' in state

    model.reset_classifier(0)
    assert model(x).shape == (1, model.num_features)
    model.reset_classifier(0, '')
    assert model(x).shape == features.shape
    with pytest.raises(TypeError, match='not_an_arg'):
        timm.create_model(name, device='meta', not_an_arg=1)


# real-number forwards for every structure up to ~30M parameters; the deeper and wider variants share their code
# and are covered at full size on the meta device above
FORWARD_NAMES = [n for n in ALL_NAMES if n.endswith(('resnet26', 'resnet50', 'b0', 'b1', 'b2', 'b3', 'b4'))]


@pytest.mark.parametrize('name', FORWARD_NAMES)
def test_forward_and_grad_checkpointing(name):
    model = timm.create_model(name, num_classes=0, global_pool='').eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model(x)
        assert features.dim() == 4 and torch.isfinite(features).all()
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, features)
        assert len(intermediates) == 5
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), features)


@pytest.mark.parametrize('name', KINDS)
def test_backward_reaches_every_parameter(name):
    model = perturb_(timm.create_model(name, num_classes=42, drop_path_rate=0.0, **SMALL))
    with torch.no_grad():  # a zero-initialised classifier (dm_ RegNets) or SkipInit gain would stop every gradient
        model.head.fc.weight.normal_(0.0, 0.05)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 42)
    out.square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize('name', KINDS)
def test_compilers_and_formats(name):
    model = timm.create_model(name, **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        assert rel_err(torch.jit.script(model)(x), y) < 1e-5
        torch._dynamo.reset()
        # backend='eager' checks dynamo captures one graph (fullgraph) without paying for inductor's codegen
        assert rel_err(torch.compile(model, fullgraph=True, backend='eager')(x), y) < 1e-5
        assert rel_err(torch.export.export(model, (x,)).module()(x), y) < 1e-5
        last = model.to(memory_format=torch.channels_last)
        assert rel_err(last(x.to(memory_format=torch.channels_last)), y) < 1e-4
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast('cpu', dtype=dtype):
                low = model(x)
            assert low.dtype == dtype and rel_err(low.float(), y) < 0.1


@pytest.mark.parametrize('name', KINDS)
def test_features_only(name):
    x = torch.randn(2, 3, 64, 64)
    for feature_cls in (None, 'getter'):
        kwargs = dict(feature_cls=feature_cls) if feature_cls else {}
        model = timm.create_model(name, features_only=True, **SMALL, **kwargs).eval()
        outs = model(x)
        assert len(outs) == 5
        assert [o.shape[1] for o in outs] == model.feature_info.channels()
        assert [64 // o.shape[-1] for o in outs] == model.feature_info.reduction()


@pytest.mark.parametrize('name', KINDS)
def test_prune_intermediate_layers(name):
    model = timm.create_model(name, **SMALL).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        model.prune_intermediate_layers([1, 2])
        assert len(model.stages) == 2 and model.num_classes == 0
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    for a, b in zip(full, pruned):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('name', KINDS)
def test_device_dtype_in_chans_num_classes(name):
    model = timm.create_model(name, device='meta', dtype=torch.bfloat16, **SMALL)
    assert {(t.device.type, t.dtype) for t in model.state_dict().values()} == {('meta', torch.bfloat16)}
    model = timm.create_model(name, in_chans=1, num_classes=7, **SMALL)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize('output_stride', [8, 16])
def test_output_stride(output_stride):
    for name in ('dm_nf_resnet50', 'nf_regnet_b0'):
        model = timm.create_model(name, output_stride=output_stride, num_classes=0, global_pool='', **SMALL)
        assert model(torch.randn(1, 3, 64, 64)).shape[-1] == 64 // output_stride


def test_drop_rates_are_active_in_training_only():
    model = timm.create_model('dm_nf_regnet_b0', drop_rate=0.5, drop_path_rate=0.5, **SMALL)
    for block in (b for s in model.stages for b in s):
        block.skipinit_gain.data.fill_(1.0)
    torch.nn.init.normal_(model.head.fc.weight)
    assert model.head.drop.p == 0.5
    x = torch.randn(4, 3, 64, 64)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dm_nf_resnet50', 'nf_resnet50'])
def test_600_layer_net_is_finite_at_224(name):
    """The paper's SPP net (4 × 50 bottlenecks) at 224 px: no NaN or Inf at init, in fp32 and under bf16 autocast."""
    model = timm.create_model(name, depths=(50, 50, 50, 50)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.isfinite(model.forward_features(x)).all()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert torch.isfinite(model.forward_features(x)).all()
