"""`python -m validate imagenet`: tag selection, input checks, GMACs, reference figures, and one end-to-end run of
timm's validate.py on a generated folder with ImageNet's layout (needs TIMM_SCRIPTS_DIR, a timm checkout).

No weights can be downloaded here, so the end-to-end run injects a checkpoint (--weights-dir) whose classifier ranks
class 0 first, then 1, 2, ... for every image: top-1 is then exactly the share of class-0 images and top-5 is 100.
"""
import csv
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from timm_nf.run import SCRIPTS_DIR_ENV
from validate import imagenet


def test_tags_matching_a_pattern_are_ours_with_weights():
    assert imagenet.matching_tags('nf_*') == ['nf_regnet_b1.ra2_in1k', 'nf_resnet50.ra2_in1k']
    assert imagenet.matching_tags('nf_resnet50') == ['nf_resnet50.ra2_in1k']  # an arch name selects its tags
    assert imagenet.matching_tags('*.ra2_in1k') == ['nf_regnet_b1.ra2_in1k', 'nf_resnet50.ra2_in1k']
    with pytest.raises(imagenet.HarnessError, match="no registered pretrained tag matches 'nfnet_l0'.*nf_resnet50"):
        imagenet.matching_tags('nfnet_l0')  # timm's own model, not ours


def test_sizes_references_and_gmacs():
    assert imagenet.eval_sizes('nf_resnet50.ra2_in1k') == {'train': 256, 'test': 288}
    assert imagenet.reference_top1()['nf_regnet_b1.ra2_in1k'] == {256: 78.71, 288: 79.368}
    # derived from the reference structure (DeepMind's nf_resnet.py): NF-ResNet-50 at 224 px is 4.09 GMACs
    assert imagenet.gmacs('dm_nf_resnet50', 224) == pytest.approx(4.09, abs=0.005)
    # MACs grow with the pixel count
    assert imagenet.gmacs('nf_regnet_b1', 288) / imagenet.gmacs('nf_regnet_b1', 256) == pytest.approx(
        (288 / 256) ** 2, rel=0.05)


def test_bad_inputs_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(SCRIPTS_DIR_ENV, raising=False)
    with pytest.raises(imagenet.HarnessError, match='--timm-dir'):
        imagenet.find_validate_script(None)
    with pytest.raises(imagenet.HarnessError, match='validate.py not found'):
        imagenet.find_validate_script(str(tmp_path))
    with pytest.raises(imagenet.HarnessError, match='is not a folder'):
        imagenet.check_data_dir(tmp_path / 'missing', 'validation')
    (tmp_path / 'train' / 'n01').mkdir(parents=True)  # no validation split: validate.py would use the root
    with pytest.raises(imagenet.HarnessError, match='has no validation / val'):
        imagenet.check_data_dir(tmp_path, 'validation')
    (tmp_path / 'val').mkdir()
    with pytest.raises(imagenet.HarnessError, match='no class folders'):
        imagenet.check_data_dir(tmp_path, 'validation')
    (tmp_path / 'val' / 'n01').mkdir()
    assert imagenet.check_data_dir(tmp_path, 'validation') == tmp_path / 'val'  # a synonym, as validate.py finds it
    with pytest.raises(imagenet.HarnessError, match='no weights for nf_resnet50.ra2_in1k'):
        imagenet.find_weights(tmp_path, 'nf_resnet50.ra2_in1k')
    assert imagenet.main(['--data-dir', str(tmp_path), '--models', 'nope*', '--timm-dir', str(tmp_path)]) == 2


def _imagenet_layout(root: Path, counts) -> Path:
    rng = np.random.default_rng(0)
    for c, n in enumerate(counts):
        folder = root / 'validation' / f'n{c:08d}'
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(folder / f'val_{c}_{i}.JPEG')
    return root


def _ranking_checkpoint(tag: str, path: Path) -> None:
    model = timm.create_model(tag.split('.')[0])
    with torch.no_grad():
        model.get_classifier().weight.zero_()
        model.get_classifier().bias.copy_(-torch.arange(1000, dtype=torch.float32))  # class 0 > 1 > 2 > ...
    torch.save(model.state_dict(), path)


TIMM_DIR = os.environ.get(SCRIPTS_DIR_ENV)


@pytest.mark.skipif(not (TIMM_DIR and (Path(TIMM_DIR) / 'validate.py').is_file()),
                    reason=f"timm's validate.py is not on PyPI: set {SCRIPTS_DIR_ENV} to a pytorch-image-models checkout")
def test_end_to_end_with_timm_validate_py(tmp_path):
    tag = 'nf_regnet_b1.ra2_in1k'
    data = _imagenet_layout(tmp_path / 'imagenet', counts=(2, 1, 1))  # class 0 is half the images
    (tmp_path / 'weights').mkdir()
    _ranking_checkpoint(tag, tmp_path / 'weights' / f'{tag}.pth')
    out = tmp_path / 'results' / 'imagenet.csv'
    status = imagenet.main(['--data-dir', str(data), '--models', 'nf_regnet_b1*', '--weights-dir',
                            str(tmp_path / 'weights'), '--device', 'cpu', '-b', '2', '-j', '1', '--out', str(out)])
    assert status == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r['model'], r['tag'], r['size'], int(r['img_size'])) for r in rows] == [
        (tag, 'ra2_in1k', 'train', 256), (tag, 'ra2_in1k', 'test', 288)]
    for row in rows:
        assert float(row['top1']) == 50.0 and float(row['top5']) == 100.0
        assert float(row['crop_pct']) == 0.9 and float(row['param_count']) == 10.22
        ref = {256: 78.71, 288: 79.368}[int(row['img_size'])]
        assert float(row['ref_top1']) == ref and float(row['top1_diff']) == pytest.approx(50.0 - ref)
        assert float(row['gmacs']) == imagenet.gmacs('nf_regnet_b1', int(row['img_size']))
        assert row['error'] == ''
    assert not list(out.parent.glob('*.tmp'))
