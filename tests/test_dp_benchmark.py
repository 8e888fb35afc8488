"""validate/dp_benchmark.py on the CPU, shrunk: our net and the GroupNorm+WS peer in two modes (one the peer cannot run),
ratios, targets, the memory probe and the results file."""
import json

import pytest
import torch

pytest.importorskip('opacus')
from validate import dp_benchmark  # noqa: E402


@pytest.fixture
def _keep_threads():
    threads = torch.get_num_threads()  # --threads sets torch's count for the process; later tests expect the default
    yield
    torch.set_num_threads(threads)


def test_cpu_smoke_run(tmp_path, capsys, _keep_threads):
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
    assert {(t['model'], t['mode']) for t in result['targets']} == {('dm_nf_resnet50', 'hooks'), ('dm_nf_resnet50', 'ew')}
    assert result['memory_bytes'] == {}
    assert 'target dm_nf_resnet50 hooks' in capsys.readouterr().out


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
