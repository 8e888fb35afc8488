"""validate/dp_benchmark.py on the CPU, shrunk: our net and the GroupNorm+WS peer in two modes (one the peer cannot run),
ratios, targets, the memory probe and the results file."""
import json

import pytest

pytest.importorskip('opacus')
from validate import dp_benchmark  # noqa: E402


def test_cpu_smoke_run(tmp_path, capsys, keep_threads):
    out = tmp_path / 'dp.json'
    code = dp_benchmark.main(['--models', 'dm_nf_resnet50', '--modes', 'hooks,ew', '--depths', '1,1,1,1', '--batch',
                              '2', '--rounds', '1', '--no-memory', '--out', str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {(e['model'], e['step']): e for e in result['table']}
    for mode in ('hooks', 'ew'):
        ours = rows['dm_nf_resnet50', mode]
        assert ours['error'] is None and ours['cpu_ratio'] == pytest.approx(
            ours['cpu_s'] / rows['dm_nf_resnet50', 'plain']['cpu_s'])
    # timm's StdConv2d reshapes its weight, which ExpandedWeights refuses: reported, not raised
    assert 'cannot handle function reshape' in rows[dp_benchmark.PEER, 'ew']['error']
    targets = {t['mode']: t for t in result['targets'] if t['model'] == 'dm_nf_resnet50'}
    assert set(targets) == {'hooks', 'ew'} and len(result['targets']) == 2
    assert targets['hooks']['met'] == (targets['hooks']['ratio'] <= targets['hooks']['peer_ratio'])
    assert targets['ew']['peer_ratio'] is None and targets['ew']['met'] is None  # no peer to beat is not a win
    assert result['memory_bytes'] == {}
    assert 'target dm_nf_resnet50 ew: DP/plain' in capsys.readouterr().out


def test_a_mode_our_net_fails_is_a_target_not_met(tmp_path, keep_threads, monkeypatch):
    real = dp_benchmark._private

    def ghost_breaks(model, x, y, mode):
        if mode == 'ghost' and model.__class__.__name__ == 'NFNet':
            raise RuntimeError('simulated sampler regression')
        return real(model, x, y, mode)

    monkeypatch.setattr(dp_benchmark, '_private', ghost_breaks)
    out = tmp_path / 'dp.json'
    assert dp_benchmark.main(['--models', 'nf_resnet50', '--modes', 'ghost', '--depths', '1,1,1,1', '--batch', '2',
                              '--rounds', '1', '--no-memory', '--out', str(out)]) == 1
    [target] = json.loads(out.read_text())['targets']
    assert (target['mode'], target['ratio'], target['met']) == ('ghost', None, False)


def test_memory_probe_counts_what_the_steps_add():
    # hooks mode keeps every parameter's per-example gradients (batch 4, float32) until the optimizer's step
    grown = dp_benchmark.peak_memory_in_fresh_process('nf_resnet50', 'hooks', 4, 32, 'cpu', 1, (1, 1, 1, 1))
    assert grown > 4 * 4 * sum(p.numel() for p in dp_benchmark.build('nf_resnet50', (1, 1, 1, 1)).parameters())


@pytest.mark.parametrize('argv, message', [
    (['--models', 'resnet50'], 'expected timm-nf model names'),
    (['--modes', 'hooks,fast'], 'expected a comma-separated subset of hooks,functorch,ghost,ew'),
    (['--size', '16'], 'must be at least 32'),
])
def test_bad_input_is_one_line_before_any_work(argv, message, capsys):
    assert dp_benchmark.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_without_opacus_it_stops_before_any_work(monkeypatch, capsys):
    find_spec = dp_benchmark.importlib.util.find_spec
    monkeypatch.setattr(dp_benchmark.importlib.util, 'find_spec',
                        lambda name, *args: None if name == 'opacus' else find_spec(name, *args))
    monkeypatch.setattr(dp_benchmark, '_steps', lambda *a: pytest.fail('timed a step without opacus'))
    assert dp_benchmark.main([]) == 2
    assert 'needs opacus' in capsys.readouterr().err
