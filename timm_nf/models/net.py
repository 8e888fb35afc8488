"""NFNet: stem, stages of NFBlocks under the β/α schedule, optional final conv, classifier head."""
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import torch
from timm.layers import ClassifierHead, make_divisible
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from .._arguments import require_type
from ..fusion import fuse
from ..layers import WSConv2d, WSGroup, activation_gamma, create_activation
from ..layers.frozen import FusedConv2d, keep_eval
from ..layers.padding import max_pool
from ..layers.ws_group import in_forward_window
from .block import NFBlock
from .config import NFConfig, check_arguments, check_channels, override


def _channel_rounders(mode: str) -> Tuple[Callable[[float], int], Callable[[float], int]]:
    """(round a layer width, round an SE hidden width) for 'floor' (reference code) or 'div8' (timm)."""
    if mode == 'floor':  # below 1 stays 0, and check_channels says which values made it
        return int, int
    return lambda c: make_divisible(c, 8), lambda c: make_divisible(c, 8, round_limit=0.)


def _drop_path_rates(cfg: NFConfig, rate: float) -> List[float]:
    n = sum(cfg.depths)
    if cfg.stochastic_depth == 'paper':
        return [rate * i / n for i in range(n)]
    return [x.item() for x in torch.linspace(0, rate, n, device='cpu')]


def _checked_input(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """x, once checked to be (N, in_chans, H, W): a clear error instead of a shape mismatch deep inside a conv."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError('expected an input of shape (N, ' + str(in_chans) + ', H, W), got ' + str(x.shape))
    return x


# FX symbolic tracing (timm's feature_cls='fx', torchvision's create_feature_extractor) records this call as one
# graph node instead of running its shape test on a Proxy, which cannot drive an `if`; the traced graph keeps the check
torch.fx.wrap('_checked_input')


class NFNet(nn.Module):
    """Normalizer-free ResNet / RegNet (Brock, De & Smith, ICLR 2021) with timm's full model contract."""

    __jit_unused_properties__ = ['is_fused']

    def __init__(
            self,
            cfg: NFConfig,
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = 'avg',
            output_stride: int = 32,
            drop_rate: Optional[float] = None,
            drop_path_rate: Optional[float] = None,
            device=None,
            dtype=None,
            **kwargs: Any,
    ):
        super().__init__()
        require_type('cfg', cfg, NFConfig, 'an NFConfig, e.g. timm_nf.MODEL_CONFIGS["dm_nf_resnet50"]')
        cfg = override(cfg, kwargs, type(self).__name__)
        check_arguments(cfg, num_classes, in_chans, output_stride, drop_rate, drop_path_rate)
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = cfg.drop_rate if drop_rate is None else drop_rate
        drop_path_rate = cfg.drop_path_rate if drop_path_rate is None else drop_path_rate
        self.grad_checkpointing = False
        dd = dict(device=device, dtype=dtype)
        ws = dict(var_floor=cfg.ws_var_floor, var_eps=cfg.ws_var_eps, padding=cfg.padding, **dd)
        gamma = activation_gamma(cfg.act)
        # convs that follow no activation (stem, final conv) carry γ only in timm's placement
        conv_gamma = gamma if cfg.gamma_placement == 'conv' else 1.0
        round_chs, round_se = _channel_rounders(cfg.channel_rounding)

        stem_chs = check_channels(round_chs(cfg.stem_width * cfg.width_factor),
                                  f'stem_width={cfg.stem_width} × width_factor={cfg.width_factor:g}')
        stem_kernel, stem_stride = (7, 4) if cfg.stem == 'resnet' else (3, 2)
        self.stem = nn.Sequential()
        self.stem.add_module('conv', WSConv2d(in_chans, stem_chs, stem_kernel, stride=2, input_scale=conv_gamma, **ws))
        if cfg.stem == 'resnet':
            self.stem.add_module('pool', max_pool(cfg.padding))
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module='stem.conv')]

        drop_path_rates = _drop_path_rates(cfg, drop_path_rate)
        prev_chs, net_stride, dilation, block_idx_total = stem_chs, stem_stride, 1, 0
        expected_std = 1.0
        stages = []
        for stage_idx, (depth, width) in enumerate(zip(cfg.depths, cfg.widths)):
            stride = 1 if stage_idx == 0 and stem_stride > 2 else 2
            if net_stride >= output_stride and stride > 1:
                dilation, stride = dilation * stride, 1
            net_stride *= stride
            first_dilation = 1 if dilation in (1, 2) else 2
            out_chs = check_channels(round_chs(width * cfg.width_factor),
                                     f'widths entry {width} × width_factor={cfg.width_factor:g}')
            blocks = []
            for block_idx in range(depth):
                ratio, ratio_name = cfg.bottleneck_ratio, 'bottleneck_ratio'
                if block_idx_total == 0 and cfg.first_block_ratio is not None:
                    ratio, ratio_name = cfg.first_block_ratio, 'first_block_ratio'
                base_chs = prev_chs if cfg.bottleneck_from == 'input' else out_chs
                mid_chs = check_channels(round_chs(base_chs * ratio), f'{ratio_name}={ratio:g} of {base_chs} channels')
                if cfg.group_size and mid_chs < cfg.group_size:  # a grouped conv needs at least one group
                    raise ValueError(
                        f'group_size={cfg.group_size} is more than the {mid_chs} channels of a grouped conv '
                        f'(width_factor={cfg.width_factor:g}, bottleneck_ratio={ratio:g}): group_size must be a whole '
                        f'number in [0, {mid_chs}] here (0: dense convs), or raise width_factor / bottleneck_ratio')
                groups = mid_chs // cfg.group_size if cfg.group_size else 1
                mid_chs = groups * cfg.group_size if cfg.group_size else mid_chs
                blocks.append(NFBlock(
                    prev_chs, out_chs, mid_chs, groups,
                    stride=stride if block_idx == 0 else 1,
                    dilation=dilation,
                    first_dilation=first_dilation,
                    alpha=cfg.alpha,
                    beta=1.0 / expected_std,
                    gamma=gamma,
                    act=cfg.act,
                    se_hidden=check_channels(round_se(mid_chs * cfg.se_ratio),
                                             f'se_ratio={cfg.se_ratio:g} of {mid_chs} channels') if cfg.se_ratio else 0,
                    avg_pool_shortcut=cfg.shortcut == 'avgpool_conv',
                    scalar_skipinit=cfg.skipinit == 'scalar',
                    drop_path_rate=drop_path_rates[block_idx_total],
                    drop_path_scale_by_keep=cfg.stochastic_depth == 'timm',
                    **ws,
                ))
                # the β/α schedule: a first-of-stage block's shortcut sees act(x)·β, which resets the variance to 1
                if block_idx == 0:
                    expected_std = 1.0
                expected_std = (expected_std ** 2 + cfg.alpha ** 2) ** 0.5
                prev_chs, first_dilation = out_chs, dilation
                block_idx_total += 1
            self.feature_info.append(dict(num_chs=prev_chs, reduction=net_stride, module=f'stages.{stage_idx}'))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)

        if cfg.final_width:
            # applied to the residual stream without a pre-activation, as in the reference code
            self.final_conv = WSConv2d(prev_chs, cfg.final_width, 1, input_scale=conv_gamma, **ws)
            prev_chs = cfg.final_width
            self.feature_info[-1] = dict(num_chs=prev_chs, reduction=net_stride, module='final_conv')
        else:
            self.final_conv = nn.Identity()
        self.final_act = create_activation(cfg.act)
        self.final_act_gamma = gamma if cfg.gamma_placement == 'act' else 1.0
        self.num_features = self.head_hidden_size = prev_chs
        self.head = ClassifierHead(prev_chs, num_classes, pool_type=global_pool, drop_rate=self.drop_rate, **dd)
        self._init_plain_layers()
        self._group_ws_convs()

    def _group_ws_convs(self) -> None:
        """One standardisation pass for all WS convs (layers/ws_group.py); the stem conv comes first and starts it."""
        convs = [m for m in self.modules() if isinstance(m, WSConv2d)]
        if convs:
            WSGroup.attach(convs)

    def _init_plain_layers(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if self.cfg.fc_init == 'zeros':
                    nn.init.zeros_(module.weight)
                else:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d) and not isinstance(module, WSConv2d):  # SE
                if self.cfg.se_init == 'truncated_normal':  # Haiku's Linear default: std 1/sqrt(fan_in), cut at 2 std
                    std = module.in_channels ** -0.5
                    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                else:
                    nn.init.kaiming_normal_(module.weight, mode='fan_in', nonlinearity='linear')
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """WS gains, SkipInit gains and every bias, as the reference code excludes them from weight decay."""
        return {n for n, _ in self.named_parameters() if n.endswith(('.gain', '.bias', 'skipinit_gain'))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=[(r'^stages\.(\d+)' if coarse else r'^stages\.(\d+)\.(\d+)', None), (r'^final_conv', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new head for `num_classes` (0: none) on the model's device and dtype; `global_pool=None` keeps the pool."""
        # a new head rather than ClassifierHead.reset, which builds on the default device and dtype before timm 1.0.31
        weight = self.stem.conv.weight
        pool_type = self.head.global_pool.pool_type if global_pool is None else global_pool
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=pool_type, drop_rate=self.drop_rate,
                                   device=weight.device, dtype=weight.dtype).train(self.training)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return _checked_input(x, self.in_chans)

    def _head_act(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_act(x)
        if self.final_act_gamma != 1.0:
            x = x * self.final_act_gamma
        return x

    @in_forward_window
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self._head_act(self.final_conv(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def fuse(self) -> 'NFNet':
        """A frozen inference copy whose WS convs are plain convs holding the folded weights (timm_nf.fusion)."""
        return fuse(self)

    @property
    def is_fused(self) -> bool:
        return isinstance(self.stem.conv, FusedConv2d)

    def train(self, mode: bool = True) -> 'NFNet':
        if mode and self.is_fused:  # a fused net is a frozen snapshot, also inside a parent being trained
            return keep_eval(self)
        return super().train(mode)

    @in_forward_window
    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Index 0 is the stem conv output, 1-4 the stage outputs; with a final conv the last is taken after it."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        x = self._check_input(x)
        intermediates = []
        last_idx = len(self.stages)
        take_indices, max_index = feature_take_indices(last_idx + 1, indices)
        for i, module in enumerate(self.stem):
            x = module(x)
            if i == 0 and 0 in take_indices:  # the stem conv output, before any pool
                intermediates.append(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index]
        for feat_idx, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
            if feat_idx == last_idx:
                x = self.final_conv(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if len(stages) == last_idx:
            x = self._head_act(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop what follows the last tap in `indices` (0 is the stem conv, as in forward_intermediates).

        Pruned before the last tap, forward_features ends at that tap and the head, sized for the final features,
        goes whatever `prune_head` says.
        """
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        prune_end = max_index < len(self.stages)
        if prune_end:
            self.stages = self.stages[:max_index]
            self.final_conv = nn.Identity()
            self.final_act = nn.Identity()
            self.final_act_gamma = 1.0
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if max_index == 0:
            self.stem = self.stem[:1]  # tap 0 is the stem conv's output, before the ResNet stem's max pool
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        self._group_ws_convs()
        return take_indices
