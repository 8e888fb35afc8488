"""MODEL_CARD.md is generated from the registry's data: it must be current, and pick up results and figures."""
import pytest

from hub import model_card
from timm_nf.models.published import load_published


@pytest.fixture(scope='module')
def rendered():
    return model_card.render()


def test_model_card_is_not_stale(rendered):
    on_disk = model_card.MODEL_CARD.read_text()
    assert on_disk == rendered, 'MODEL_CARD.md is stale: run `python -m hub card`'


def test_card_tables_come_from_the_registry(rendered):
    # every variant, with timm's figure for nf_resnet50 (25.56M params, anchors.md) and the paper's b8 test size
    for name in model_card.MODEL_CONFIGS:
        assert f'| `{name}` |' in rendered
    row = next(line for line in rendered.splitlines() if line.startswith('| `nf_resnet50` |'))
    assert '| 25.56 |' in row and '`nf_resnet50.ra2_in1k`' in row
    b8 = next(line for line in rendered.splitlines() if line.startswith('| `dm_nf_regnet_b8` |'))
    assert '| 600 |' in b8 and '| 672 |' in b8
    for entry in load_published():
        assert f'`{entry["tag"]}`' in rendered and entry['provenance'] in rendered
    assert '79.368 @ 288 px' in rendered and '80.658 @ 288 px' in rendered  # timm's published top-1
    assert '--device-modules timm_nf' in rendered and '@inproceedings{brock2021characterizing' in rendered


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
