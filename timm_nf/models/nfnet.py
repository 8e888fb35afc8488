"""Registers every variant with timm: entrypoints and pretrained cfgs, generated from the variant table.

The module is named `nfnet` on purpose: timm keys its registry by the last module name, so our models share the
'nfnet' key with the timm NormFreeNets they replace (`list_models(module='nfnet')`, timm's test filters).
"""
import sys
from typing import Any, Callable, Dict

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models import _registry

from ..layers.ws_group import open_window_around
from .net import NFNet
from .published import published_cfgs
from .variants import DATA_CONFIGS, MODEL_CONFIGS, TIMM_HAS


def _pretrained_cfgs() -> Dict[str, Dict[str, Any]]:
    published = published_cfgs()
    unknown = sorted({tag.split('.')[0] for tag in published} - set(DATA_CONFIGS))
    if unknown:
        raise ValueError(f'published_weights.json names unregistered architectures: {unknown}')
    cfgs = {}
    for name, data_cfg in DATA_CONFIGS.items():
        tags = {tag: cfg for tag, cfg in published.items() if tag.split('.')[0] == name}
        if tags:  # like timm: only the weight tags, the first of which is the default
            cfgs.update({tag: {**data_cfg, **cfg} for tag, cfg in tags.items()})
        else:
            cfgs[name] = data_cfg
    return cfgs


default_cfgs = generate_default_cfgs(_pretrained_cfgs())


def _create(variant: str, pretrained: bool = False, **kwargs) -> NFNet:
    model = build_model_with_cfg(
        NFNet, variant, pretrained,
        model_cfg=MODEL_CONFIGS[variant],
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )
    if not isinstance(model, NFNet):  # timm's features_only wrapper calls the net's modules one by one
        open_window_around(model)
    return model


def _forget_timm_registration(name: str) -> None:
    """Drop timm's own entry for a name we replace: no 'Overwriting' warning, and no stale tags.

    timm >= 1.0.31 clears old tags itself but warns; older releases warn and keep the old tags and cfgs.
    """
    if _registry._model_entrypoints.pop(name, None) is None:
        return
    module = _registry._model_to_module.pop(name, None)
    if module is not None and name in _registry._module_to_models.get(module, ()):
        _registry._module_to_models[module].discard(name)
    for key in list(_registry._model_with_tags.pop(name, [])) + [name]:
        _registry._model_pretrained_cfgs.pop(key, None)
        _registry._model_has_pretrained.discard(key)
    _registry._model_default_cfgs.pop(name, None)


def _entrypoint(variant: str) -> Callable[..., NFNet]:
    def entrypoint(pretrained: bool = False, **kwargs) -> NFNet:
        return _create(variant, pretrained=pretrained, **kwargs)
    entrypoint.__name__ = entrypoint.__qualname__ = variant
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f'{variant}: {MODEL_CONFIGS[variant]}'
    return entrypoint


def _register_all() -> None:
    module = sys.modules[__name__]
    for variant in MODEL_CONFIGS:
        if variant in TIMM_HAS:
            _forget_timm_registration(variant)
        setattr(module, variant, register_model(_entrypoint(variant)))


_register_all()
