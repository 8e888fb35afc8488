"""SPP on any timm model: one model per naming convention, every statistic against a forward pass stepped through by
hand (no hooks) with the statistics written out as sums; --blocks for what the conventions miss; seeded weights."""
import csv
import math

import pytest
import timm
import torch
from torch import nn

from timm_nf import _download
from timm_nf.spp import cli as spp_cli
from timm_nf.spp import signal_propagation
from timm_nf.spp.cli import main as spp_main
from timm_nf.spp.conventions import match_blocks


def _by_hand(x: torch.Tensor, channel_dim: int):
    """(avg squared mean, avg biased variance) per channel, written out: mean over every other position."""
    x = x.double().movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim])  # (positions, channels)
    mean = x.sum(0) / x.shape[0]
    var = ((x - mean) ** 2).sum(0) / x.shape[0]
    return (mean ** 2).mean().item(), var.mean().item()


def _branch_var(x: torch.Tensor, channel_dim: int) -> float:
    return _by_hand(x, channel_dim)[1]


def _perturb_norms_(model: nn.Module) -> nn.Module:
    """Zero-initialised last norms would make every branch variance 0 = 0; give every norm a non-trivial affine."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if hasattr(m, 'gamma') and isinstance(m.gamma, nn.Parameter):  # ConvNeXt's layer scale
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=gen) * 0.5 + 0.25)
    return model


def _train_mode_norms(model: nn.Module) -> nn.Module:
    """The hand path normalises BatchNorm with batch statistics, as signal_propagation does at initialisation."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    return model


def _check(result, expected):
    assert len(result.rows) == len(expected)
    for row, (stage, block, sq, var, res) in zip(result.rows, expected):
        assert (row.stage, row.block) == (stage, block)
        assert row.avg_sq_mean == pytest.approx(sq, rel=1e-4, abs=1e-7), row
        assert row.avg_var == pytest.approx(var, rel=1e-4), row
        if res is None:
            assert math.isnan(row.res_avg_var), row
        else:
            assert row.res_avg_var == pytest.approx(res, rel=1e-4), row


@torch.no_grad()
def _hand_convnext(model, x):
    h = model.stem(x)
    rows = [(0, 0, *_by_hand(h, 1), None)]
    for s, stage in enumerate(model.stages, start=1):
        h = stage.downsample(h)
        for b, blk in enumerate(stage.blocks):
            y = blk.conv_dw(h)
            if blk.use_conv_mlp:
                res = _branch_var(blk.mlp(blk.norm(y)), 1)
            else:
                res = _branch_var(blk.mlp(blk.norm(y.permute(0, 2, 3, 1))), 3)
            h = blk(h)
            rows.append((s, b, *_by_hand(h, 1), res))
    return rows


@pytest.mark.parametrize('conv_mlp', [False, True])
def test_stages_blocks_convnext(conv_mlp):
    model = _perturb_norms_(timm.create_model('convnext_atto', depths=(1, 2, 1, 1), dims=(8, 16, 24, 32),
                                              conv_mlp=conv_mlp)).eval()
    x = torch.randn(2, 3, 64, 64)
    result = signal_propagation(model, x)
    _check(result, _hand_convnext(model, x))
    assert [r.stage for r in result.rows] == [0, 1, 2, 2, 3, 4]


@torch.no_grad()
def test_layer_n_resnet():
    model = _perturb_norms_(timm.create_model('resnet18', layers=[1, 2, 1, 1]))
    x = torch.randn(2, 3, 64, 64)
    result = signal_propagation(model, x)
    hand = _train_mode_norms(model)
    h = hand.maxpool(hand.act1(hand.bn1(hand.conv1(x))))
    expected = [(0, 0, *_by_hand(h, 1), None)]
    for s in range(1, 5):
        for b, blk in enumerate(getattr(hand, f'layer{s}')):
            res = _branch_var(blk.bn2(blk.conv2(blk.act1(blk.bn1(blk.conv1(h))))), 1)
            h = blk(h)
            expected.append((s, b, *_by_hand(h, 1), res))
    _check(result, expected)


@torch.no_grad()
def test_s_n_regnet():
    model = _perturb_norms_(timm.create_model('regnety_002'))
    x = torch.randn(2, 3, 32, 32)
    result = signal_propagation(model, x)
    hand = _train_mode_norms(model)
    h = hand.stem(x)
    expected = [(0, 0, *_by_hand(h, 1), None)]
    for s in range(1, 5):
        for b, blk in enumerate(getattr(hand, f's{s}').children()):
            res = _branch_var(blk.conv3(blk.se(blk.conv2(blk.conv1(h)))), 1)
            h = blk(h)
            expected.append((s, b, *_by_hand(h, 1), res))
    _check(result, expected)
    assert len(result.rows) == 1 + 1 + 3 + 7 + 2  # regnety_002: depths 1, 3, 7, 2


@torch.no_grad()
def test_blocks_of_stages_mobilenet():
    model = _perturb_norms_(timm.create_model('mobilenetv3_large_100'))
    x = torch.randn(2, 3, 32, 32)
    result = signal_propagation(model, x)
    hand = _train_mode_norms(model)
    h = hand.bn1(hand.conv_stem(x))
    expected = [(0, 0, *_by_hand(h, 1), None)]
    for s, stage in enumerate(hand.blocks, start=1):
        for b, blk in enumerate(stage):
            res = None
            if blk.has_skip and type(blk).__name__ == 'DepthwiseSeparableConv':
                res = _branch_var(blk.bn2(blk.conv_pw(blk.se(blk.aa(blk.bn1(blk.conv_dw(h)))))), 1)
            elif blk.has_skip:
                y = blk.bn2(blk.conv_dw(blk.bn1(blk.conv_pw(h))))
                res = _branch_var(blk.bn3(blk.conv_pwl(blk.se(blk.aa(y)))), 1)
            h = blk(h)
            expected.append((s, b, *_by_hand(h, 1), res))
    _check(result, expected)
    kinds = {type(blk).__name__ for stage in hand.blocks for blk in stage if blk.has_skip}
    assert kinds == {'DepthwiseSeparableConv', 'InvertedResidual'}  # both branch probes were exercised
    assert sum(math.isnan(r.res_avg_var) for r in result.rows[1:]) > 0  # blocks without a skip stay blank


@torch.no_grad()
def test_blocks_vit_tokens_are_positions():
    model = _perturb_norms_(timm.create_model('vit_tiny_patch16_224', img_size=32, depth=2)).eval()
    x = torch.randn(2, 3, 32, 32)
    result = signal_propagation(model, x)
    h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    assert h.shape == (2, 5, 192)  # 4 patches and the class token
    expected = [(0, 0, *_by_hand(h, 2), None)]
    for b, blk in enumerate(model.blocks):
        after_attn = h + blk.ls1(blk.attn(blk.norm1(h)))
        res = _branch_var(blk.mlp(blk.norm2(after_attn)), 2)
        h = blk(h)
        expected.append((1, b, *_by_hand(h, 2), res))
    _check(result, expected)


@torch.no_grad()
def test_layers_blocks_swin_is_channels_last():
    model = timm.create_model('swin_tiny_patch4_window7_224', img_size=32, window_size=4, embed_dim=16,
                              depths=(1, 1), num_heads=(1, 2)).eval()
    x = torch.randn(2, 3, 32, 32)
    result = signal_propagation(model, x)
    h = model.patch_embed(x)
    assert h.shape == (2, 8, 8, 16)  # NHWC: channels last
    expected = [(0, 0, *_by_hand(h, 3), None)]
    for s, layer in enumerate(model.layers, start=1):
        h = layer.downsample(h)
        for b, blk in enumerate(layer.blocks):
            h = blk(h)
            expected.append((s, b, *_by_hand(h, 3), None))  # Swin's block structure is not known: blank
    _check(result, expected)


class _NoConvention(nn.Module):
    """Residual blocks under a name no convention knows."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _Residual(), _Residual())
        self.spare = _Residual()  # never run
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


@torch.no_grad()
def test_blocks_pattern_for_what_the_conventions_miss():
    model, x = _NoConvention(), torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r'none of timm\'s conventions .* with blocks \('):
        signal_propagation(model, x)
    result = signal_propagation(model, x, blocks='body.[12]')
    h = model.body[0](x)
    expected = [(0, 0, *_by_hand(h, 1), None)]
    for b in (1, 2):
        h = model.body[b](h)
        expected.append((1, b - 1, *_by_hand(h, 1), None))
    _check(result, expected)
    # one part per dot: 'body.*' does not reach body.1.conv; a pattern that matches nothing says what is there
    assert [name for name, _ in match_blocks(model, 'body.*')[0]] == ['body.0', 'body.1', 'body.2']
    with pytest.raises(ValueError, match="'features.*' matches no module .* top-level modules are body, spare, head"):
        signal_propagation(model, x, blocks='features.*')
    with pytest.raises(ValueError, match='skipped a block or ran one twice'):
        signal_propagation(model, x, blocks='spare')


def test_cli_names_the_option_when_no_block_is_found(tmp_path, capsys):
    out = tmp_path / 'spp.png'
    assert spp_main(['densenet121', '--img-size', '32', '--batch', '2', '-o', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and '--blocks PATTERN' in err and not out.exists()
    table = tmp_path / 'spp.csv'
    assert spp_main(['densenet121', '--img-size', '32', '--batch', '2', '--blocks', 'features.denseblock*',
                     '-o', str(out), '--csv', str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [r['block'] for r in rows] == ['0', '0', '1', '2', '3']  # four dense blocks under one parent


def _spp_csv(tmp_path, name, *extra):
    out, table = tmp_path / f'{name}.png', tmp_path / f'{name}.csv'
    argv = ['dm_nf_regnet_b0', '--img-size', '64', '--batch', '2', '--skipinit-gain', '1', '-o', str(out),
            '--csv', str(table), *extra]
    assert spp_main(argv) == 0
    return table.read_text()


def test_seed_fixes_input_and_weights(tmp_path):
    first, again = _spp_csv(tmp_path, 'a'), _spp_csv(tmp_path, 'b')
    other = _spp_csv(tmp_path, 'c', '--seed', '1')
    assert first == again and first != other
    rows, other_rows = list(csv.DictReader(first.splitlines())), list(csv.DictReader(other.splitlines()))
    assert {(r['input_seed'], r['init_seed']) for r in rows} == {('0', '0')}
    assert {(r['input_seed'], r['init_seed']) for r in other_rows} == {('1', '1')}


def test_with_pretrained_weights_only_the_input_depends_on_the_seed(tmp_path, monkeypatch):
    torch.manual_seed(5)
    trained = timm.create_model('dm_nf_regnet_b0').state_dict()  # stands in for downloaded weights (offline here)
    create = timm.create_model

    def create_pretrained(name, pretrained=False, **kwargs):
        model = create(name, **kwargs)
        if pretrained:
            model.load_state_dict(trained)
        return model

    monkeypatch.setattr(timm, 'create_model', create_pretrained)
    for module in (spp_cli, _download):  # dm_nf_regnet_b0 has no published weights: pretend it has
        monkeypatch.setattr(module, 'check_has_weights', lambda name: None)
    seed0, seed1 = (_spp_csv(tmp_path, f's{s}', '--pretrained', '--seed', str(s)) for s in (0, 1))
    rows0, rows1 = (list(csv.DictReader(t.splitlines())) for t in (seed0, seed1))
    assert {(r['input_seed'], r['init_seed']) for r in rows0} == {('0', '')}
    assert {(r['input_seed'], r['init_seed']) for r in rows1} == {('1', '')}
    # same weights, other input: the numbers move a little, as they would with another batch
    assert rows0[1]['avg_var'] != rows1[1]['avg_var']
    assert float(rows0[1]['avg_var']) == pytest.approx(float(rows1[1]['avg_var']), rel=0.2)
