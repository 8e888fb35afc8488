"""Quick CPU check: eager training step and inference of our nf_resnet50 against timm's NormFreeNet, same weights.

    python -m validate cpu-speed [--model nf_resnet50] [--rounds 5]

Rounds alternate between the models so that machine noise hits both alike; the ratio is of medians.
The full benchmark harness (GPU, compile, fused, BatchNorm peers) is validate/benchmark.py.
"""
import argparse
import statistics
import time

import torch
import timm
from timm.models import nfnet as timm_nfnet
from torch import nn

import timm_nf  # noqa: F401  (registers our models)


def _train_step_seconds(model: nn.Module, x: torch.Tensor) -> float:
    model.train()
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    model(x).float().logsumexp(1).mean().backward()
    return time.perf_counter() - start


@torch.no_grad()
def _inference_seconds(model: nn.Module, x: torch.Tensor) -> float:
    model.eval()
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m validate cpu-speed', description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='nf_resnet50', help='a timm-compatible name that timm also registers')
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    models = {
        'timm NormFreeNet': timm_nfnet.NormFreeNet(timm_nfnet.model_cfgs[args.model]),
        'timm_nf': timm.create_model(args.model),
        'no-norm ResNet-50 floor': timm.create_model('resnet50', norm_layer=nn.Identity),
    }
    models['timm_nf'].load_state_dict(models['timm NormFreeNet'].state_dict())
    if args.model != 'nf_resnet50':
        del models['no-norm ResNet-50 floor']
    train_x, infer_x = torch.randn(16, 3, 128, 128), torch.randn(8, 3, 224, 224)
    times = {name: ([], []) for name in models}
    for round_idx in range(args.rounds + 2):  # two warm-up rounds
        for name, model in models.items():
            train, infer = _train_step_seconds(model, train_x), _inference_seconds(model, infer_x)
            if round_idx >= 2:
                times[name][0].append(train)
                times[name][1].append(infer)
    ref_train, ref_infer = (statistics.median(t) for t in times['timm NormFreeNet'])
    print(f'{args.model}, CPU x{torch.get_num_threads()} threads, torch {torch.__version__}, timm {timm.__version__}')
    print(f"{'model':<26}{'train step b16@128':>20}{'ratio':>8}{'inference b8@224':>18}{'ratio':>8}")
    for name, (train, infer) in times.items():
        t, i = statistics.median(train), statistics.median(infer)
        print(f'{name:<26}{t:>19.3f}s{t / ref_train:>8.2f}{i:>17.3f}s{i / ref_infer:>8.2f}')


if __name__ == '__main__':
    main()
