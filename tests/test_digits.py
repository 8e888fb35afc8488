"""A much-reduced `python -m validate digits`: on real data (scikit-learn's digits) our NF net and the BatchNorm net
both learn with timm's training components, and the stability sweep tells a diverging run from a training one."""
import math

import pytest

from validate import digits

from helpers import torch_threads

CHANCE_TOP1 = 100.0 / digits.NUM_CLASSES


@pytest.fixture(scope='module')
def loaders(tmp_path_factory):
    with torch_threads(1):
        root = digits.write_image_folder(tmp_path_factory.mktemp('digits'), img_size=32)
        yield digits.make_loaders(root, img_size=32, batch_size=64)


def test_nf_and_bn_nets_learn_digits(loaders):
    train_loader, val_loader = loaders
    assert len(train_loader.dataset) == 1437 and len(val_loader.dataset) == 360  # 80/20 of sklearn's 1,797
    for kind, floor in (('nf_ours', 4 * CHANCE_TOP1), ('bn_resnet', 8 * CHANCE_TOP1)):
        res = digits.train_recipe(digits.build_net(kind), train_loader, val_loader, epochs=10, lr=0.05,
                                  weight_decay=5e-5, warmup_epochs=digits.WARMUP_EPOCHS)
        assert all(math.isfinite(v) for v in res['train_loss'])
        assert res['train_loss'][-1] < res['train_loss'][0] - 0.3, (kind, res)
        assert res['final_top1'] > floor, (kind, res)


def test_sweep_tells_divergence_from_training(loaders):
    train_loader, val_loader = loaders
    batches = digits.draw_batches(train_loader, 12)
    diverged = digits.sweep_run('nf_timm', 50.0, batches, val_loader, 5e-5, agc=None)
    assert not diverged['trains'] and not diverged['finite']
    trained = digits.sweep_run('bn_resnet', 0.1, batches, val_loader, 5e-5, agc=None)
    assert trained['trains'] and trained['final_loss'] < trained['first_loss']
    rows = [dict(net='a', agc=0.0, lr=0.1, trains=True, learned=True),
            dict(net='a', agc=0.0, lr=0.4, trains=False, learned=False),
            dict(net='a', agc=0.01, lr=0.4, trains=True, learned=False)]
    assert digits.largest_stable_lr(rows) == {'a': {'no_agc': 0.1, 'agc': 0.4}}
    assert digits.largest_stable_lr(rows, 'learned') == {'a': {'no_agc': 0.1, 'agc': None}}
