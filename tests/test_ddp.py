"""Every registered model trains under DistributedDataParallel (no find_unused_parameters) with the right gradients.

Two CPU processes on the gloo backend, started with torch.multiprocessing.spawn. For each model (all registered
names, shrunk with a depths override and 32 px inputs, stochastic depth and dropout on), each rank checks:
- the all-reduced DDP gradient equals the mean of the ranks' single-process gradients (same seeds, so the same
  drop-path masks), to 1e-5 relative;
- the gradient is bit-identical on both ranks, and every parameter has one;
- a second step runs: DDP raises there if the first backward left any parameter unused.
"""
import copy
import json
import os
import traceback

import pytest
import torch

WORLD = 2
DEPTHS = (1, 2, 1, 1)  # two blocks in stage 2: a transition block and an identity-shortcut block


def _flat_grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _loss(model, x, y, seed):
    torch.manual_seed(seed)  # the same drop-path / dropout masks for the reference and the DDP pass
    return torch.nn.functional.cross_entropy(model(x), y)


def _check_model(name: str, rank: int) -> str:
    import timm
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, depths=DEPTHS, drop_rate=0.2, drop_path_rate=0.3)
    model.train()
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
    x, y = torch.randn(2, 3, 32, 32, generator=gen), torch.randint(0, 5, (2,), generator=gen)

    _loss(reference, x, y, seed=rank).backward()
    missing = [n for n, p in reference.named_parameters() if p.grad is None]
    if missing:
        return f'no gradient for {missing[:3]}'
    expected = _flat_grads(reference)
    dist.all_reduce(expected)
    expected /= WORLD

    ddp = DDP(model)  # find_unused_parameters=False: DDP's fast path, as train.py uses it
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    _loss(ddp, x, y, seed=rank).backward()
    got = _flat_grads(model)
    if not torch.allclose(got, expected, rtol=1e-5, atol=1e-7):
        return f'DDP gradient differs from the mean of local gradients by {(got - expected).abs().max().item():.3g}'
    gathered = [torch.empty_like(got) for _ in range(WORLD)]
    dist.all_gather(gathered, got)
    if not all(torch.equal(gathered[0], g) for g in gathered[1:]):
        return 'gradients differ between ranks'
    optimizer.step()
    optimizer.zero_grad()
    _loss(ddp, x, y, seed=10 + rank).backward()  # raises if the previous step left a parameter unreduced
    optimizer.step()
    return ''


def _worker(rank: int, store: str, names, out_dir: str, shared_pass: bool = False) -> None:
    import torch.distributed as dist

    from timm_nf.layers.ws_group import shared_pass_on
    from validate.op_count import KernelCounter
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=WORLD)
    failures = {}
    for name in names:
        try:
            if shared_pass:
                with shared_pass_on('cpu'), KernelCounter() as counter:
                    message = _check_model(name, rank)
                if not message and counter.ops['segment_reduce'] == 0:
                    message = 'the shared WS pass did not run'
            else:
                message = _check_model(name, rank)
        except Exception:
            message = traceback.format_exc(limit=3)
        if message:
            failures[name] = message
    dist.barrier()
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump({'checked': list(names), 'failures': failures}, f)


def _spawn(tmp_path, names, shared_pass: bool) -> None:
    import torch.multiprocessing as mp
    mp.spawn(_worker, args=(str(tmp_path / 'store'), names, str(tmp_path), shared_pass), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        report = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert report['checked'] == names
        assert report['failures'] == {}, f'rank {rank}: {report["failures"]}'


def test_every_model_trains_under_ddp_with_identical_gradients(tmp_path):
    from timm_nf import MODEL_CONFIGS

    names = sorted(MODEL_CONFIGS)
    assert any(n.startswith('dm_nf_resnet') for n in names) and any(n.startswith('nf_regnet') for n in names)
    _spawn(tmp_path, names, shared_pass=False)


def test_the_gpu_path_shared_ws_pass_under_ddp(tmp_path):
    """The one-pass standardisation GPUs use, run here on the CPU: every parameter reduced, without find_unused."""
    _spawn(tmp_path, ['dm_nf_regnet_b1', 'dm_nf_resnet50', 'nf_regnet_b0', 'nf_resnet26'], shared_pass=True)


if __name__ == '__main__':
    pytest.main([__file__, '-q'])
