"""`python -m validate JOB [ARGS ...]`: validation, reproduction and benchmark jobs, one module each, in timm-nf's
command-line convention (timm_nf/_command_line.py). A job is one entry below: a module with `main(argv) -> int`.
"""
import sys

from timm_nf._command_line import dispatch

JOBS = {
    'imagenet': ('validate.imagenet', "validate registered pretrained tags with timm's validate.py"),
    'spp': ('validate.spp_findings', "regenerate and check the paper's signal-propagation findings"),
    'digits': ('validate.digits', 'NF against BatchNorm on real data (scikit-learn digits), and the stability sweep'),
    'batch-size': ('validate.batch_size', 'NF, BatchNorm and GroupNorm+WS at batch sizes 2-128 on digits'),
    'benchmark': ('validate.benchmark', "throughput and memory against timm's NormFreeNet and BatchNorm peers"),
    'dp-benchmark': ('validate.dp_benchmark', 'DP step cost under Opacus against a GroupNorm+WS ResNet'),
    'private': ('validate.private', 'DP-SGD with Opacus on digits at ε = 1, 3, 8: NF against GroupNorm+WS'),
}


def main(argv=None) -> int:
    return dispatch('python -m validate', JOBS, argv, 'Validation, reproduction and benchmark jobs.', noun='job')


if __name__ == '__main__':
    sys.exit(main())
