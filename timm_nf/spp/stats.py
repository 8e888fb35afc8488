"""Measure the SPP statistics of a model in one forward pass, reduced on the fly and leaving the model as found."""
import contextlib
import os
from typing import Dict, Iterator, List, Optional, Union

import torch
from timm.models import nfnet as timm_nfnet
from torch import nn

from .._arguments import (MAX_BATCH, MAX_IMG_SIZE, MAX_SEED, BadArgument, require_real, require_type, require_whole)
from .._progress import progress_bar
from ..models.block import NFBlock
from .anatomy import Anatomy, find_anatomy, reduce_dims
from .inputs import folder_input, gaussian_input
from .result import BlockStats, SPPResult

BN_STATS = ('batch', 'running')
PROGRESS_MIN_BLOCKS = 50  # a progress bar is shown by default from this many blocks
# the branch variance grows by (α·gain)² per block: beyond this the activations of deep nets leave float32's range
MAX_SKIPINIT_GAIN = 1000.0


def channel_stats(x: torch.Tensor, channels_last: bool = False) -> Dict[str, float]:
    """Average channel squared mean and average channel (biased) variance, reducing over N, H, W (tokens: N, L)."""
    if not isinstance(x, torch.Tensor):
        raise BadArgument('blocks', f'a block returned a {type(x).__name__}, not a tensor: name other block '
                                    'modules with {arg}')
    var, mean = torch.var_mean(x.float(), dim=reduce_dims(x, channels_last), correction=0)
    return dict(avg_sq_mean=mean.square().mean().item(), avg_var=var.mean().item())


def signal_propagation(
        model: nn.Module,
        inputs: Union[None, str, torch.Tensor] = None,
        *,
        name: Optional[str] = None,
        batch: int = 32,
        img_size: Optional[int] = None,
        seed: int = 0,
        skipinit_gain: Optional[float] = None,
        bn_stats: str = 'batch',
        progress: Optional[bool] = None,
        blocks: Optional[str] = None,
) -> SPPResult:
    """Per residual block: avg channel squared mean, avg channel variance (block output) and residual variance.

    inputs: None or 'gaussian' (N(0,1), `batch` × the model's input size or `img_size`, seeded by `seed`), a folder
    of images (preprocessed with the model's data config), or a ready (N, C, H, W) tensor.
    skipinit_gain: for the plot only, set every NF block's SkipInit gain to this value: the scalar gain where the
    block has one (dm_ family, timm's skipinit=True nets), otherwise the per-channel gain of the last conv, which is
    what the timm family zero-initialises instead (this overrides trained per-channel gains too). Restored afterwards.
    bn_stats: 'batch' normalises BatchNorm layers with the batch's statistics, as in training and in the paper's
    plots at initialisation (running statistics are not updated); 'running' uses the stored running statistics.
    blocks: a pattern naming the block modules (see timm_nf/spp/conventions.py), for models that timm's naming
    conventions miss; index 0 is then the input of the first of them.
    The model runs in eval mode (no stochastic depth or dropout); its modes, parameters and buffers are restored.
    Nothing global is drawn from: the Gaussian input has its own generator, so a model's initialisation is seeded
    by whoever creates it (torch.manual_seed before timm.create_model, as `timm-nf spp --seed` does).
    """
    _check_arguments(model, inputs, name, batch, img_size, seed, skipinit_gain, bn_stats, progress, blocks)
    anatomy = find_anatomy(model, blocks)
    inputs, settings = _resolve_inputs(model, inputs, batch, img_size, seed)
    settings.update(skipinit_gain=skipinit_gain, bn_stats=bn_stats, blocks=blocks)
    name = name or _model_name(model)
    rows: List[BlockStats] = []
    # by default: a bar for deep nets only, and only on a terminal outside CI
    show = progress if progress is not None else (None if len(anatomy.sites) >= PROGRESS_MIN_BLOCKS else False)

    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(total=len(anatomy.sites), desc=f'spp {name}', unit='block', show=show))
        stack.enter_context(_eval_mode(model))
        stack.enter_context(torch.no_grad())
        if bn_stats == 'batch':
            stack.enter_context(_batch_norm_uses_batch_stats(model))
        if skipinit_gain is not None:
            stack.enter_context(skipinit_gain_set(model, skipinit_gain))
        hooks: list = []
        stack.callback(lambda: [hook.remove() for hook in hooks])  # registered first: removed even if one fails
        _attach_hooks(anatomy, rows, bar.update, hooks)
        (model.forward_features if hasattr(model, 'forward_features') else model)(inputs)

    if len(rows) != len(anatomy.sites) + 1:
        raise BadArgument('blocks', f'{name}: measured {len(rows)} points, expected the stem and {len(anatomy.sites)} '
                                    'blocks: the forward pass skipped a block or ran one twice; name blocks that '
                                    'forward_features runs once each with {arg}')
    return SPPResult(name, sorted(rows, key=lambda row: row.index), settings)


def _check_arguments(model, inputs, name, batch, img_size, seed, skipinit_gain, bn_stats, progress, blocks) -> None:
    """TypeError / ValueError (BadArgument) naming the argument, before any work."""
    require_type('model', model, nn.Module, 'a torch.nn.Module (e.g. from timm.create_model)')
    if inputs is not None:
        require_type('inputs', inputs, (str, os.PathLike, torch.Tensor), "None, 'gaussian', a folder of images or a "
                                                                          'tensor')
        if isinstance(inputs, torch.Tensor) and (inputs.ndim < 2 or inputs.numel() == 0):
            raise BadArgument('inputs', f'{{arg}} must be a batch of inputs such as (N, C, H, W), got a tensor of '
                                        f'shape {tuple(inputs.shape)}')
    if name is not None:
        require_type('name', name, str, 'a string')
    require_whole('batch', batch, 1, MAX_BATCH)
    if img_size is not None:
        require_whole('img_size', img_size, 1, MAX_IMG_SIZE)
    require_whole('seed', seed, 0, MAX_SEED)
    if skipinit_gain is not None:
        require_real('skipinit_gain', skipinit_gain, -MAX_SKIPINIT_GAIN, MAX_SKIPINIT_GAIN)
    if bn_stats not in BN_STATS:
        raise BadArgument('bn_stats', f'{{arg}} must be one of {BN_STATS}, got {bn_stats!r}')
    if progress is not None:
        require_type('progress', progress, bool, 'None, True or False')
    if blocks is not None:
        require_type('blocks', blocks, str, 'None or a pattern such as "features.*"')
        if not blocks.strip('.'):
            raise BadArgument('blocks', f'{{arg}} must name module-name parts such as "features.*", got {blocks!r}')


def _resolve_inputs(model, inputs, batch, img_size, seed):
    """(input tensor on the model's device and dtype, settings describing it)."""
    if inputs is None or isinstance(inputs, str) and inputs == 'gaussian':
        inputs, settings = gaussian_input(model, batch, img_size, seed), dict(input='gaussian', seed=seed)
    elif isinstance(inputs, (str, os.PathLike)):
        inputs, settings = folder_input(model, os.fspath(inputs), batch, img_size), dict(input=os.fspath(inputs))
    else:
        settings = dict(input='tensor')
    param = next(model.parameters(), None)
    if param is not None and param.is_floating_point():
        inputs = inputs.to(param.device, param.dtype)
    return inputs, dict(settings, batch=inputs.shape[0], img_size=inputs.shape[-1])


def _attach_hooks(anatomy: Anatomy, rows: List[BlockStats], on_block_done, hooks: list) -> None:
    """Forward hooks that append one row per point as the forward pass reaches it; nothing else is kept."""
    branch_vars: Dict[int, float] = {}
    channels_last = anatomy.channels_last

    def on_stem(module, args):  # the input of the first block is the stem output
        rows.append(BlockStats(0, 0, 0, **channel_stats(args[0], channels_last)))

    hooks.append(anatomy.sites[0].module.register_forward_pre_hook(on_stem))
    for index, site in enumerate(anatomy.sites, start=1):
        def on_block(module, args, out, index=index, site=site):
            rows.append(BlockStats(index, site.stage, site.block, **channel_stats(out, channels_last),
                                   res_avg_var=branch_vars.pop(index, float('nan'))))
            on_block_done(1)

        hooks.append(site.module.register_forward_hook(on_block))
        if site.branch is not None:
            branch_module, branch_var = site.branch

            def on_branch(module, args, out, index=index, branch_var=branch_var):
                branch_vars[index] = branch_var(args, out).item()

            hooks.append(branch_module.register_forward_hook(on_branch))


@contextlib.contextmanager
def skipinit_gain_set(model: nn.Module, gain: float) -> Iterator[None]:
    """Every NF block's SkipInit gain (the scalar, else conv3's per-channel gain) set to `gain`, then restored."""
    targets = _skipinit_gains(model)
    if not targets:
        raise BadArgument('skipinit_gain', f'{_model_name(model)} has no SkipInit gain to set: {{arg}} applies to NF '
                                           f'nets only')
    saved = [target.detach().clone() for target in targets]
    with torch.no_grad():
        for target in targets:
            target.fill_(gain)
    try:
        yield
    finally:
        with torch.no_grad():
            for target, old in zip(targets, saved):
                target.copy_(old)


def has_skipinit_gain(model: nn.Module) -> bool:
    return bool(_skipinit_gains(model))


def _skipinit_gains(model: nn.Module) -> List[torch.Tensor]:
    return [block.skipinit_gain if block.skipinit_gain is not None else block.conv3.gain
            for block in model.modules() if isinstance(block, (NFBlock, timm_nfnet.NormFreeBlock))]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _batch_norm_uses_batch_stats(model: nn.Module) -> Iterator[None]:
    """Detach running statistics: BatchNorm then normalises with batch statistics and updates nothing."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            saved.append((module, module.running_mean, module.running_var))
            module.running_mean = module.running_var = None
    try:
        yield
    finally:
        for module, mean, var in saved:
            module.running_mean, module.running_var = mean, var


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') or type(model).__name__
