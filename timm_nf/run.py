"""`timm-nf run SCRIPT [ARGS ...]`: run one of timm's scripts with our models registered.

timm's validate.py, benchmark.py and inference.py have no option to import a plugin, and timm ships none of its
scripts on PyPI: they live in a checkout of https://github.com/huggingface/pytorch-image-models. This launcher
imports timm_nf, then runs the script as `__main__` with `sys.argv = [SCRIPT, ARGS ...]` and the script's folder
first on sys.path, exactly as `python SCRIPT ARGS ...` would. It also works as a module, so under torchrun:

    timm-nf run validate.py --model dm_nf_regnet_b0 --data-dir /imagenet --checkpoint best.pth.tar
    python -m timm_nf.run /path/to/timm/validate.py --model nf_resnet50.ra2_in1k --data-dir /imagenet
    torchrun --nproc_per_node=8 -m timm_nf.run train.py -c validate/recipes/dm_nf_regnet_b0.yaml --data-dir /imagenet

A bare script name that is not in the current folder is also looked up in $TIMM_SCRIPTS_DIR (a timm checkout).
"""
import argparse
import os
import runpy
import sys
from pathlib import Path
from typing import List, Optional

from ._command_line import UsageError, command_main

PROG = 'timm-nf run'
SCRIPTS_DIR_ENV = 'TIMM_SCRIPTS_DIR'
_DESCRIPTION = f"""Runs a Python script (timm's train.py, validate.py, benchmark.py, inference.py, ...) as __main__
after registering the timm-nf models; ARGS go to the script unchanged. A bare name not found in the current folder is
looked up in ${SCRIPTS_DIR_ENV}. timm's scripts are not in the pip package: clone
github.com/huggingface/pytorch-image-models. Also: python -m timm_nf.run SCRIPT [ARGS ...]"""


class ScriptError(UsageError):
    """The script cannot be run: missing, a folder, or not Python."""


def resolve_script(name: str) -> Path:
    """The script file `name` names, or ScriptError saying what was expected."""
    path = Path(name)
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1 and os.environ.get(SCRIPTS_DIR_ENV):
        candidate = Path(os.environ[SCRIPTS_DIR_ENV]) / path
        if candidate.exists():
            path = candidate
    if not path.exists():
        hint = f' or in ${SCRIPTS_DIR_ENV}={os.environ[SCRIPTS_DIR_ENV]}' if os.environ.get(SCRIPTS_DIR_ENV) else ''
        raise ScriptError(
            f'script not found: {name} (looked in {Path.cwd()}{hint}). timm\'s train.py / validate.py are not in the '
            f'pip package: pass the path into a checkout of github.com/huggingface/pytorch-image-models, '
            f'or set ${SCRIPTS_DIR_ENV} to that checkout')
    if path.is_dir():
        raise ScriptError(f'{name} is a folder; expected a Python script such as validate.py')
    source = path.read_bytes()
    first_line = source.split(b'\n', 1)[0]
    if path.suffix != '.py' and not (first_line.startswith(b'#!') and b'python' in first_line):
        raise ScriptError(f'{name} is not a Python script: expected a .py file (or a python shebang line)')
    try:
        compile(source, str(path), 'exec')
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes, i.e. a binary file
        raise ScriptError(f'{name} is not valid Python: {type(e).__name__}: {e}') from None
    return path


def _exit_status(code) -> int:
    """sys.exit's argument as a process exit status, as the interpreter maps it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_script(script: Path, args: List[str]) -> int:
    """Run `script` as __main__ with `args`; sys.argv and sys.path are restored afterwards."""
    import timm_nf  # noqa: F401  (registers the models before the script creates any)

    script_dir = str(script.resolve().parent)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script)] + list(args)
    sys.path.insert(0, script_dir)
    try:
        runpy.run_path(str(script), run_name='__main__')
    except SystemExit as e:
        return _exit_status(e.code)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = f'{PROG} SCRIPT [ARGS ...]'
    parser.add_argument('script', metavar='SCRIPT', help='the script to run, e.g. validate.py or /path/to/train.py')


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # only SCRIPT is parsed here: the script's own arguments are passed on untouched (argparse would drop a '--')
    head, rest = argv[:1], argv[1:]
    return command_main(PROG, _DESCRIPTION, add_arguments, lambda args: run_script(resolve_script(args.script), rest),
                        head)


if __name__ == '__main__':
    sys.exit(main())
