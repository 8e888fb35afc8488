"""The popular-nets panel of `python -m validate spp`: timm's residual nets beside the paper-exact NF nets, all exactly
as timm creates them, and one sentence per net that states only what the measurement shows.

The sentences are written from the measured rows by fixed rules (constant within a stage when first and last block
differ by under 1%, resets when every stage starts below where the previous one ended), so a regenerated figure
cannot keep an outdated description.
"""
import math
import statistics
from typing import List, Sequence

from timm_nf.spp import SPPResult

# (timm name, label, what the construction at initialisation does to the plot)
POPULAR = (
    ('convnext_tiny', 'ConvNeXt-T', 'layer scale γ = 1e-6 on every branch; the branch variance is taken before γ'),
    ('regnety_016', 'RegNetY-1.6GF', "timm zero-initialises each branch's last BatchNorm; ReLU after the add"),
    ('resnet50', 'ResNet-50', "timm zero-initialises each branch's last BatchNorm; ReLU after the add"),
    ('vit_small_patch16_224', 'ViT-S/16', 'no layer scale; every token, the class token included, is a position; '
                                          'the branch is the MLP'),
    ('efficientnet_b0', 'EfficientNet-B0', "each stage's first block has no skip and ends in BatchNorm"),
    ('dm_nf_resnet50', 'NF-ResNet-50 (dm_)', 'SkipInit gain 0: every block passes on its shortcut path'),
    ('dm_nf_regnet_b0', 'NF-RegNet-B0 (dm_)', 'SkipInit gain 0: every block passes on its shortcut path'),
)
CONSTANT = 0.01  # relative change from first to last block of a stage below which it reads as constant


def _g(value: float) -> str:
    return f'{value:.3g}'


def variance_phrase(result: SPPResult) -> str:
    stages = list(result.stages().values())
    firsts, lasts = [s[0].avg_var for s in stages], [s[-1].avg_var for s in stages]
    if all(abs(last / first - 1) < CONSTANT for first, last in zip(firsts, lasts)):
        where = 'over the blocks' if len(stages) == 1 else 'within each stage'
        text = f'the block-output variance is constant {where} ({", ".join(map(_g, firsts))})'
    else:
        grown = [s for s in stages if len(s) > 1]
        step = statistics.median((s[-1].avg_var - s[0].avg_var) / (len(s) - 1) for s in grown)
        spans = ', '.join(f'{_g(s[0].avg_var)}→{_g(s[-1].avg_var)}' for s in grown)
        text = (f'the block-output variance grows by {_g(step)} per block ({spans})' if len(stages) == 1 else
                f'the block-output variance grows by a median {_g(step)} per block within a stage (first to last '
                f'block of the stages with several: {spans})')
    boundaries = list(zip(firsts[1:], lasts))
    if boundaries and all(first <= prev * (1 + CONSTANT) for first, prev in boundaries) and \
            any(first < prev * (1 - CONSTANT) for first, prev in boundaries):
        text += ' and falls back at stage transitions'
    return text


def residual_phrase(result: SPPResult) -> str:
    values = [r.res_avg_var for r in result.rows[1:] if not math.isnan(r.res_avg_var)]
    blank = len(result.rows) - 1 - len(values)
    if not values:
        return 'the residual branch is not measured (block type not known)'
    if max(values) == 0.0:
        text = 'the residual-branch variance is 0 at every block'
    elif max(values) / min(values) - 1 < CONSTANT:
        text = f'the residual-branch variance is {_g(statistics.fmean(values))} at every measured block'
    else:
        text = f'the residual-branch variance is {_g(min(values))}-{_g(max(values))}'
    if blank:
        text += f' ({blank} blocks without a skip left blank)'
    return text


def sentence(result: SPPResult, label: str, note: str) -> str:
    sq = max(r.avg_sq_mean for r in result.rows[1:])
    return (f'**{label}** ({note}): {variance_phrase(result)}; the squared mean stays ≤ {_g(sq)}; '
            f'{residual_phrase(result)}.')


def caption(results: Sequence[SPPResult], size: int, batch: int, figure: str) -> List[str]:
    """The markdown for the figure: the image, a line on the setting, one sentence per net."""
    notes = {label: note for _, label, note in POPULAR}
    lines = [f"![SPP of timm's popular residual nets]({figure})", '',
             f"**timm's residual nets beside the paper-exact NF nets, at initialisation exactly as timm creates them** "
             f'(unit-Gaussian input, {size} px, batch {batch}, weights seeded with 0; BatchNorm with batch '
             'statistics). Block indices differ because the nets differ in depth:', '']
    lines += [f'- {sentence(result, result.model, notes.get(result.model, ""))}' for result in results]
    return lines + ['']
