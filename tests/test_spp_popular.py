"""The sentences under the popular-nets figure are written from the measured rows: each rule on made-up rows."""
import math

from timm_nf.spp import BlockStats, SPPResult
from validate.spp_popular import caption, residual_phrase, sentence, variance_phrase


def _result(stages, res=None, sq=0.01):
    """stages: per stage the block-output variances; res: per block the branch variance (NaN: blank)."""
    rows = [BlockStats(0, 0, 0, sq, 1.0)]
    flat = [(s, b, v) for s, values in enumerate(stages, start=1) for b, v in enumerate(values)]
    res = res or [1.0] * len(flat)
    rows += [BlockStats(i, s, b, sq, v, r) for i, ((s, b, v), r) in enumerate(zip(flat, res), start=1)]
    return SPPResult('net', rows)


def test_constant_within_stages_and_falling_at_transitions():
    text = variance_phrase(_result([[1.0, 1.005], [0.5, 0.5], [0.25]]))
    assert text == 'the block-output variance is constant within each stage (1, 0.5, 0.25) and falls back at ' \
                   'stage transitions'
    assert 'falls back' not in variance_phrase(_result([[1.0, 1.0], [2.0, 2.0]]))  # rises at the transition


def test_growth_per_block_and_resets():
    text = variance_phrase(_result([[1.0, 2.0, 3.0], [1.0], [1.0, 2.0]]))
    assert text == ('the block-output variance grows by a median 1 per block within a stage (first to last block of '
                    'the stages with several: 1→3, 1→2) and falls back at stage transitions')
    assert variance_phrase(_result([[0.3, 0.4, 0.5]])) == 'the block-output variance grows by 0.1 per block (0.3→0.5)'


def test_residual_phrases():
    assert residual_phrase(_result([[1, 1]], res=[0.0, 0.0])) == 'the residual-branch variance is 0 at every block'
    assert residual_phrase(_result([[1, 1, 1]], res=[1.0, 1.001, math.nan])) == \
        'the residual-branch variance is 1 at every measured block (1 blocks without a skip left blank)'
    assert residual_phrase(_result([[1, 1]], res=[0.2, 0.9])) == 'the residual-branch variance is 0.2-0.9'
    assert residual_phrase(_result([[1, 1]], res=[math.nan] * 2)).endswith('not measured (block type not known)')


def test_sentence_and_caption():
    result = _result([[1.0, 1.0]], sq=0.004)
    assert sentence(result, 'X', 'why').startswith('**X** (why): the block-output variance is constant over the '
                                                   'blocks (1); the squared mean stays ≤ 0.004;')
    lines = caption([result], 224, 16, 'docs/figures/f.png')
    assert lines[0] == "![SPP of timm's popular residual nets](docs/figures/f.png)" and '224 px, batch 16' in lines[2]
    assert sum(line.startswith('- **net**') for line in lines) == 1
