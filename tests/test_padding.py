"""The dm_ family pads as the reference code (TensorFlow 'SAME'); the nf_ family keeps timm's symmetric padding.

SAME pads a side of n pixels by max((ceil(n/s) - 1)·s + (k - 1) + 1 - n, 0) in total, the smaller half before. The
amounts below are that formula worked out by hand for each layer the nets have.
"""
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers.pool2d_same import MaxPool2dSame
from torch import nn

from timm_nf.layers import WSConv2d
from timm_nf.layers.frozen import FusedConv2dSame
from timm_nf.layers.padding import max_pool

from helpers import perturb_, rel_err
from validate.op_count import eval_step_ops

TINY = dict(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16)  # every block structure, narrow

# (kernel, stride, n) → (pad before, pad after)
SAME_PADS = {
    (7, 2, 224): (2, 3), (7, 2, 129): (3, 3), (7, 2, 32): (2, 3), (7, 2, 33): (3, 3),
    (3, 2, 224): (0, 1), (3, 2, 129): (1, 1), (3, 2, 32): (0, 1), (3, 2, 33): (1, 1),
    (1, 2, 224): (0, 0), (1, 2, 129): (0, 0),
    (3, 1, 224): (1, 1), (3, 1, 129): (1, 1),
}


def _ws_conv(kernel, stride, padding):
    conv = WSConv2d(3, 4, kernel, stride=stride, var_floor=1e-4, padding=padding, dtype=torch.float64)
    perturb_(conv)
    return conv


@pytest.mark.parametrize('kernel, stride', [(7, 2), (3, 2), (1, 2), (3, 1)])
def test_conv_pads_as_the_formula_says(kernel, stride):
    h, w = 224, 129  # one even and one odd side in the same input: each side is padded on its own
    x = torch.randn(1, 3, h, w, dtype=torch.float64)
    conv = _ws_conv(kernel, stride, 'same')
    (top, bottom), (left, right) = SAME_PADS[kernel, stride, h], SAME_PADS[kernel, stride, w]
    weight, bias = conv.standardized_weight()
    by_hand = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride)
    with torch.no_grad():
        out = conv(x)
    assert out.shape[-2:] == (-(-h // stride), -(-w // stride))
    assert rel_err(out, by_hand) < 1e-14  # float64; the conv standardises its weight by its own kernel
    # the extra pad kernel only where the amount depends on the input size: strided, kernel above 1x1
    assert conv.same_pad == (stride > 1 and kernel > 1)
    symmetric = _ws_conv(kernel, stride, 'symmetric')
    symmetric.load_state_dict(conv.state_dict())
    odd = x[..., 1:, :]  # 223 x 129: SAME pads an odd side symmetrically
    with torch.no_grad():
        # timm's symmetric padding samples another grid along an even side of a strided layer
        assert (rel_err(symmetric(x), out) < 1e-14) == (kernel == 1 or stride == 1)
        assert rel_err(symmetric(odd), conv(odd)) < 1e-14


@pytest.mark.parametrize('n', [32, 33, 224, 129])
def test_max_pool_pads_with_minus_infinity(n):
    x = -1.0 - torch.rand(1, 2, n, n, dtype=torch.float64)  # all negative: a zero pad would win every edge window
    pool = max_pool('same')
    assert isinstance(pool, MaxPool2dSame)
    before, after = SAME_PADS[3, 2, n]
    by_hand = F.max_pool2d(F.pad(x, (before, after, before, after), value=float('-inf')), 3, 2)
    assert torch.equal(pool(x), by_hand) and (pool(x) < -1.0).all()
    assert isinstance(max_pool('symmetric'), nn.MaxPool2d) and max_pool('symmetric').padding == 1


def _same_by_hand(model: nn.Module) -> nn.Module:
    """`model` (built with symmetric padding) with every strided layer padded by hooks, from SAME_PADS' formula."""
    def pads(k, n):
        total = max((-(-n // 2) - 1) * 2 + k - n, 0)
        return total // 2, total - total // 2

    def hook(layer, value):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        layer.padding = 0 if isinstance(layer, nn.MaxPool2d) else (0, 0)

        def pad(_, args):
            (x,) = args
            (top, bottom), (left, right) = pads(k, x.shape[-2]), pads(k, x.shape[-1])
            return F.pad(x, (left, right, top, bottom), value=value)
        layer.register_forward_pre_hook(pad)

    for module in model.modules():
        stride = getattr(module, 'stride', 1)
        strided = (stride if isinstance(stride, int) else stride[0]) > 1
        if isinstance(module, WSConv2d) and strided and module.kernel_size[0] > 1:
            hook(module, 0.0)
        elif isinstance(module, nn.MaxPool2d):
            hook(module, float('-inf'))
    return model


@pytest.mark.parametrize('name', ['dm_nf_resnet50', 'dm_nf_regnet_b0'])
def test_whole_net_pads_as_the_reference(name):
    """The dm_ net equals the same weights with every strided layer padded by hand; at a size where every strided
    layer sees an odd size SAME is symmetric, so it also equals timm's padding there, and differs at even sizes."""
    kwargs = dict(TINY, dtype=torch.float64)
    model = perturb_(timm.create_model(name, **kwargs)).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0.0, 0.05)
        for block in (b for stage in model.stages for b in stage):
            block.skipinit_gain.fill_(0.7)  # residual branches on: they hold the strided 3x3 convs
    symmetric = timm.create_model(name, padding='symmetric', **kwargs).eval()
    symmetric.load_state_dict(model.state_dict())
    by_hand = _same_by_hand(timm.create_model(name, padding='symmetric', **kwargs).eval())
    by_hand.load_state_dict(model.state_dict())
    odd = 129 if name.startswith('dm_nf_resnet') else 161  # every strided layer sees an odd size
    with torch.no_grad():
        for size in (224, 64, 66, odd):
            x = torch.randn(2, 3, size, size, dtype=torch.float64)
            out = model(x)
            assert rel_err(out, by_hand(x)) < 1e-13, size
            assert rel_err(out, symmetric(x)) < 1e-13 if size == odd else rel_err(out, symmetric(x)) > 1e-3, size
            assert rel_err(model.fuse()(x), out) < 1e-13, size  # the fused net pads the same way


def test_families_differ_only_in_the_config_field():
    dm = timm.create_model('dm_nf_resnet50', device='meta')
    nf = timm.create_model('nf_resnet50', device='meta')
    assert (dm.cfg.padding, nf.cfg.padding) == ('same', 'symmetric')
    strided_same = sorted(n for n, m in dm.named_modules() if getattr(m, 'same_pad', False))
    assert strided_same == ['stages.1.0.conv2', 'stages.2.0.conv2', 'stages.3.0.conv2', 'stem.conv']
    assert isinstance(dm.stem.pool, MaxPool2dSame) and not isinstance(nf.stem.pool, MaxPool2dSame)
    assert not any(getattr(m, 'same_pad', False) for m in nf.modules())
    fused = timm.create_model('dm_nf_resnet50', **TINY).fuse()
    assert sorted(n for n, m in fused.named_modules() if isinstance(m, FusedConv2dSame)) == strided_same
    nf_same = timm.create_model('nf_resnet50', padding='same', device='meta')  # the field alone decides
    assert sorted(n for n, m in nf_same.named_modules() if getattr(m, 'same_pad', False)) == strided_same
    assert isinstance(nf_same.stem.pool, MaxPool2dSame)


def test_a_layer_refuses_a_padding_it_does_not_know():
    with pytest.raises(ValueError, match=r"padding must be one of \('symmetric', 'same'\), got 'SAME'"):
        WSConv2d(4, 4, 3, stride=2, padding='SAME')
    with pytest.raises(ValueError, match="got 'valid'"):
        max_pool('valid')


def test_same_padding_costs_one_pad_kernel_per_strided_layer():
    # ResNet: stem conv, stem max pool, three strided 3x3 convs; RegNet: stem conv, four strided 3x3 convs
    for name, pads in (('dm_nf_resnet50', 5), ('dm_nf_regnet_b0', 5), ('nf_resnet50', 0)):
        model = timm.create_model(name, **TINY)
        assert eval_step_ops(model, size=64).ops['constant_pad_nd'] == pads, name
