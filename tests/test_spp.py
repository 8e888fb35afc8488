"""timm_nf.spp: the statistics against hand computation, the model left as found, results files, CLI and errors."""
import copy
import dataclasses
import csv
import io
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models import nfnet as timm_nfnet

from timm_nf.spp import SPPResult, channel_stats, plot_spp, signal_propagation, write_csv
from timm_nf.spp.cli import main as spp_main
from timm_nf.spp.plot import y_scale

TINY = dict(depths=(1, 2, 1, 1), widths=(32, 64, 128, 256), stem_width=16)  # narrow: quick to build
STATS = ('avg_sq_mean', 'avg_var', 'res_avg_var')


def _tiny_dm(**kwargs):
    return timm.create_model('dm_nf_resnet50', **TINY, **kwargs)


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-6)


def test_channel_stats_hand_computed():
    # channel 0: 1, 3, 1, 3 → mean 2, biased var 1; channel 1: 0, 0, 0, 4 → mean 1, biased var 3
    x = torch.tensor([[[[1., 3.]], [[0., 0.]]], [[[1., 3.]], [[0., 4.]]]])
    stats = channel_stats(x)
    assert stats['avg_sq_mean'] == pytest.approx((4 + 1) / 2)
    assert stats['avg_var'] == pytest.approx((1 + 3) / 2)


def _manual_nf_spp(model, x):
    """The SPP rows of a timm_nf NFNet computed by stepping through the blocks by hand (no hooks)."""
    rows = []
    with torch.no_grad():
        h = model.stem(x)
        rows.append((channel_stats(h)['avg_sq_mean'], channel_stats(h)['avg_var'], math.nan))
        for stage in model.stages:
            for block in stage:
                out = block.act1(h)
                branch = block.conv2(block.act2(block.conv1(out)))
                conv3 = block.conv3
                end = F.conv2d(block.act3(branch), *conv3.standardized_weight(with_output_scale=False),
                               conv3.stride, conv3.padding, conv3.dilation, conv3.groups)
                h = block(h)
                var = torch.var(end, dim=(0, 2, 3), correction=0).mean().item()
                rows.append((channel_stats(h)['avg_sq_mean'], channel_stats(h)['avg_var'], var))
    return rows


@pytest.mark.parametrize('gain', [None, 1.0, 0.5])
def test_nf_statistics_match_a_manual_forward(gain):
    model = _tiny_dm().eval()
    if gain is not None:
        with torch.no_grad():
            for block in model.modules():
                if hasattr(block, 'skipinit_gain') and block.skipinit_gain is not None:
                    block.skipinit_gain.fill_(gain)
    x = torch.randn(2, 3, 64, 64)
    result = signal_propagation(model, x)
    expected = _manual_nf_spp(model, x)
    assert [r.index for r in result.rows] == list(range(6))
    assert [(r.stage, r.block) for r in result.rows] == [(0, 0), (1, 0), (2, 0), (2, 1), (3, 0), (4, 0)]
    for row, want in zip(result.rows, expected):
        for name, value in zip(STATS, want):
            got = getattr(row, name)
            assert (math.isnan(got) and math.isnan(value)) or _close(got, value), (row.index, name, got, value)


def test_residual_variance_is_taken_before_the_skipinit_gain():
    # the first block sees the same input whatever the gain, so its branch-end variance cannot depend on it
    model, x = _tiny_dm(), torch.randn(2, 3, 64, 64)
    at_zero = signal_propagation(model, x).rows[1]
    at_three = signal_propagation(model, x, skipinit_gain=3.0).rows[1]
    assert at_zero.res_avg_var > 0.5 and _close(at_zero.res_avg_var, at_three.res_avg_var)
    assert not _close(at_zero.avg_var, at_three.avg_var)


def _snapshot(model):
    return (copy.deepcopy(model.state_dict()), [m.training for m in model.modules()],
            [id(p) for p in model.parameters()], [p.requires_grad for p in model.parameters()])


def _hooks_left(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize('name', ['dm_nf_resnet50', 'resnet18'])
def test_model_left_as_found(name):
    model = _tiny_dm() if name.startswith('dm') else timm.create_model(name)
    model.train()
    model.stages[1].eval() if name.startswith('dm') else model.layer2.eval()  # mixed modes must come back as they were
    before, rng = _snapshot(model), torch.get_rng_state()
    gain = 1.0 if name.startswith('dm') else None
    signal_propagation(model, batch=2, img_size=64, skipinit_gain=gain)  # BN uses batch stats: no running-stat update
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:] and _hooks_left(model) == 0
    assert torch.equal(rng, torch.get_rng_state())


def test_model_left_as_found_when_the_forward_fails():
    model = _tiny_dm().train()
    before = _snapshot(model)
    with pytest.raises(ValueError, match='expected an input of shape'):
        signal_propagation(model, torch.randn(2, 1, 64, 64), skipinit_gain=1.0)  # wrong channel count
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:] and _hooks_left(model) == 0


def test_timm_normfreenet_matches_ours_with_the_same_weights():
    cfg = dataclasses.replace(timm_nfnet.model_cfgs['nf_resnet26'], channels=(32, 64, 128, 256), stem_chs=16)
    theirs = timm_nfnet.NormFreeNet(cfg)
    ours = timm.create_model('nf_resnet26', widths=(32, 64, 128, 256), stem_width=16)
    ours.load_state_dict(theirs.state_dict())
    a = signal_propagation(ours, batch=2, img_size=64, skipinit_gain=1.0)
    b = signal_propagation(theirs, batch=2, img_size=64, skipinit_gain=1.0)
    assert len(a.rows) == len(b.rows) == 9
    for x, y in zip(a.rows, b.rows):
        assert all(_close(getattr(x, s), getattr(y, s), 1e-3) for s in STATS if not math.isnan(getattr(y, s)))
    assert all(r.res_avg_var > 1e-3 for r in b.rows[1:])  # gains set to 1: the branches are measured, not zero


def test_resnet_families_give_the_block_output_statistics():
    v2 = signal_propagation(timm.create_model('resnetv2_50', layers=[1, 1, 1, 1]), batch=2, img_size=64)
    v1 = signal_propagation(timm.create_model('resnet18'), batch=2, img_size=64)
    assert [len(v2.rows), len(v1.rows)] == [5, 9]
    assert all(r.avg_var > 0 and r.avg_sq_mean >= 0 for r in v2.rows + v1.rows)
    with pytest.raises(ValueError, match='no SkipInit gain'):
        signal_propagation(timm.create_model('resnet18'), batch=2, img_size=64, skipinit_gain=1.0)
    with pytest.raises(ValueError, match=r'name the block modules with blocks \(') as error:  # the argument,
        signal_propagation(torch.nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8))
    assert '--blocks' not in str(error.value)  # never the command line's option


def test_folder_input_uses_the_images_found(tmp_path):
    from PIL import Image
    for i in range(3):
        Image.new('RGB', (80, 70), color=(40 * i, 100, 200)).save(tmp_path / f'img{i}.png')
    (tmp_path / 'notes.txt').write_text('not an image')
    result = signal_propagation(_tiny_dm(), str(tmp_path), batch=8, img_size=64)
    assert result.settings['batch'] == 3 and result.settings['img_size'] == 64


def test_csv_and_json_outputs(tmp_path):
    result = signal_propagation(_tiny_dm(), batch=2, img_size=64, skipinit_gain=1.0)
    rows = list(csv.DictReader(io.StringIO(write_csv([result, result], str(tmp_path / 'spp.csv')))))
    assert len(rows) == 12 and rows[0]['res_avg_var'] == '' and float(rows[1]['avg_var']) == result.rows[1].avg_var
    header = (tmp_path / 'spp.csv').read_text().splitlines()[0]
    assert header == 'model,index,stage,block,avg_sq_mean,avg_var,res_avg_var,input_seed,init_seed'
    assert rows[0]['input_seed'] == '0' and rows[0]['init_seed'] == ''  # a model passed in: its init is not ours
    back = SPPResult.from_json(result.to_json(str(tmp_path / 'spp.json')))
    assert back.model == result.model and back.settings['skipinit_gain'] == 1.0
    assert math.isnan(back.rows[0].res_avg_var) and back.rows[1:] == result.rows[1:]
    assert result.stage_starts() == [2, 4, 5]


def test_plot_written_and_log_scale_choice(tmp_path):
    result = signal_propagation(_tiny_dm(), batch=2, img_size=64)
    path = plot_spp([result], str(tmp_path / 'spp.png'), title='tiny')
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert [p.name for p in tmp_path.iterdir()] == ['spp.png']  # no temporary file left behind
    assert y_scale([0.001, 0.5, 2.0]) == 'log' and y_scale([0.9, 1.1, 300.0]) == 'linear'
    assert y_scale([0, 0]) == 'linear'


def test_cli_writes_figure_and_csv(tmp_path, capsys):
    out, table = tmp_path / 'spp.png', tmp_path / 'spp.csv'
    rc = spp_main(['dm_nf_regnet_b0', 'resnet18', '--img-size', '64', '--batch', '2', '--skipinit-gain', '1',
                   '-o', str(out), '--csv', str(table)])
    assert rc == 0 and out.stat().st_size < 300_000
    rows = list(csv.DictReader(table.open()))
    assert {r['model'] for r in rows} == {'dm_nf_regnet_b0', 'resnet18'} and len(rows) == (16 + 1) + (8 + 1)
    assert 'resnet18 has no SkipInit gain' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['nf_resnt50'], "unknown model 'nf_resnt50'; close matches: nf_resnet50"),
    (['resnet18', '--img-size', '16'], 'accepts 32 px or more'),
    (['resnet18', '--input', '{empty}'], 'no images in'),
    (['resnet18', '--input', '{missing}'], 'must be "gaussian" or a folder of images'),
    (['resnet18', '-o', '{dir}/spp.xyz'], "cannot draw a figure as"),
])
def test_cli_errors_say_what_was_expected(tmp_path, capsys, argv, message):
    (tmp_path / 'empty').mkdir()
    argv = [a.format(empty=tmp_path / 'empty', missing=tmp_path / 'missing', dir=tmp_path) for a in argv]
    out = tmp_path / 'spp.png'
    assert spp_main(['-o', str(out)] + argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
