"""Find the residual blocks of a timm model by timm's own naming conventions, or by a pattern over module names.

timm names its stages and blocks in a few ways, tried in this order (the first that fits wins):
- `stages` (or `layers`, as Swin): a list of stages, each with a `blocks` list or itself a list of blocks
  (ConvNeXt, ResNetV2, NormFreeNet, timm_nf's NFNet, ByobNet/RegNetZ, CspNet, MaxViT, MetaFormer, Swin, ...);
- `layer1`, `layer2`, ...: lists of blocks (ResNet and its relatives: ResNeSt, SE-ResNeXt, Res2Net, ...);
- `s1`, `s2`, ...: stages whose children are the blocks (RegNet);
- `blocks`: either a list of stages, each a list of blocks (EfficientNet, MobileNet) or a list of blocks (ViT, DeiT,
  EVA, MLP-Mixer, Xception).
A pattern names the blocks directly: dot-separated module-name parts, each matched with shell wildcards (`*`, `?`,
`[..]`) against exactly one part, so 'features.*' matches 'features.3' but not 'features.3.conv'. Blocks with the
same parent module form one stage.
"""
import fnmatch
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from .._arguments import BadArgument

Stage = List[Tuple[str, nn.Module]]  # (module name, block), in order
CONVENTIONS = ('stages[i].blocks', 'layers[i].blocks', 'layerN', 'sN', 'blocks[i][j]', 'blocks[i]')


def _is_list(module: Optional[nn.Module]) -> bool:
    return isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) > 0


def _children(prefix: str, module: nn.Module) -> Stage:
    return [(f'{prefix}.{name}', child) for name, child in module.named_children()]


def _stage_list(model: nn.Module, attr: str) -> Optional[List[Stage]]:
    container = getattr(model, attr, None)
    if not _is_list(container):
        return None
    stages = []
    for name, stage in container.named_children():
        blocks = getattr(stage, 'blocks', None)
        if _is_list(blocks):
            stages.append(_children(f'{attr}.{name}.blocks', blocks))
        elif _is_list(stage):
            stages.append(_children(f'{attr}.{name}', stage))
        else:
            return None  # a stage that is neither: not this convention
    return stages


def _numbered(model: nn.Module, prefix: str, need_list: bool) -> Optional[List[Stage]]:
    stages = []
    while True:
        name = f'{prefix}{len(stages) + 1}'
        stage = getattr(model, name, None)
        if not isinstance(stage, nn.Module) or (need_list and not _is_list(stage)):
            break
        stages.append(_children(name, stage))
    return stages if stages and all(stages) else None


def _blocks(model: nn.Module) -> Optional[List[Stage]]:
    container = getattr(model, 'blocks', None)
    if not _is_list(container):
        return None
    if all(_is_list(child) for child in container.children()):
        return [_children(f'blocks.{name}', child) for name, child in container.named_children()]
    return [_children('blocks', container)]


_FINDERS: Sequence[Callable[[nn.Module], Optional[List[Stage]]]] = (
    lambda m: _stage_list(m, 'stages'),
    lambda m: _stage_list(m, 'layers'),
    lambda m: _numbered(m, 'layer', need_list=True),
    lambda m: _numbered(m, 's', need_list=False),
    _blocks,
)


def match_blocks(model: nn.Module, pattern: str) -> List[Stage]:
    """The modules whose names match `pattern` part by part, grouped by parent; ValueError when none match."""
    parts = pattern.split('.')
    regexes = [re.compile(fnmatch.translate(part)) for part in parts]
    groups: Dict[str, Stage] = {}
    for name, module in model.named_modules():
        names = name.split('.')
        if name and len(names) == len(parts) and all(r.match(n) for r, n in zip(regexes, names)):
            groups.setdefault(name.rpartition('.')[0], []).append((name, module))
    if not groups:
        top = ', '.join(name for name, _ in model.named_children())
        raise BadArgument('blocks', f'{{arg}}: {pattern!r} matches no module of the {type(model).__name__}; its '
                                    f'top-level modules are {top} (parts are separated by dots, e.g. "features.*")')
    return list(groups.values())


def find_stages(model: nn.Module, pattern: Optional[str] = None) -> List[Stage]:
    """The residual blocks of `model` per stage, by `pattern` when given, else by timm's conventions."""
    if pattern:
        return match_blocks(model, pattern)
    for finder in _FINDERS:
        stages = finder(model)
        if stages:
            return stages
    raise BadArgument('blocks', f'cannot find the residual blocks of a {type(model).__name__}: none of timm\'s '
                                f'conventions ({", ".join(CONVENTIONS)}) fits; name the block modules with {{arg}} '
                                f'(e.g. "features.*" for the children of `features`)')
