"""The `timm-nf` command: one subcommand per job, each implemented in its own module."""
import importlib
import sys
from typing import List, Optional

# subcommand → (module with `main(argv)`, one-line help)
SUBCOMMANDS = {
    'list': ('timm_nf.listing', 'list the registered NF models with parameter counts and check a forward pass'),
    'spp': ('timm_nf.spp.cli', 'draw Signal Propagation Plots for one or more models'),
    'fuse': ('timm_nf.fusion_cli', 'write fused inference weights (plain convolutions) as safetensors'),
    'run': ('timm_nf.run', "run one of timm's scripts (validate.py, train.py, ...) with our models registered"),
}


def _usage() -> str:
    lines = ['usage: timm-nf COMMAND [ARGS ...]', '', 'commands:']
    lines += [f'  {name:<6} {help_}' for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ['', "`timm-nf COMMAND --help` describes a command's arguments."]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f'timm-nf: unknown command {command!r}\n\n{_usage()}', file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return module.main(rest) or 0


if __name__ == '__main__':
    sys.exit(main())
