"""The command-line convention of `timm-nf`, `python -m hub` and `python -m validate`.

Every command is an argparse parser plus a function of its parsed arguments. Bad input ends a command with one
line on stderr, `PROG: error: WHAT IS WRONG; WHAT WAS EXPECTED`, and exit status 2: no traceback, and no output file
touched, because output paths are checked (`check_output_file`, `check_output_folder`) before any work starts and
files are written through a temporary sibling (timm_nf/_atomic.py). A command signals bad input by raising
UsageError (or a subclass); anything else escaping a command is a bug and keeps its traceback.
"""
import argparse
import difflib
import importlib
import math
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad input to a command: the message says what is wrong and what was expected."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the convention's one-line errors (argparse itself prints the whole usage, then the error)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message} (`{self.prog} --help` describes the arguments)\n')


def description(docstring: str) -> str:
    """A command's --help description from its module docstring: the first paragraph, without its "`usage`: " lead."""
    text = ' '.join(docstring.strip().split('\n\n', 1)[0].split())
    return text.split('`: ', 1)[1] if text.startswith('`') else text


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none: a one-line error can quote it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fail(prog: str, message: str) -> int:
    print(f'{prog}: error: {message}', file=sys.stderr)
    return EXIT_USAGE


def command_main(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], Optional[int]], argv: Optional[List[str]] = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run; UsageError and Ctrl-C become one line on stderr."""
    parser = ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    try:  # --help and argparse's own errors exit; a caller in this process gets the status instead
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return run(args) or 0
    except UsageError as e:
        return fail(prog, str(e))
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED


# name → (module whose `main(argv)` runs the command, one line of help)
CommandTable = Dict[str, Tuple[str, str]]


def usage(prog: str, commands: CommandTable, description: str = '', noun: str = 'command') -> str:
    width = max(map(len, commands)) + 2
    lines = [f'usage: {prog} {noun.upper()} [ARGS ...]', '']
    if description:
        lines += [description, '']
    lines += [f'{noun}s:'] + [f'  {name:<{width}}{help_}' for name, (_, help_) in commands.items()]
    return '\n'.join(lines + ['', f'`{prog} {noun.upper()} --help` describes its arguments.'])


def dispatch(prog: str, commands: CommandTable, argv: Optional[List[str]] = None, description: str = '',
             noun: str = 'command') -> int:
    """`PROG COMMAND ARGS ...`: imports the command's module only when that command runs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (['-h'], ['--help']):
        print(usage(prog, commands, description, noun))
        return 0
    if not argv:
        return fail(prog, f'no {noun} given: expected one of {", ".join(commands)} (`{prog} --help` describes them)')
    command = argv[0]
    if command not in commands:
        close = difflib.get_close_matches(command, list(commands), n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        return fail(prog, f'unknown {noun} {command!r}: expected one of {", ".join(commands)}{hint}')
    return importlib.import_module(commands[command][0]).main(argv[1:]) or 0


# --- output paths, checked before any work --------------------------------------------------------------------

def _check_writable_folder(folder: str, path: str) -> None:
    if not os.path.exists(folder):
        raise UsageError(f'cannot write {path}: folder {folder} does not exist')
    if not os.path.isdir(folder):
        raise UsageError(f'cannot write {path}: {folder} is a file, not a folder')
    try:  # os.access says yes to root on a read-only mount; creating a file is the real test
        fd, probe = tempfile.mkstemp(dir=folder, prefix='.timm-nf-write-test-')
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f'cannot write {path}: no file can be created in folder {folder} ({e.strerror})') from None


def check_output_file(path: str, option: str, suffixes: Sequence[str] = ()) -> str:
    """The absolute path of an output file that can be written, or UsageError saying why not."""
    if not path:
        raise UsageError(f'{option} needs a file name')
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise UsageError(f'{option} {path} is a folder: expected a file name' +
                         (f' ending in {" or ".join(suffixes)}' if suffixes else ''))
    if suffixes and not path.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise UsageError(f'{option} {path}: expected a file name ending in {" or ".join(suffixes)}')
    _check_writable_folder(os.path.dirname(full), path)
    return full


def check_output_folder(path: str, option: str, replace: bool = False, marker: Optional[str] = None) -> str:
    """An output folder: new (its parent must be writable), or an existing one only when `replace` is given and it
    holds `marker` (a file this command writes), so that no unrelated folder is ever replaced."""
    if not path:
        raise UsageError(f'{option} needs a folder name')
    full = os.path.abspath(path)
    if os.path.exists(full):
        if not os.path.isdir(full):
            raise UsageError(f'{option} {path} is a file: expected a folder (new, or one this command wrote)')
        if not replace:
            raise UsageError(f'{option} {path} exists: pass --overwrite to replace it')
        if marker and os.listdir(full) and not os.path.isfile(os.path.join(full, marker)):
            raise UsageError(f'{option} {path} holds other files and no {marker}: it was not written by this '
                             f'command, so it is not replaced; name a new folder')
    _check_writable_folder(os.path.dirname(full), path)
    return full


# --- argparse value types: the message says what is expected -------------------------------------------------

def _whole_number_at_least(minimum: int, name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a whole number of {minimum} or more, got {text!r}') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'expected a whole number of {minimum} or more, got {value}')
        return value
    parse.__name__ = name  # argparse names the type in some messages
    return parse


positive_int = _whole_number_at_least(1, 'positive_int')
non_negative_int = _whole_number_at_least(0, 'non_negative_int')


def fraction(text: str) -> float:
    """A number in (0, 1], e.g. a crop fraction."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'expected a number in (0, 1], got {text!r}')
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f'expected a finite number, got {text!r}')
    return value


def check_model_name(name: str) -> None:
    """UsageError naming close matches when timm has no model `name` (an 'arch.tag' name counts by its arch)."""
    if timm.is_model(name):
        return
    matches = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f'; close matches: {", ".join(matches)}' if matches else '; `timm-nf list` shows the NF models'
    raise UsageError(f'unknown model {name!r}{hint}')
