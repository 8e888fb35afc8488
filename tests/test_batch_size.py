"""A much-reduced `python -m validate batch-size`: the mechanics (grid, learning-rate rule, seeds, resume, table,
figure, BatchNorm's running statistics at evaluation, errors), not the outcome."""
import copy
import csv
import json
import statistics

import pytest
import torch

from validate import batch_size, digits

from helpers import torch_threads


def _small_digits(write):
    """digits' own image folder, thinned to 20 training and 8 validation images per class: the mechanics are the
    same, the runs 7x cheaper (loading images costs more than these steps)."""
    def thinned(root, img_size, seed=0):
        root = write(root, img_size, seed)
        for split, keep in (('train', 20), ('validation', 8)):
            for folder in (root / split).iterdir():
                for path in sorted(folder.iterdir())[keep:]:
                    path.unlink()
        return root
    return thinned


@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    with torch_threads(1), pytest.MonkeyPatch.context() as patch:
        patch.setattr(digits, 'write_image_folder', _small_digits(digits.write_image_folder))
        out = tmp_path_factory.mktemp('batch_size')
        logged = []
        result = batch_size.run(out, 'bs', nets=list(batch_size.NETS), batch_sizes=[16, 64], seeds=[0, 1], epochs=1,
                                base_lr=0.05, weight_decay=5e-5, img_size=16, log=logged.append)
        yield out, result, logged


def test_every_net_batch_and_seed_is_trained_with_the_stated_rate(small_run):
    out, result, logged = small_run
    runs = list(csv.DictReader((out / 'bs_runs.csv').open()))
    assert sorted((r['net'], int(r['batch']), int(r['seed'])) for r in runs) == sorted(
        (net, b, s) for net in batch_size.NETS for b in (16, 64) for s in (0, 1))
    assert {(int(r['batch']), float(r['lr'])) for r in runs} == {(16, 0.05 * 16 / 64), (64, 0.05)}
    assert all(r['finite'] == 'True' and 0.0 <= float(r['top1']) <= 100.0 for r in runs)
    assert sum(line.startswith('batch ') for line in logged) == 16


def test_table_is_mean_and_spread_over_seeds(small_run):
    out, result, _ = small_run
    runs = list(csv.DictReader((out / 'bs_runs.csv').open()))
    for net in batch_size.NETS:
        for b in (16, 64):
            top1 = [float(r['top1']) for r in runs if r['net'] == net and int(r['batch']) == b]
            cell = result['table'][net][str(b)]
            assert cell['mean'] == pytest.approx(statistics.fmean(top1), abs=0.006)
            assert cell['std'] == pytest.approx(statistics.stdev(top1), abs=0.006)
            assert (cell['min'], cell['max'], cell['n']) == (min(top1), max(top1), 2)
    assert json.loads((out / 'bs.json').read_text())['table'] == result['table']
    md = (out / 'bs.md').read_text()
    assert '| net | batch 16 | batch 64 |' in md and '![top-1 against batch size](bs.png)' in md
    assert sum(line.count(' ± ') for line in md.splitlines() if line.startswith('| ')) == 8
    assert 'lr = 0.05 * batch / 64' in md
    assert (out / 'bs.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not [p.name for p in out.iterdir() if p.name.startswith('.tmp')]  # atomic writes left nothing behind


def test_resume_keeps_finished_runs(small_run):
    out, result, _ = small_run
    logged = []
    again = batch_size.run(out, 'bs', nets=list(batch_size.NETS), batch_sizes=[16, 64], seeds=[0, 1], epochs=1,
                           base_lr=0.05, weight_decay=5e-5, img_size=16, resume=True, log=logged.append)
    assert not any(line.startswith('batch ') for line in logged) and again['table'] == result['table']


def test_a_seed_reproduces_its_run(small_run, tmp_path):
    out, _, _ = small_run
    row = next(r for r in csv.DictReader((out / 'bs_runs.csv').open()) if r['net'] == 'nf' and r['batch'] == '16'
               and r['seed'] == '1')
    root = _small_digits(digits.write_image_folder)(tmp_path, 16)
    again = batch_size.train_one(root, 'nf', 16, 1, epochs=1, base_lr=0.05, weight_decay=5e-5, img_size=16)
    assert (again['top1'], again['final_train_loss']) == (float(row['top1']), float(row['final_train_loss']))


def test_batchnorm_is_evaluated_with_running_statistics():
    torch.manual_seed(0)
    model = batch_size.build_net('bn', seed=0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 16, 16))  # move the running statistics away from their init
    x = torch.randn(32, 3, 16, 16)
    with torch.no_grad():
        by_running_stats = model.eval()(x).argmax(1)
        by_batch_stats = copy.deepcopy(model).train()(x).argmax(1)
    assert (by_running_stats != by_batch_stats).any()  # the two ways of evaluating are told apart by these labels
    assert digits.evaluate(model.train(), [(x, by_running_stats)]) == 100.0
    assert not model.training
    norms = [type(m).__name__ for m in batch_size.build_net('gn_ws', 0).modules() if 'Norm' in type(m).__name__]
    assert norms and set(norms) == {'GroupNormAct'}


@pytest.mark.parametrize('argv, message', [
    (['--out-dir', '{missing}'], 'is not an existing folder'),
    (['--batch-sizes', '1', '8'], 'must be at least 2'),
    (['--epochs', '0'], 'expected a whole number in [1, 1000], got 0'),
    (['--name', 'a/b'], 'must be a plain file name stem'),
    (['--seeds', '0', '0'], 'only once'),
    (['--batch-sizes', 'eight'], "expected a whole number in [1, 1437], got 'eight'"),
    (['--epochs', '2', '--warmup-epochs', '2'], '--warmup-epochs must be fewer than --epochs (2), got 2'),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / 'missing') for a in argv]
    if '--out-dir' not in argv:
        argv += ['--out-dir', str(tmp_path)]
    code = batch_size.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count('\n') == 1 and not list(tmp_path.iterdir())


def test_model_card_shows_the_table_when_it_exists(tmp_path):
    from hub import model_card
    assert 'Not measured yet' in '\n'.join(model_card._batch_size_section(tmp_path))
    results = tmp_path / 'validate' / 'results'
    results.mkdir(parents=True)
    (results / 'batch_size.png').write_bytes(b'png')
    (results / 'batch_size.md').write_text('![top-1](batch_size.png)\n\n| net | batch 2 |\n')
    section = '\n'.join(model_card._batch_size_section(tmp_path))
    assert '![top-1](validate/results/batch_size.png)' in section and '| net | batch 2 |' in section


def test_pixels_reaching_the_logits_at_init():
    # the paper-exact NF net starts with every residual branch off (SkipInit gain 0) and three strided 1x1 shortcuts,
    # each keeping one position in four, after a 7x7/2 stem and a 3x3/2 max pool that SAME-pad 2/3 and 0/1 pixels at
    # this even size: its logits see a 9x9 corner of a 32 px image (pixels 0-8); the normalised nets see it all
    assert batch_size.pixels_reaching_logits('nf', 32) == 81
    # timm's NF flavour has avg-pool shortcuts: every position reaches the next stage
    assert {batch_size.pixels_reaching_logits(kind, 32) for kind in ('nf_timm', 'bn', 'gn_ws')} == {1024}


def test_diverged_runs_are_counted_not_averaged():
    runs = [dict(net='nf', batch=128, seed=s, top1=t, final_train_loss=l)
            for s, t, l in ((0, 40.0, 1.5), (1, 9.72, float('nan')), (2, 30.0, 2.0))]
    top1, loss = batch_size.summarize(runs)['nf'][128], batch_size.summarize(runs, 'final_train_loss')['nf'][128]
    assert (top1['mean'], top1['n'], top1['diverged']) == (26.57, 3, 0)
    assert (loss['mean'], loss['n'], loss['diverged']) == (1.75, 3, 1)
    assert '| 1.75 (1 diverged) |' in batch_size.markdown_table({'nf': {128: loss}}, spread=False)


def test_failures_are_named():
    cell = lambda mean: dict(mean=mean, std=0.0, min=mean, max=mean, n=1, diverged=0)  # noqa: E731
    table = {'nf': {2: cell(20.0), 128: cell(30.0)}, 'bn': {2: cell(37.0), 128: cell(96.0)}, 'gn_ws': {2: cell(97.0)}}
    assert batch_size._failures(table) == ('Below 50 % top-1: NF-ResNet (paper-exact) at every batch size; '
                                           'BatchNorm ResNet (pre-activation) at batch 2.')
    assert batch_size._failures({'gn_ws': {2: cell(97.0)}}) == 'Below 50 % top-1: none.'


def test_a_net_that_fails_above_batch_64_gets_the_rate_it_needs(tmp_path, monkeypatch):
    """At batch 128 the linear rule doubles the rate: a net that diverges there (or falls more than SHORTFALL points
    below its batch-64 top-1) is trained again at half, a quarter, ... of it, and the table says which rate it took.
    A seed that diverges at batch 64 itself sends that batch the same way, and does not lower the bar at 128."""
    def fake_train(root, kind, batch, seed, epochs, base_lr, weight_decay, img_size, warmup_epochs=1, lr_factor=1.0):
        diverges = kind == 'nf_timm' and (batch == 128 and lr_factor > 0.25 or batch == 64 and seed == 1
                                          and lr_factor == 1.0)
        top1 = 9.7 if diverges else 97.0 + seed
        return dict(net=kind, batch=batch, seed=seed, lr=batch_size.learning_rate(batch, base_lr) * lr_factor,
                    lr_factor=lr_factor, epochs=epochs, warmup_epochs=warmup_epochs, top1=top1,
                    final_train_loss=float('nan') if diverges else 0.6, finite=not diverges, seconds=1.0,
                    cpu_seconds=1.0, train_loss=[0.6])

    monkeypatch.setattr(batch_size, 'train_one', fake_train)
    monkeypatch.setattr(digits, 'write_image_folder', lambda root, img_size, seed=0: root)
    monkeypatch.setattr(batch_size, 'pixels_reaching_logits', lambda kind, img_size: 256)
    result = batch_size.run(tmp_path, 'bs', nets=['nf', 'nf_timm'], batch_sizes=[64, 128], seeds=[0, 1], epochs=3,
                            base_lr=0.05, weight_decay=5e-5, img_size=16, warmup_epochs=2, log=lambda line: None)
    runs = list(csv.DictReader((tmp_path / 'bs_runs.csv').open()))
    factors = {(r['net'], int(r['batch'])): sorted({float(x['lr_factor']) for x in runs
                                                     if (x['net'], x['batch']) == (r['net'], r['batch'])})
               for r in runs}
    assert factors == {('nf', 64): [1.0], ('nf', 128): [1.0], ('nf_timm', 64): [0.5, 1.0],
                       ('nf_timm', 128): [0.25, 0.5, 1.0]}
    assert result['table']['nf_timm']['128']['mean'] == 9.7  # the table keeps the linear rule's result
    at_64, entry = result['rates_needed']
    assert [(t['lr'], t['trains'], t['diverged']) for t in at_64['tried']] == [(0.05, False, 1), (0.025, True, 0)]
    assert (entry['net'], entry['batch']) == ('nf_timm', 128)
    assert [(t['lr'], t['trains'], t['diverged']) for t in entry['tried']] == [
        (0.1, False, 2), (0.05, False, 2), (0.025, True, 0)]
    md = (tmp_path / 'bs.md').read_text()
    assert ("NF-ResNet (timm's NormFreeNet) at batch 128: lr 0.1 (linear rule): 9.7 ± 0.0 %, 2 of 2 diverged; "
            'lr 0.05: 9.7 ± 0.0 %, 2 of 2 diverged; lr 0.025: 97.5 ± 0.7 % (trains).') in md
    assert 'SGD Nesterov with 2 warm-up epochs' in md


def test_the_budget_is_the_shortest_whose_loss_stopped_falling():
    runs = [dict(epochs=3, seed=0, train_loss=[2.0, 1.0, 0.5]),  # last third: 1.0 → 0.5
            dict(epochs=6, seed=0, train_loss=[2.0, 1.0, 0.7, 0.6, 0.59, 0.585])]  # 0.6 → 0.585
    budget = dict(batch=64, base_lr=0.05, warmup_epochs=1, seeds=[0], runs=runs,
                  mean_final_train_loss={'3': 0.5, '6': 0.585}, mean_top1={'3': 90.0, '6': 95.0})
    assert batch_size.last_third_fall(budget) == pytest.approx({3: 0.5, 6: 0.015})
    assert batch_size.stopped_falling(budget) == 6
    assert 'the shortest budget over whose last third it fell by less than 0.02 is 6 epochs' in \
        batch_size._budget_text(budget, 6)
