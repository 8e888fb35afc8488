"""The `timm-nf` command. Its subcommands are listed here, one module each, all built the same way
(timm_nf/_command_line.py): argparse; bad input is one line on stderr and exit status 2, before any file is touched.
"""
import sys
from typing import List, Optional

from ._command_line import dispatch

# subcommand → (module with `main(argv)`, one line of help)
SUBCOMMANDS = {
    'list': ('timm_nf.listing', 'list the registered NF models with parameter counts and check a forward pass'),
    'spp': ('timm_nf.spp.cli', 'draw Signal Propagation Plots for one or more models'),
    'fuse': ('timm_nf.fusion_cli', 'write fused inference weights (plain convolutions) as safetensors'),
    'run': ('timm_nf.run', "run one of timm's scripts (validate.py, train.py, ...) with our models registered"),
}


def main(argv: Optional[List[str]] = None) -> int:
    return dispatch('timm-nf', SUBCOMMANDS, argv, 'Normalizer-free ResNets and RegNets for timm.')


if __name__ == '__main__':
    sys.exit(main())
