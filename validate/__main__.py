"""`python -m validate JOB [ARGS ...]`: validation, reproduction and benchmark jobs, one module each."""
import importlib
import sys

JOBS = {
    'imagenet': ('validate.imagenet', "validate registered pretrained tags with timm's validate.py"),
    'spp': ('validate.spp_findings', "regenerate and check the paper's signal-propagation findings"),
    'digits': ('validate.digits', 'NF against BatchNorm on real data (scikit-learn digits), and the stability sweep'),
    'batch-size': ('validate.batch_size', 'NF, BatchNorm and GroupNorm+WS at batch sizes 2-128 on digits'),
    'benchmark': ('validate.benchmark', "throughput and memory against timm's NormFreeNet and BatchNorm peers"),
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in JOBS:
        print('usage: python -m validate JOB [ARGS ...]\n\njobs:')
        for name, (_, help_) in JOBS.items():
            print(f'  {name:<10} {help_}')
        return 0 if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help') else 2
    module = importlib.import_module(JOBS[sys.argv[1]][0])
    sys.argv = [f'python -m validate {sys.argv[1]}'] + sys.argv[2:]
    return module.main() or 0


if __name__ == '__main__':
    sys.exit(main())
