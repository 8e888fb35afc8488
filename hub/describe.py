"""Words shared by the Hub model cards and MODEL_CARD.md: families, an architecture line, sizes, the citation."""
from typing import Any, Dict

from timm_nf.models.config import NFConfig

CITATION = """@inproceedings{brock2021characterizing,
  title={Characterizing signal propagation to close the performance gap in unnormalized ResNets},
  author={Brock, Andrew and De, Soham and Smith, Samuel L},
  booktitle={International Conference on Learning Representations},
  year={2021}
}"""

PAPER_URL = 'https://arxiv.org/abs/2101.08692'


def family(name: str) -> str:
    return 'paper-exact (dm_)' if name.startswith('dm_') else 'timm-compatible'


def arch_summary(cfg: NFConfig) -> str:
    """One line: type, depths, widths, activation, α, SE/groups, final conv."""
    kind = 'NF-RegNet' if cfg.stem == 'regnet' else 'NF-ResNet'
    widths = '-'.join(map(str, cfg.widths)) + (f' ×{cfg.width_factor:g}' if cfg.width_factor != 1 else '')
    rounding = 'rounded down' if cfg.channel_rounding == 'floor' else 'rounded to 8'
    parts = [f'{kind}, depths {"-".join(map(str, cfg.depths))}, widths {widths} ({rounding})',
             f'{cfg.act}, α={cfg.alpha:g}']
    if cfg.group_size:
        parts.append(f'group width {cfg.group_size}')
    if cfg.se_ratio:
        parts.append(f'SE {cfg.se_ratio:g}')
    if cfg.final_width:
        parts.append(f'final conv {cfg.final_width}')
    return ', '.join(parts)


def sizes(data_cfg: Dict[str, Any]) -> Dict[str, int]:
    train = data_cfg['input_size'][-1]
    test = (data_cfg.get('test_input_size') or data_cfg['input_size'])[-1]
    return {'train': train, 'test': test}


def millions(n: float) -> str:
    return f'{n / 1e6:.2f}'


def billions(n: float) -> str:
    return f'{n / 1e9:.2f}'
