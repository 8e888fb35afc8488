"""Private training with Opacus (timm_nf/privacy.py): exact per-example gradients for every parameter, in every mode.

The truth is a float64 loop over single examples (batch 1, no dropout or stochastic depth): per-example gradients of
every parameter in hooks, functorch and ew modes, per-example norms and the clipped sum in ghost and hooks modes,
for tiny nets of both families, on the CPU's per-conv path and the GPU's shared WS pass, contiguous and
channels_last. With dropout and stochastic depth on (registered names at their defaults) the mean of the per-example
gradients must be the batch gradient of the same forward. The last tests run Opacus's standard code in a fresh
interpreter that imports only timm and opacus, and check that what cannot be exact raises.
"""
import contextlib
import copy
import os
import subprocess
import sys
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from helpers import rel_err, torch_threads
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

opacus = pytest.importorskip('opacus')
from opacus import PrivacyEngine  # noqa: E402
from opacus.grad_sample import GradSampleModule  # noqa: E402
from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights  # noqa: E402

from timm_nf import privacy  # noqa: E402
from timm_nf.layers import WSConv2d  # noqa: E402
from timm_nf.layers.ws_group import shared_pass_on  # noqa: E402
from timm_nf.layers.ws_per_sample import ws_conv_grad_samples  # noqa: E402
from timm_nf.models.block import NFBlock  # noqa: E402

# both families, ResNet and RegNet layouts: strided and avg-pool shortcuts, 7x7 and 3x3 stems, SE, grouped convs,
# the final conv, scalar SkipInit gains and zero-initialised last-conv gains
TINY = {
    'dm_nf_resnet50': dict(depths=(1, 1), widths=(16, 32), stem_width=8),
    'nf_resnet50': dict(depths=(1, 1), widths=(16, 32), stem_width=8),
    'dm_nf_regnet_b0': dict(depths=(1, 1), widths=(16, 32), stem_width=16, final_width=32, group_size=4),
    'nf_regnet_b0': dict(depths=(1, 1), widths=(16, 32), stem_width=16, final_width=32, group_size=4),
}
BATCH, SIZE, CLASSES = 3, 32, 5
EXACT = 1e-10  # float64; the loop and the samplers reach about 1e-14


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    with torch_threads(1):  # these nets are tiny: a second thread only adds synchronisation
        yield


@pytest.fixture(autouse=True)
def _quiet():
    # Opacus warns about its secure RNG, and torch when a hooked module's input needs no gradient (the stem)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        yield


@torch.no_grad()
def _away_from_init(model: nn.Module) -> nn.Module:
    """Gains, biases, SkipInit gains and the classifier away from their 1/0 init, so nothing vanishes."""
    gen = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if name.endswith('gain'):
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) * 0.5 + 0.75)
        elif name.endswith('bias'):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)
        elif name.startswith('head'):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model


class _Case:
    """A tiny float64 net without randomness, a batch, and the truth: each example's gradients on its own."""

    def __init__(self, arch: str):
        torch.manual_seed(0)
        self.model = _away_from_init(timm.create_model(
            arch, num_classes=CLASSES, drop_rate=0.0, drop_path_rate=0.0, **TINY[arch])).double()
        self.x = torch.randn(BATCH, 3, SIZE, SIZE, dtype=torch.float64)
        self.y = torch.randint(0, CLASSES, (BATCH,))
        model = copy.deepcopy(self.model)
        per_example = []
        for i in range(BATCH):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(self.x[i:i + 1]), self.y[i:i + 1]).backward()
            per_example.append({n: p.grad.clone() for n, p in model.named_parameters()})
        self.truth = {n: torch.stack([g[n] for g in per_example]) for n, _ in model.named_parameters()}
        self.norms = torch.cat([g.reshape(BATCH, -1) for g in self.truth.values()], 1).norm(dim=1)

    def copy(self, channels_last: bool = False):
        model, x = copy.deepcopy(self.model), self.x
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        return model, x


_cases = {}


def _case(arch: str) -> _Case:
    if arch not in _cases:
        _cases[arch] = _Case(arch)
    return _cases[arch]


PATHS = {'per-conv': contextlib.nullcontext, 'shared-pass': lambda: shared_pass_on('cpu')}
# (path, channels_last) beyond the CPU's default (per-conv, NCHW): on a ResNet of one family and a RegNet of the other
VARIANTS = [(arch, path, channels_last) for arch in ('dm_nf_regnet_b0', 'nf_resnet50')
            for path, channels_last in (('shared-pass', False), ('per-conv', True), ('shared-pass', True))]
SETTINGS = [(arch, 'per-conv', False) for arch in TINY] + VARIANTS
SETTING_IDS = [f'{a}-{p}-{"channels_last" if c else "nchw"}' for a, p, c in SETTINGS]


def _wrapped(model: nn.Module, mode: str) -> nn.Module:
    if mode == 'ew':
        return GradSampleModuleExpandedWeights(model)
    return GradSampleModule(model, force_functorch=mode == 'functorch')


@pytest.mark.parametrize('mode', ['hooks', 'functorch', 'ew'])
@pytest.mark.parametrize('arch, path, channels_last', SETTINGS, ids=SETTING_IDS)
def test_per_example_gradients_of_every_parameter_are_exact(arch, path, channels_last, mode):
    case = _case(arch)
    model, x = case.copy(channels_last)
    wrapped = _wrapped(model, mode)
    with PATHS[path]():
        F.cross_entropy(wrapped(x), case.y).backward()
    for name, p in model.named_parameters():
        assert isinstance(p.grad_sample, torch.Tensor), name
        assert rel_err(p.grad_sample, case.truth[name]) < EXACT, name



@pytest.mark.parametrize('mode', ['hooks', 'functorch', 'ew'])
@pytest.mark.parametrize('arch', ['dm_nf_regnet_b0', 'nf_resnet50'])
def test_with_frozen_conv_weights_the_gains_and_biases_stay_exact(arch, mode):
    # private fine-tuning of the gains and biases only; ExpandedWeights then expands a conv's gain but not its weight
    case = _case(arch)
    model, x = case.copy()
    frozen = [m.weight.requires_grad_(False) for m in model.modules() if isinstance(m, WSConv2d)]
    F.cross_entropy(_wrapped(model, mode)(x), case.y).backward()
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert any(name.endswith('conv1.gain') for name, _ in trained)
    for name, p in trained:
        assert rel_err(p.grad_sample, case.truth[name]) < EXACT, name
    assert all(getattr(w, 'grad_sample', None) is None for w in frozen)

def _private(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, max_grad_norm: float):
    """Opacus's standard objects, without noise: (module, optimizer, criterion)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    out = PrivacyEngine().make_private(
        module=model, optimizer=optimizer, data_loader=DataLoader(TensorDataset(x, y), batch_size=len(y)),
        noise_multiplier=0.0, max_grad_norm=max_grad_norm, grad_sample_mode=mode, poisson_sampling=False)
    return out[:3] if mode == 'ghost' else (out[0], out[1], nn.CrossEntropyLoss())


@pytest.mark.parametrize('mode', ['ghost', 'hooks'])
@pytest.mark.parametrize('arch, path, channels_last', SETTINGS, ids=SETTING_IDS)
def test_per_example_norms_and_the_clipped_sum_are_exact(arch, path, channels_last, mode):
    case = _case(arch)
    model, x = case.copy(channels_last)
    clip = case.norms.median().item()  # one example clipped, one at the bound, one below
    module, optimizer, criterion = _private(model, x, case.y, mode, clip)
    with PATHS[path]():
        criterion(module(x), case.y).backward()
    if mode == 'ghost':
        norms, summed = module.per_sample_gradient_norms, {n: p.grad for n, p in model.named_parameters()}
    else:
        optimizer.clip_and_accumulate()
        norms = torch.stack([p.grad_sample.reshape(BATCH, -1).norm(dim=1) for p in model.parameters()]).norm(dim=0)
        summed = {n: p.summed_grad for n, p in model.named_parameters()}
    assert rel_err(norms, case.norms) < EXACT
    factors = (clip / (case.norms + 1e-6)).clamp(max=1.0)  # Opacus's flat clipping
    assert (factors < 0.999).sum() == 1
    for name, truth in case.truth.items():
        assert rel_err(summed[name], torch.einsum('i,i...->...', factors, truth)) < EXACT, name


@pytest.mark.parametrize('arch, mode', [('dm_nf_regnet_b0', 'hooks')] + [
    ('tiny dm_nf_regnet_b0', mode) for mode in ('hooks', 'functorch', 'ghost', 'ew')])
def test_with_dropout_and_stochastic_depth_the_mean_is_the_batch_gradient(arch, mode):
    # a registered name at its defaults: dropout 0.2 before the classifier, stochastic depth 0.1, SE, grouped convs;
    # the same defaults on the tiny shape for every mode
    torch.manual_seed(0)
    name = arch.split()[-1]
    model = timm.create_model(name, num_classes=CLASSES, **(TINY[name] if arch.startswith('tiny') else {}))
    assert model.drop_rate > 0 and any(isinstance(m, timm.layers.DropPath) for m in model.modules())
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 0.1)  # zero-initialised: every other gradient would vanish
        for block in model.modules():
            if isinstance(block, NFBlock):
                block.skipinit_gain.fill_(0.5)
    size = SIZE if arch.startswith('tiny') else 16  # grouped convs' backward is slow on the CPU
    x, y = torch.randn(BATCH, 3, size, size), torch.randint(0, CLASSES, (BATCH,))
    reference = copy.deepcopy(model).train()
    torch.manual_seed(7)
    F.cross_entropy(reference(x), y).backward()  # the batch gradient, same dropout and drop-path draws as below
    private = copy.deepcopy(model).train()
    if mode == 'ghost':  # no clipping: the second backward's gradient is the sum of the per-example gradients
        module, _, criterion = _private(private, x, y, mode, max_grad_norm=1e9)
        torch.manual_seed(7)
        criterion(module(x), y).backward()
        means = {n: p.grad / BATCH for n, p in private.named_parameters()}
    else:
        module = _wrapped(private, mode)
        torch.manual_seed(7)
        F.cross_entropy(module(x), y).backward()
        means = {n: p.grad_sample.mean(0) for n, p in private.named_parameters()}
    for name, p in reference.named_parameters():
        assert rel_err(means[name], p.grad) < 2e-4, name  # float32


# ------------------------------------------------------------------------------------------------- one conv

@pytest.mark.parametrize('kwargs', [
    dict(kernel_size=1), dict(kernel_size=1, stride=2), dict(kernel_size=3), dict(kernel_size=3, stride=2),
    dict(kernel_size=3, groups=4), dict(kernel_size=3, dilation=2), dict(kernel_size=7, stride=2)],
    ids=['1x1', '1x1/2', '3x3', '3x3/2', 'grouped', 'dilated', '7x7/2'])
@pytest.mark.parametrize('standardization', ['paper', 'timm'])
def test_one_ws_conv_against_autograd(kwargs, standardization):
    # more output positions than fan-in (1x1, 3x3 at 11 px) and fewer (strided): both ways of summing G·c; rows with
    # the variance floor holding (paper) and not
    ws = dict(var_floor=1e-4, output_scale=0.2) if standardization == 'paper' else dict(var_eps=1e-5)
    torch.manual_seed(0)
    conv = WSConv2d(8, 16, input_scale=1.7, **ws, **kwargs).double()
    with torch.no_grad():
        conv.gain.uniform_(0.5, 1.5)
        conv.bias.normal_()
        conv.weight[:4] *= 1e-3
    conv.gain.requires_grad_(standardization == 'paper')  # a frozen parameter gets no per-example gradient
    out_gain = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
    x = torch.randn(4, 8, 11, 11, dtype=torch.float64)
    grad_out = torch.randn_like(conv(x, out_gain=out_gain))
    samples = ws_conv_grad_samples(conv, x, grad_out, out_gain)
    wanted = [p for p in (conv.weight, conv.gain, conv.bias, out_gain) if p.requires_grad]
    assert set(samples) == set(wanted)
    for i in range(len(x)):
        truth = torch.autograd.grad(conv(x[i:i + 1], out_gain=out_gain), wanted, grad_out[i:i + 1])
        for p, t in zip(wanted, truth):
            assert rel_err(samples[p][i], t) < EXACT


def test_a_conv_whose_padding_the_sampler_cannot_reproduce_raises():
    conv = WSConv2d(4, 4, 3)
    x = torch.randn(2, 4, 8, 8)
    grad_out = torch.randn_like(conv(x))
    conv.padding = (0, 0)  # now the sampler sees 6x6 output positions for an 8x8 output gradient
    with pytest.raises(RuntimeError, match='pads its input in a way this function does not reproduce'):
        ws_conv_grad_samples(conv, x, grad_out)


def test_an_empty_batch_gives_empty_per_example_gradients():
    # Poisson sampling can draw one (in functorch mode Opacus's own vmap of the squeeze-excite's plain convs refuses it)
    model, x = _case('dm_nf_regnet_b0').copy()
    F.cross_entropy(_wrapped(model, 'hooks')(x[:0]), _case('dm_nf_regnet_b0').y[:0], reduction='sum').backward()
    assert all(p.grad_sample.shape == (0,) + p.shape for p in model.parameters())


# --------------------------------------------------------------------------------------------- never silent

@pytest.mark.parametrize('mode', ['hooks', 'functorch'])
def test_a_skipinit_gain_its_last_conv_did_not_apply_raises(mode, monkeypatch):
    case = _case('dm_nf_resnet50')
    model, x = case.copy()
    wrapped = _wrapped(model, mode)

    def forward_without_gain(block, inp):  # a block that forgets to hand its SkipInit gain to its last conv
        out = block.act1(inp)
        shortcut = inp if block.downsample is None else block.downsample(out)
        out = block.conv2(block.act2(block.conv1(out)))
        return block.conv3(block.act3(out)) * block.skipinit_gain + shortcut

    monkeypatch.setattr(NFBlock, 'forward', forward_without_gain)
    with pytest.raises(RuntimeError, match='SkipInit gain of an NFBlock got no per-example gradient'):
        F.cross_entropy(wrapped(x), case.y).backward()


def test_gradient_checkpointing_is_exact_reentrant_and_raises_otherwise():
    case = _case('dm_nf_resnet50')
    before = timm.layers.use_reentrant_ckpt()
    try:
        for reentrant in (True, False):
            timm.layers.set_reentrant_ckpt(reentrant)
            model, x = case.copy()
            model.set_grad_checkpointing(True)
            module, optimizer, criterion = _private(model, x, case.y, 'hooks', 1e9)
            criterion(module(x), case.y).backward()
            if reentrant:
                for name, p in model.named_parameters():
                    assert rel_err(p.grad_sample, case.truth[name]) < EXACT, name
            else:  # the recomputed forward leaves convs without per-example gradients: Opacus stops, never guesses
                with pytest.raises(ValueError, match='Per sample gradient is not initialized'):
                    optimizer.step()
    finally:
        timm.layers.set_reentrant_ckpt(before)


def test_functorch_mode_gets_the_samplers_and_leaves_no_trace():
    model = copy.deepcopy(_case('dm_nf_regnet_b0').model)
    convs = [m for m in model.modules() if isinstance(m, (WSConv2d, NFBlock))]
    assert not any(hasattr(m, 'ft_compute_sample_grad') for m in convs)
    wrapped = GradSampleModule(model, force_functorch=True)
    hooked = [m for m in convs if type(m) is NFBlock or m.weight.requires_grad]
    # our exact answer, not Opacus's vmap re-run (which its prepare_layer set, and our descriptor kept aside)
    assert all(m.ft_compute_sample_grad.func is privacy._functorch_answer for m in hooked)
    wrapped._close()
    assert not any(hasattr(m, 'ft_compute_sample_grad') for m in convs)


# ------------------------------------------------------------------------------------ the user's own code

STANDARD_FLOW = """
import sys, warnings
warnings.simplefilter("ignore")
import timm, opacus
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

for name, kwargs in {nets!r}:
    for mode in ("hooks", "functorch", "ghost", "ew"):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=4, **kwargs)
        if not name.startswith("dm_"):
            model = model.to(memory_format=torch.channels_last)
        data = TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 4, (16,)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        out = PrivacyEngine().make_private(module=model, optimizer=optimizer, data_loader=DataLoader(data, batch_size=8),
                                           noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode=mode)
        if mode == "ghost":
            model, optimizer, criterion, loader = out
        else:
            model, optimizer, loader = out
            criterion = torch.nn.CrossEntropyLoss()
        before = [p.detach().clone() for p in model.parameters()]
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        print(name, mode, all(not torch.equal(a, p) for a, p in zip(before, model.parameters())))
print("imported:", sorted(m for m in ("timm_nf", "timm_nf.privacy") if m in sys.modules))
"""


def _fresh_python(code: str, cwd, autoload: bool = True) -> subprocess.CompletedProcess:
    pytest.importorskip('_timm_nf_autoload', reason='timm-nf is not installed, so its start-up hook is not either')
    env = {k: v for k, v in os.environ.items() if k != 'TIMM_NF_AUTOLOAD'}
    env['OMP_NUM_THREADS'] = '1'
    if not autoload:
        env['TIMM_NF_AUTOLOAD'] = '0'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_opacus_standard_code_with_only_timm_and_opacus_imported(tmp_path):
    # every mode, with the dm_ net's stochastic depth on and the nf_ net channels_last; every parameter moves
    nets = [('dm_nf_regnet_b0', TINY['dm_nf_regnet_b0']), ('nf_resnet50', TINY['nf_resnet50'])]
    lines = _fresh_python(STANDARD_FLOW.format(nets=nets), tmp_path).stdout.splitlines()
    assert lines == [f'{name} {mode} True' for name, _ in nets for mode in ('hooks', 'functorch', 'ghost', 'ew')] + [
        "imported: ['timm_nf', 'timm_nf.privacy']"]


@pytest.mark.parametrize('first, second, autoload', [
    ('opacus.grad_sample', 'timm', True), ('timm', 'opacus.grad_sample', True),
    ('timm_nf', 'opacus.grad_sample', False)])  # with the start-up hook off, `import timm_nf` arranges it
def test_samplers_are_registered_whichever_is_imported_first(first, second, autoload, tmp_path):
    registered = ('from opacus.grad_sample import GradSampleModule\n'
                  'from timm_nf.layers import WSConv2d\n'
                  'from timm_nf.models.block import NFBlock\n'
                  'print(all(t in GradSampleModule.GRAD_SAMPLERS for t in (WSConv2d, NFBlock)))\n')
    code = (f'import sys\nimport {first}\n'
            'print("timm_nf.privacy" in sys.modules)\n'  # neither import alone brings in the samplers
            f'import {second}\n' + registered)
    assert _fresh_python(code, tmp_path, autoload).stdout.split() == ['False', 'True']


def test_a_ws_conv_subclass_keeps_opacus_own_functorch_rerun():
    class Doubled(WSConv2d):  # a forward the WS sampler knows nothing of: Opacus must re-run it, not our sampler
        def forward(self, x, out_gain=None):
            return 2 * super().forward(x, out_gain)

    torch.manual_seed(0)
    model = nn.Sequential(Doubled(3, 4, 3), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).double()
    x, y = torch.randn(BATCH, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 0])
    truth = []
    for i in range(BATCH):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        truth.append(model[0].weight.grad.clone())
    for mode in ('hooks', 'functorch'):
        m = copy.deepcopy(model)
        wrapped = _wrapped(m, mode)
        F.cross_entropy(wrapped(x), y).backward()
        assert rel_err(m[0].weight.grad_sample, torch.stack(truth)) < EXACT, mode
        wrapped._close()
        assert not hasattr(m[0], 'ft_compute_sample_grad')


@pytest.mark.parametrize('mode', ['hooks', 'functorch'])
def test_a_block_subclass_without_a_sampler_raises(mode):
    class Logged(NFBlock):  # Opacus would re-run it per example: its convs, hooked too, would count twice
        pass

    model = copy.deepcopy(_case('dm_nf_resnet50').model)
    for stage in model.stages:
        for block in stage:
            block.__class__ = Logged
    with pytest.raises(RuntimeError, match='Logged subclasses NFBlock, so it has no grad sampler of its own'):
        _wrapped(model, mode)
