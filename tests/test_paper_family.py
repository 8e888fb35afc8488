"""The dm_ family follows the paper and DeepMind's reference code (deepmind-research, nfnets/)."""
import math

import pytest
import timm
import torch
from timm.layers import DropPath

from timm_nf.layers import NONLINEARITY_GAMMA, WSConv2d
from timm_nf.models.block import NFBlock

from helpers import DM_NAMES

# parameter counts at 1000 classes, derived from the reference structure (DeepMind's nf_resnet.py, nf_regnet.py)
PAPER_PARAMS_M = {
    'dm_nf_resnet50': 25.56, 'dm_nf_resnet101': 44.55, 'dm_nf_resnet152': 60.19, 'dm_nf_resnet200': 64.67,
    'dm_nf_resnet288': 146.46, 'dm_nf_regnet_b0': 8.60, 'dm_nf_regnet_b1': 10.02, 'dm_nf_regnet_b2': 13.79,
    'dm_nf_regnet_b3': 18.14, 'dm_nf_regnet_b4': 29.32, 'dm_nf_regnet_b5': 48.71, 'dm_nf_regnet_b6': 70.05,
    'dm_nf_regnet_b7': 101.74, 'dm_nf_regnet_b8': 142.31,
}
REGNET_SIZES = {0: (192, 224, 0.2), 1: (224, 256, 0.2), 2: (240, 272, 0.3), 3: (288, 320, 0.3), 4: (320, 384, 0.4),
                5: (384, 456, 0.4), 6: (448, 528, 0.5), 7: (512, 600, 0.5), 8: (600, 672, 0.5)}


def test_registered_names():
    assert sorted(timm.list_models('dm_nf_*')) == sorted(DM_NAMES)


@pytest.mark.parametrize('name', DM_NAMES)
def test_parameter_count(name):
    model = timm.create_model(name, device='meta')
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == PAPER_PARAMS_M[name]


def _blocks(model):
    return [b for stage in model.stages for b in stage]


def test_beta_alpha_schedule_constants():
    """β = 1/sqrt(expected var): 1 for the net's first block, then 1 + kα² within a stage, reset after each first block."""
    model = timm.create_model('dm_nf_resnet50', device='meta')
    gamma, alpha = NONLINEARITY_GAMMA['relu'], 0.2
    var, expected_var = 1.0, []
    for depth in (3, 4, 6, 3):
        for k in range(depth):
            expected_var.append(var)
            var = (1.0 if k == 0 else var) + alpha ** 2
    assert expected_var[:5] == pytest.approx([1.0, 1.04, 1.08, 1.12, 1.04])
    for block, v in zip(_blocks(model), expected_var):
        assert block.conv1.input_scale == pytest.approx(gamma / math.sqrt(v), rel=1e-12)
        assert block.conv3.output_scale == alpha
        if block.downsample is not None:
            assert block.downsample.conv.input_scale == pytest.approx(gamma / math.sqrt(v), rel=1e-12)


def test_variance_staircase_at_init():
    """With the SkipInit gain set to 1, block outputs follow Var = 1 + kα² per stage (reset after first blocks)."""
    model = timm.create_model('dm_nf_resnet50', depths=(4, 4, 4, 4)).eval()  # at 128 px
    for block in _blocks(model):
        block.skipinit_gain.data.fill_(1.0)
    variances = []
    hooks = [b.register_forward_hook(lambda m, i, o: variances.append(o.var(dim=(0, 2, 3)).mean().item()))
             for b in _blocks(model)]
    with torch.no_grad():
        model(torch.randn(16, 3, 128, 128))
    for h in hooks:
        h.remove()
    expected = [1 + (k + 1) * 0.04 for _ in range(4) for k in range(4)]
    # the last stage (4x4 px) is dominated by zero padding, so it is only required to reset and grow
    assert variances[:12] == pytest.approx(expected[:12], rel=0.1)
    assert variances[12] < variances[11] and variances[12:] == sorted(variances[12:])


def test_resnet_structure():
    model = timm.create_model('dm_nf_resnet50', device='meta')
    assert isinstance(model.stem.conv, WSConv2d) and model.stem.conv.kernel_size == (7, 7)
    assert isinstance(model.stem.pool, torch.nn.MaxPool2d)
    assert model.stem.conv.input_scale == 1.0  # γ lives in the activations, and the stem sees none
    first = model.stages[1][0]
    assert isinstance(first.downsample.pool, torch.nn.Identity)  # strided 1x1 projection, no avg-pool
    assert first.downsample.conv.stride == (2, 2) and first.conv2.stride == (2, 2)
    assert model.stages[0][0].downsample is not None  # 64 → 256 at stride 1 still projects
    assert model.final_act_gamma == NONLINEARITY_GAMMA['relu'] and isinstance(model.final_conv, torch.nn.Identity)
    for block in _blocks(model):
        assert block.skipinit_gain is not None and block.skipinit_gain.shape == ()
        assert block.conv1.out_channels == block.conv3.out_channels // 4 and block.attn is None


def test_regnet_structure():
    model = timm.create_model('dm_nf_regnet_b0', device='meta')
    blocks = _blocks(model)
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.out_channels == 36 and len(model.stem) == 1
    assert blocks[0].conv1.out_channels == 32  # expansion 1 for the first block: int(36·1) floored to groups of 8
    in_chs = blocks[1].conv1.in_channels
    width = int(in_chs * 2.25) // 8 * 8
    assert blocks[1].conv1.out_channels == width and blocks[1].conv2.groups == width // 8
    assert blocks[1].attn.fc1.out_channels == int(width * 0.5)
    assert isinstance(blocks[0].downsample.pool, torch.nn.AvgPool2d)
    assert model.final_conv.out_channels == int(1280 * 330 / 440) and model.final_conv.input_scale == 1.0
    assert model.cfg.act == 'silu' and model.final_act_gamma == NONLINEARITY_GAMMA['silu']
    assert model.cfg.drop_rate == 0.2


def test_classifier_init():
    resnet = timm.create_model('dm_nf_resnet50')
    assert resnet.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    regnet = timm.create_model('dm_nf_regnet_b0')
    assert regnet.head.fc.weight.abs().max().item() == 0.0
    for model in (resnet, regnet):
        assert all(b.skipinit_gain.item() == 0.0 for b in _blocks(model))
        assert all(m.gain.eq(1).all() and m.bias.eq(0).all() for m in model.modules() if isinstance(m, WSConv2d))


def test_squeeze_excite_init():
    """dm_: Haiku's Linear default (std 1/√fan_in, cut at ±2 std: 0.88/√fan_in); nf_: timm's N(0, 1/fan_in)."""
    for name, std, cut in (('dm_nf_regnet_b0', 0.880, True), ('nf_regnet_b0', 1.0, False)):
        fcs = [m for b in _blocks(timm.create_model(name, depths=(1, 2, 2, 1))) for m in (b.attn.fc1, b.attn.fc2)]
        scaled = torch.cat([(fc.weight * fc.in_channels ** 0.5).flatten() for fc in fcs])
        assert scaled.std().item() == pytest.approx(std, rel=0.02), name
        assert (scaled.abs().max().item() <= 2.0 + 1e-6) == cut, name  # float32 rounding at the cut
        assert all(fc.bias.eq(0).all() for fc in fcs)


def test_stochastic_depth_schedule():
    model = timm.create_model('dm_nf_regnet_b0', drop_path_rate=0.2, device='meta')
    blocks = _blocks(model)
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for b in blocks]
    assert rates == pytest.approx([0.2 * i / len(blocks) for i in range(len(blocks))])
    assert all(not b.drop_path.scale_by_keep for b in blocks[1:])
    assert timm.create_model('dm_nf_resnet50', device='meta').stages[3][2].drop_path.drop_prob == \
        pytest.approx(0.1 * 15 / 16)  # default rate 0.1


@pytest.mark.parametrize('level', range(9))
def test_regnet_data_config(level):
    train, test, drop = REGNET_SIZES[level]
    model = timm.create_model(f'dm_nf_regnet_b{level}', device='meta')
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, train, train) and cfg['test_input_size'] == (3, test, test)
    assert cfg['crop_pct'] == pytest.approx(train / (train + 32), abs=1e-4)
    assert cfg['test_crop_pct'] == pytest.approx(test / (test + 32), abs=1e-4)
    assert cfg['interpolation'] == 'bicubic' and model.drop_rate == drop


def test_ws_formula_with_variance_floor():
    """Ŵ = gain·(W − mean)·rsqrt(max(var·fan_in, 1e-4)), biased var; the floor keeps constant filters finite."""
    conv = WSConv2d(4, 3, 3, var_floor=1e-4)
    with torch.no_grad():
        conv.weight[0].fill_(0.5)  # zero variance: the floor holds
        conv.gain.copy_(torch.tensor([2.0, 0.5, 1.5]).view(3, 1, 1, 1))
    w = conv.weight.detach().reshape(3, -1)
    expected = (w - w.mean(1, keepdim=True)) * conv.gain.detach().view(3, 1) / torch.sqrt(
        torch.clamp(w.var(1, unbiased=False, keepdim=True) * 36, min=1e-4))
    weight, _ = conv.standardized_weight()
    torch.testing.assert_close(weight.reshape(3, -1), expected, rtol=1e-6, atol=1e-7)
    assert weight[0].abs().max() == 0


def test_nf_block_is_identity_at_init():
    block = NFBlock(32, 32, 8, 1, stride=1, dilation=1, first_dilation=1, alpha=0.2, beta=1.0, gamma=1.7, act='relu')
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(block(x), x)
