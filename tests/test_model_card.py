"""MODEL_CARD.md is generated from the registry's data: it must be current, agree with sources the renderer does
not read, and pick up results and figures."""
import re

import pytest
import torch
import yaml
from timm.models import nfnet as timm_nfnet

from hub import model_card

ROOT = model_card.ROOT


@pytest.fixture(scope='module')
def rendered():
    return model_card.render()


def _row(rendered: str, name: str) -> str:
    return next(line for line in rendered.splitlines() if line.startswith(f'| `{name}` |'))


def test_model_card_is_not_stale(rendered):
    on_disk = model_card.MODEL_CARD.read_text()
    assert on_disk == rendered, 'MODEL_CARD.md is stale: run `python -m hub card`'


def test_card_figures_agree_with_independent_sources(rendered):
    # nf_resnet50's parameter count, counted on timm's own NormFreeNet (not on our registry, which the card reads)
    with torch.device('meta'):
        timm_net = timm_nfnet.NormFreeNet(timm_nfnet.model_cfgs['nf_resnet50'])
    params = sum(p.numel() for p in timm_net.parameters())
    row = _row(rendered, 'nf_resnet50')
    assert f'| {params / 1e6:.2f} |' in row and '`nf_resnet50.ra2_in1k`' in row
    # the paper's NF-RegNet-B8 sizes (DeepMind's experiment_nf_regnets.py: train 600, test 672)
    b8 = _row(rendered, 'dm_nf_regnet_b8')
    assert '| 600 |' in b8 and '| 672 |' in b8
    # timm's published top-1 (timm's results-imagenet.csv) at the test size of each weight
    assert '79.368 @ 288 px' in rendered and '80.658 @ 288 px' in rendered


def test_card_training_advice_matches_the_recipes(rendered):
    """The card recommends a recipe file: it must exist and give lr 0.4 for a global batch of 1024, without AGC."""
    commands = re.findall(r'train\.py -c (validate/recipes/\S+\.yaml)', rendered)
    assert commands, 'the card shows no recipe command'
    for path in commands:
        recipe = yaml.safe_load((ROOT / path).read_text())
        gpus = int(re.search(rf'--nproc_per_node=(\d+) train\.py -c {re.escape(path)}', rendered).group(1))
        assert recipe['batch_size'] * gpus * recipe['grad_accum_steps'] == 1024 and recipe['lr'] == 0.4
        assert 'clip_mode' not in recipe and 'clip_grad' not in recipe
    # every train.py command runs the recipes on the 8 GPUs their global batch of 1024 assumes
    for match in re.finditer(r'train\.py -c', rendered):
        assert re.search(r'--nproc_per_node=8 $', rendered[:match.start()]), rendered[match.start() - 80:match.end()]
    # no command line in the card clips gradients with AGC: it stalls the dm_ nets' zero-initialised SkipInit gains
    code = '\n'.join(re.findall(r'```bash\n(.*?)```', rendered, flags=re.S))
    assert 'agc' not in code and '--lr 0.4' not in code


def test_results_and_figures_are_picked_up_when_they_appear(tmp_path):
    assert 'not generated yet' in '\n'.join(model_card._spp_section(tmp_path))
    assert 'No top-1 results' in '\n'.join(model_card._results_section(tmp_path))

    results = tmp_path / 'validate' / 'results'
    results.mkdir(parents=True)
    (results / 'imagenet.csv').write_text('model,tag,img_size,crop_pct,top1,top5\n'
                                          'nf_resnet50,ra2_in1k,288,0.94,80.61,95.31\n')
    (results / 'spp.csv').write_text('model,index,avg_var\nx,0,1.0\n')  # not a top-1 file: ignored
    section = '\n'.join(model_card._results_section(tmp_path))
    assert '| nf_resnet50.ra2_in1k | 288 | 0.94 | 80.61 | 95.31 | validate/results/imagenet.csv |' in section
    assert 'spp.csv' not in section

    figures = tmp_path / 'docs' / 'figures'
    figures.mkdir(parents=True)
    for name in ('spp_a.png', 'spp_b.png'):
        (figures / name).write_bytes(b'png')
    (figures / 'spp_findings.md').write_text('![a](spp_a.png)\n\n**Finding A** holds.\n')
    section = '\n'.join(model_card._spp_section(tmp_path))
    assert '![a](docs/figures/spp_a.png)' in section and '**Finding A** holds.' in section
    assert '![spp_b](docs/figures/spp_b.png)' in section  # a figure the findings do not show yet


def test_card_command_writes_nothing_on_bad_input(tmp_path, capsys):
    assert model_card.main(['--out', str(tmp_path)]) == 2
    assert 'is a folder: expected a file name ending in .md' in capsys.readouterr().err
    assert model_card.main(['--out', str(tmp_path / 'card.txt')]) == 2
    assert list(tmp_path.iterdir()) == []
