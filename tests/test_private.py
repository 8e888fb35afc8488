"""A much-reduced `python -m validate private`: the mechanics (private and non-private runs, the accountant's budget,
resume, table, figure, the BatchNorm line, errors), not the outcome."""
import csv
import json
import math

import pytest
from torch.utils.data import TensorDataset

pytest.importorskip('opacus')
from validate import private  # noqa: E402

from helpers import torch_threads  # noqa: E402


@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    with torch_threads(1), pytest.MonkeyPatch.context() as patch:
        load = private.load_tensors

        def fewer_images(img_size):  # digits' own tensors, thinned: the mechanics are the same, the runs cheaper
            train, val = load(img_size)
            return TensorDataset(*(t[:160] for t in train.tensors)), TensorDataset(*(t[:60] for t in val.tensors))

        patch.setattr(private, 'load_tensors', fewer_images)
        out = tmp_path_factory.mktemp('private')
        logged = []
        result = private.run(out, 'p', nets=['nf', 'gn_ws'], epsilons=[8.0], seeds=[0], epochs=2, batch=32, lr=1.0,
                             plain_lr=0.025, warmup_epochs=1, log=logged.append)
        yield out, result, logged


def test_every_run_spends_its_budget(small_run):
    out, result, logged = small_run
    runs = list(csv.DictReader((out / 'p_runs.csv').open()))
    assert sorted((r['net'], float(r['epsilon'])) for r in runs) == sorted(
        (net, eps) for net in ('nf', 'gn_ws') for eps in (8.0, math.inf))
    for r in runs:
        private_run = math.isfinite(float(r['epsilon']))
        assert (float(r['noise_multiplier']) > 0) == private_run
        assert float(r['lr']) == (1.0 if private_run else 0.025) and int(r['warmup_epochs']) == 1
        if private_run:  # the accountant's ε after the run, for the noise make_private_with_epsilon chose
            assert 7.0 < float(r['spent_epsilon']) <= 8.0 * 1.01
        assert 0.0 <= float(r['top1']) <= 100.0
    assert sum(line.startswith(('ε = 8', 'non-private')) for line in logged) == 4


def test_outputs_and_the_batch_norm_line(small_run):
    out, result, _ = small_run
    assert set(result['table']) == {'nf', 'gn_ws'} and set(result['table']['nf']) == {'ε = 8', 'non-private'}
    assert json.loads((out / 'p.json').read_text())['setup']['epsilons'] == [8.0]
    text = (out / 'p.md').read_text()
    assert '| NF-ResNet (paper-exact) |' in text and '| net | ε = 8 | non-private |' in text
    assert 'BatchNorm cannot take part' in text and 'Opacus rejects it' in text
    assert '1 warm-up epoch then cosine decay' in text and 'The budget:' not in text  # no probe made yet
    assert 'Non-private training loss of the last epoch' in text and 'NF-ResNet (paper-exact) ' in text
    assert (out / 'p.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_resume_trains_only_what_is_missing(small_run, monkeypatch):
    out, _, _ = small_run
    trained = []
    monkeypatch.setattr(private, 'train_one', lambda *a, **k: trained.append(a) or pytest.fail('retrained'))
    monkeypatch.setattr(private, 'load_tensors', lambda img_size: pytest.fail('loaded the data for nothing'))
    private.run(out, 'p', nets=['nf', 'gn_ws'], epsilons=[8.0], seeds=[0], epochs=2, batch=32, lr=1.0,
                plain_lr=0.025, warmup_epochs=1, resume=True, log=lambda *a: None)
    assert not trained


def test_the_budget_probe_is_quoted_by_the_study_at_its_rate(small_run):
    """--probe-epochs trains the paper-exact net without privacy for each budget; the study's table then says
    which budget its loss stopped falling at, but only when the probe ran at the study's batch, rate and warm-up."""
    out, _, _ = small_run
    budget = private.budget_probe(out, 'p', budgets=[2, 3], seeds=[0], batch=32, plain_lr=0.025, warmup_epochs=1,
                                  log=lambda *a: None)
    saved = json.loads((out / 'p_budget.json').read_text())
    assert saved['mean_final_train_loss'] == budget['mean_final_train_loss'] and set(saved['mean_top1']) == {'2', '3'}
    assert [(r['epochs'], len(r['train_loss'])) for r in saved['runs']] == [(2, 2), (3, 3)]
    assert all(r['final_train_loss'] == r['train_loss'][-1] for r in saved['runs'])

    private.run(out, 'p', nets=['nf', 'gn_ws'], epsilons=[8.0], seeds=[0], epochs=2, batch=32, lr=1.0,
                plain_lr=0.025, warmup_epochs=1, resume=True, log=lambda *a: None)
    text = (out / 'p.md').read_text()
    assert 'The budget: 2 epochs for every net and ε' in text and '3 epochs: ' in text
    setup = json.loads((out / 'p.json').read_text())['setup']
    assert private._budget_text(saved, setup) in text
    for other in (dict(plain_lr=0.05), dict(batch=64), dict(warmup_epochs=2)):  # a probe says nothing of other rates
        assert private._budget_text(saved, {**setup, **other}) == ''


def test_the_budget_text_says_when_the_study_is_too_short():
    setup = dict(epochs=9, batch=64, warmup_epochs=2, plain_lr=0.025)
    falling = [2.0 - 0.1 * i for i in range(9)]  # still falling 0.3 over its last third
    flat = falling + [1.2] * 9  # 18 epochs: flat over the last third
    budget = dict(batch=64, warmup_epochs=2, plain_lr=0.025, seeds=[0],
                  mean_final_train_loss={'9': falling[-1], '18': flat[-1]}, mean_top1={'9': 50.0, '18': 90.0},
                  runs=[dict(epochs=9, train_loss=falling), dict(epochs=18, train_loss=flat)])
    assert private._budget_text(budget, setup).endswith(
        "is 18 epochs, so this study's 9 epochs are too few for it.")
    assert 'too few' not in private._budget_text(budget, {**setup, 'epochs': 18})
