"""Both eager standardisations give the plain formula's values and gradients, of every order.

The shared pass (WSGroup, what GPUs run; switched on for the CPU here) and the per-conv hand-written backward (what
the CPU runs) are each compared with the plain formula in autograd ops (`_per_conv_formula`), on the same weights. A
counter of `segment_reduce` calls proves the shared pass actually ran where it should. Gradients are compared in
float64: the standardisation's backward projects out the mean and the weight direction, and in float32 that
cancellation leaves some conv gradients only a few digits right, in either implementation (measured: 10% apart in a
whole-net float32 comparison that agrees to 1e-14 in float64).
"""
import contextlib
import copy
from unittest import mock

import pytest
import timm
import torch
import torch.nn.functional as F
from helpers import perturb_, rel_err, timm_reference
from timm.layers import set_reentrant_ckpt
from torch import nn

from timm_nf.layers import WSConv2d, WSGroup
from timm_nf.layers.ws_group import in_forward_window, shared_pass_on
from validate.op_count import KernelCounter as _OpCounter


@pytest.fixture(autouse=True)
def _gpu_path_on_the_cpu():
    with shared_pass_on('cpu'):
        yield


@contextlib.contextmanager
def _per_conv_formula(model: nn.Module):
    """The reference: every WS conv applies the plain formula in autograd ops, for the duration."""
    with mock.patch.object(WSConv2d, '_eager_weight', lambda conv, x, out_gain: conv.standardized_weight(out_gain)):
        yield


@contextlib.contextmanager
def _cpu_path():
    """What the CPU runs by default: no shared pass, each conv's hand-written backward."""
    with mock.patch('timm_nf.layers.ws_conv.shared_pass_devices', lambda: frozenset()):
        yield


def _grads(model: nn.Module, loss_fn) -> dict:
    model.zero_grad(set_to_none=True)
    loss_fn(model).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(got: dict, expected: dict, tol: float) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert rel_err(got[name], expected[name]) < tol, name


class _Chain(nn.Module):
    """Every conv kind the nets use, in one group: dense 3x3, grouped 3x3, depthwise 3x3, 1x1 with an out gain."""

    def __init__(self, var_floor: float, var_eps: float):
        super().__init__()
        ws = dict(var_floor=var_floor, var_eps=var_eps)
        self.a = WSConv2d(3, 8, 3, input_scale=1.3, **ws)
        self.b = WSConv2d(8, 8, 3, groups=2, **ws)
        self.c = WSConv2d(8, 8, 3, groups=8, **ws)
        self.d = WSConv2d(8, 6, 1, output_scale=0.2, **ws)
        self.skip = nn.Parameter(torch.tensor(0.7))
        self.d._ws_out_gain = (self.skip,)
        WSGroup.attach([self.a, self.b, self.c, self.d])

    @in_forward_window  # as NFNet's: the shared pass serves one forward of the whole group
    def forward(self, x):
        return self.d(torch.tanh(self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))), self.skip)


FLOORS = {'floor inactive': (1e-4, 1e-3), 'floor active': (50.0, 0.0)}  # fan-in·var is far below 50 here


@pytest.mark.parametrize('floor', FLOORS.values(), ids=FLOORS.keys())
@pytest.mark.parametrize('kind', [dict(kernel_size=1), dict(kernel_size=3), dict(kernel_size=3, groups=2),
                                  dict(kernel_size=3, groups=6)], ids=['1x1', '3x3', 'grouped', 'depthwise'])
def test_gradcheck_and_gradgradcheck_single_conv(kind, floor):
    var_floor, var_eps = floor
    conv = WSConv2d(6, 4 if kind.get('groups', 1) != 6 else 6, var_floor=var_floor, var_eps=var_eps, input_scale=1.3,
                    output_scale=0.2, **kind).double()
    params = {n: p.detach().clone().requires_grad_() for n, p in conv.named_parameters()}
    out_gain = torch.tensor(0.7, dtype=torch.double, requires_grad=True)
    x = torch.randn(1, 6, 4, 4, dtype=torch.double, requires_grad=True)

    def f(x, weight, gain, bias, out_gain):
        return torch.func.functional_call(conv, {'weight': weight, 'gain': gain, 'bias': bias}, (x, out_gain))

    inputs = (x, params['weight'], params['gain'], params['bias'], out_gain)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)  # random projections: the full Jacobian is slow


@pytest.mark.parametrize('floor', FLOORS.values(), ids=FLOORS.keys())
def test_shared_pass_gradients_of_every_order_equal_the_formula(floor):
    model = perturb_(_Chain(*floor)).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.double)
    params = [p for p in model.parameters()]
    vector = [torch.randn_like(p) for p in params]

    def first_and_second_order():
        loss = model(x).square().sum()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), params)
        return [g.detach() for g in grads], hvp

    with _OpCounter() as counter:
        shared = first_and_second_order()
    assert counter.ops['segment_reduce'] >= 2  # the shared pass ran
    with _cpu_path(), _OpCounter() as counter:
        hand_written = first_and_second_order()
    assert counter.ops['segment_reduce'] == 0 and counter.ops['linalg_vector_norm'] == 4
    with _per_conv_formula(model), _OpCounter() as counter:
        plain = first_and_second_order()
    assert counter.ops['segment_reduce'] == counter.ops['linalg_vector_norm'] == 0
    for path in (shared, hand_written):
        for got, expected in zip(path, plain):
            for g, e in zip(got, expected):
                assert rel_err(g, e) < 1e-10


def test_shared_pass_passes_gradcheck():
    model = perturb_(_Chain(1e-4, 1e-3)).double()
    # not `skip`: the shared pass reads the out gain through the conv's own reference to it (`_ws_out_gain`),
    # which functional_call does not swap
    names = [n for n, _ in model.named_parameters() if n != 'skip']
    x = torch.randn(1, 3, 5, 5, dtype=torch.double)

    def f(*tensors):
        return torch.func.functional_call(model, dict(zip(names, tensors)), (x,))

    inputs = [model.get_parameter(n).detach().clone().requires_grad_() for n in names]
    with _OpCounter() as counter:
        f(*inputs)
    assert counter.ops['segment_reduce'] == 2
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def test_hessian_vector_product_of_a_dm_net_matches_the_formula():
    model = perturb_(timm.create_model('dm_nf_resnet50', depths=(1, 1, 1, 1), width_factor=0.25, num_classes=4))
    model = model.double()
    with torch.no_grad():
        model.head.fc.weight.normal_(0.0, 0.05)
    x, y = torch.randn(2, 3, 32, 32, dtype=torch.double), torch.tensor([1, 3])
    params = list(model.parameters())
    vector = [torch.randn_like(p) for p in params]

    def hvp():
        loss = F.cross_entropy(model.eval()(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), params)

    shared = hvp()
    with _cpu_path():
        hand_written = hvp()
    with _per_conv_formula(model):
        plain = hvp()
    names = [n for n, _ in model.named_parameters()]
    for got_path in (shared, hand_written):
        for name, got, expected in zip(names, got_path, plain):
            assert rel_err(got, expected) < 1e-9, name


@pytest.mark.parametrize('name,depths', [('nf_resnet26', (1, 2, 1, 1)), ('nf_regnet_b0', (1, 2, 1, 1))])
def test_training_gradients_equal_timm_normfreenet(name, depths):
    reference = perturb_(timm_reference(name, depths=depths), seed=4).train().double()
    ours = timm.create_model(name, depths=depths).train().double()
    ours.load_state_dict(reference.state_dict())
    x, y = torch.randn(2, 3, 32, 32, dtype=torch.double), torch.randint(0, 1000, (2,))
    _assert_same_grads(_grads(ours, lambda m: F.cross_entropy(m(x), y)),
                       _grads(reference, lambda m: F.cross_entropy(m(x), y)), tol=1e-10)


def test_dm_block_convs_have_exactly_zero_gradients_at_init():
    model = timm.create_model('dm_nf_resnet50', depths=(1, 2, 1, 1), width_factor=0.25, drop_path_rate=0.0)
    model = model.train().double()
    x, y = torch.randn(2, 3, 64, 64, dtype=torch.double), torch.tensor([1, 2])
    grads = _grads(model, lambda m: F.cross_entropy(m(x), y))
    block_convs = [n for n in grads if n.startswith('stages.') and n.split('.')[3] in ('conv1', 'conv2', 'conv3')]
    assert len(block_convs) == 5 * 3 * 3  # five blocks, three convs, weight/gain/bias
    assert all(torch.count_nonzero(grads[n]) == 0 for n in block_convs)
    assert all(torch.count_nonzero(grads[f'stages.{s}.0.skipinit_gain']) == 1 for s in range(4))
    perturb_(model)  # SkipInit gains away from 0: now every block conv learns, exactly as by the formula
    shared = _grads(model, lambda m: F.cross_entropy(m(x), y))
    assert all(torch.count_nonzero(shared[n]) > 0 for n in block_convs)
    with _per_conv_formula(model):
        _assert_same_grads(shared, _grads(model, lambda m: F.cross_entropy(m(x), y)), tol=1e-10)


def _feature_loss(features) -> torch.Tensor:
    return sum((f * torch.linspace(-1, 1, f.shape[1], dtype=f.dtype).view(1, -1, 1, 1)).square().mean()
               for f in features)


@pytest.mark.parametrize('path', ['checkpointing', 'reentrant checkpointing', 'forward_intermediates',
                                  'features_only', 'features_only getter', 'features_only fx',
                                  'two forwards, two backwards'])
def test_every_way_into_the_net_matches_the_formula(path):
    kwargs = dict(depths=(1, 2, 1, 1), drop_rate=0.0, drop_path_rate=0.0)  # no random masks
    if path.startswith('features_only'):
        kwargs.update(features_only=True, feature_cls=path.split()[1] if ' ' in path else None)
    model = perturb_(timm.create_model('dm_nf_regnet_b0', **kwargs)).train().double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.double)
    if path == 'forward_intermediates':
        def loss_fn(m):
            return _feature_loss(m.forward_intermediates(x, intermediates_only=True))
    elif path.startswith('features_only'):
        def loss_fn(m):
            return _feature_loss(m(x))
    elif path == 'two forwards, two backwards':
        def loss_fn(m):
            first, second = m(x).square().mean(), m(x.flip(0)).abs().mean()
            first.backward()  # the second backward goes through a pass of its own
            return second
    else:
        model.set_grad_checkpointing(True)

        def loss_fn(m):
            return m(x).square().mean()
    with _OpCounter() as counter:
        if path == 'reentrant checkpointing':
            set_reentrant_ckpt(True)
        try:
            shared = _grads(model, loss_fn)
            with _per_conv_formula(model):
                plain = _grads(model, loss_fn)
        finally:
            set_reentrant_ckpt(False)
    if path == 'features_only fx':  # the traced graph recorded the plain formula: no shared pass to go stale
        assert counter.ops['segment_reduce'] == 0
    else:
        assert counter.ops['segment_reduce'] >= 2
    assert all(name in shared for name, _ in model.named_parameters() if not name.startswith('head.'))
    _assert_same_grads(shared, plain, tol=1e-10)


def test_a_changed_weight_is_never_served_stale():
    model = perturb_(timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.stem(x)
        model(x)  # a shared pass is now cached
        conv = model.stages[1][0].conv2
        conv.weight.mul_(1.5).add_(0.01)  # in place: a new version
        partial = model.stages(features)  # starts past the stem: the changed conv must see its new weight
        full = model(x)
        with _per_conv_formula(model):
            assert rel_err(partial, model.stages(features)) < 1e-6
            assert rel_err(full, model(x)) < 1e-6
        conv.weight.data = conv.weight.data * 2  # new storage under the same parameter
        with _per_conv_formula(model):
            expected = model.stages(features)
        assert rel_err(model.stages(features), expected) < 1e-6


def test_a_weight_changed_through_data_is_never_served_stale():
    """`.data` bypasses the version counter; outside one forward of the whole net no pass is served, so no change
    of any kind can be missed there (the issue: stem run, a weight changed through .data, then the stages alone)."""
    model = perturb_(timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.stem(x)
        before = model.stages(features)
        for conv in (model.stages[1][0].conv2, model.stages[3][0].conv3):
            conv.weight.data.normal_()  # no new version, same storage: invisible to a stamp
        with _OpCounter() as counter:
            after = model.stages(features)
        assert counter.ops['segment_reduce'] == 0  # a part of the net alone: each conv's own formula
        with _per_conv_formula(model):
            expected = model.stages(features)
        assert rel_err(after, expected) < 1e-6 and rel_err(after, before) > 0.1
        with _OpCounter() as counter:
            full = model(x)
        assert counter.ops['segment_reduce'] == 2  # a whole forward: one shared pass, from the new weights
        with _per_conv_formula(model):
            assert rel_err(full, model(x)) < 1e-6


def test_the_boundary_a_hook_inside_the_forward_changing_data():
    """The one way to get an older weight: code run inside the forward (here a forward pre-hook) that changes a
    weight through .data after the stem has made the pass. A change through a tracked in-place op is seen."""
    model = perturb_(timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1))).eval()
    x = torch.randn(2, 3, 64, 64)
    conv = model.stages[2][0].conv2
    old = conv.weight.detach().clone()
    new = torch.randn_like(old)

    def expected_with(weight):
        with torch.no_grad():
            conv.weight.copy_(weight)
            with _per_conv_formula(model):
                return model(x)

    stale_expected, fresh_expected = expected_with(old), expected_with(new)
    for tracked in (False, True):
        with torch.no_grad():
            conv.weight.copy_(old)

        def change(module, args):
            with torch.no_grad():
                (conv.weight.copy_ if tracked else conv.weight.data.copy_)(new)

        handle = model.stages[2].register_forward_pre_hook(change)
        with torch.no_grad():
            out = model(x)
        handle.remove()
        if tracked:  # copy_ on the parameter bumps its version: the conv computes its own weight
            assert rel_err(out, fresh_expected) < 1e-6
        else:  # documented in README: the pass made at the stem is served
            assert rel_err(out, stale_expected) < 1e-6 and rel_err(out, fresh_expected) > 1e-3


def test_a_failed_forward_closes_its_window():
    from timm_nf.layers import ws_group
    model = timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1), features_only=True)
    for net in (model, timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1))):
        with pytest.raises((ValueError, RuntimeError)):  # the net's own check, or the stem conv's (features_only)
            net(torch.randn(2, 4, 32, 32))
        assert ws_group._current_window() is None


def test_vmap_of_grad_gives_per_sample_gradients():
    model = perturb_(timm.create_model('dm_nf_resnet50', depths=(1, 1, 1, 1), width_factor=0.25, num_classes=3))
    model = model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 1])

    def loss(p, xi, yi):
        return F.cross_entropy(torch.func.functional_call(model, p, (xi[None],)), yi[None])

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        expected = _grads(model, lambda m: F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]))
        for name, grad in expected.items():
            assert rel_err(per_sample[name][i], grad) < 1e-4, name


@pytest.mark.parametrize('name', ['nf_resnet50', 'dm_nf_regnet_b1'])
def test_eval_forward_costs_the_fused_forward_plus_a_constant(name):
    """The standardisation costs the same few kernels whatever the depth: one pass for the whole net."""
    extra = {}
    for depths in ((1, 1, 1, 1), (3, 4, 6, 3)):
        model = timm.create_model(name, depths=depths, width_factor=0.25).eval()
        x = torch.randn(1, 3, 32, 32)
        counts = []
        for net in (model, model.fuse()):
            with torch.no_grad(), _OpCounter() as counter:
                net(x)
            counts.append(counter.total)
        extra[depths] = counts[0] - counts[1]
    assert extra[(1, 1, 1, 1)] == extra[(3, 4, 6, 3)] <= 30


def test_copies_keep_their_own_shared_pass():
    model = perturb_(timm.create_model('nf_regnet_b0', depths=(1, 1, 1, 1))).eval()
    x = torch.randn(1, 3, 48, 48)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.stages[0][0].conv1.weight.add_(torch.randn_like(twin.stages[0][0].conv1.weight))
        with _OpCounter() as counter:
            out = twin(x)
        assert counter.ops['segment_reduce'] == 2  # the copy's convs joined the copy's group
        assert rel_err(model(x), out) > 1e-3  # and it standardises its own weights, not the original's
        lone = copy.deepcopy(model.stages[0][0].conv1)  # a conv copied alone: its own formula
        assert lone._ws_group[0]._members != model.stages[0][0].conv1._ws_group[0]._members
        inputs = torch.randn(1, lone.in_channels, 8, 8)
        assert rel_err(lone(inputs), model.stages[0][0].conv1(inputs)) < 1e-6
