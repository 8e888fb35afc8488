"""The command-line convention of `timm-nf`, `python -m hub` and `python -m validate`.

Every command is an argparse parser plus a function of its parsed arguments. Bad input ends a command with one
line on stderr, `PROG: error: WHAT IS WRONG; WHAT WAS EXPECTED`, and exit status 2: no traceback, and no output file
touched, because every value is checked before any work starts: numbers by the argparse types below (bounded, finite),
output paths by `check_output_file` / `check_output_folder` (never one of the command's inputs; an existing folder is
replaced only when it holds exactly what the command wrote there, as its marker file lists), and files are written
through a temporary sibling (timm_nf/_atomic.py). A command signals bad input by raising UsageError (or a subclass),
or lets the Python API's BadArgument through (reported naming the option); anything else escaping a command is a bug
and keeps its traceback.
"""
import argparse
import difflib
import importlib
import json
import math
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm

from ._arguments import MAX_BATCH, MAX_IMG_SIZE, MAX_SEED, BadArgument, range_text

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


def fail(prog: str, message: str) -> int:
    print(f'{prog}: error: {message}', file=sys.stderr)
    return EXIT_USAGE


def command_main(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], Optional[int]], argv: Optional[List[str]] = None,
                 options: Optional[Dict[str, str]] = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run; UsageError and Ctrl-C become one line on stderr.

    `options` maps the Python API's argument names to the command's options: a BadArgument (timm_nf/_arguments.py)
    raised by the API the command calls is reported naming the option.
    """
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
    except BadArgument as e:
        return fail(prog, e.naming((options or {}).get(e.argument, e.argument)))
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

def _real(path) -> str:
    return os.path.realpath(path)  # not abspath first: it would drop `link/..` as text, before the link is followed


def _in_real_folder(path) -> str:
    """`path` with its folder resolved (links, `..`) as the OS resolves it, its own name kept."""
    return os.path.join(_real(os.path.dirname(str(path)) or '.'), os.path.basename(str(path)))


def check_not_an_input(output: str, option: str, inputs: Sequence[Tuple[Optional[str], str]]) -> None:
    """UsageError when the output `output` is one of `inputs` ((path, what it is) pairs, None skipped) or, as a
    folder, holds one: writing or replacing it would destroy what the command reads."""
    out = _real(output)
    for path, what in inputs:
        if path is None or str(path) == '':
            continue
        given = _real(path)
        if given == out or (os.path.exists(out) and os.path.exists(given) and os.path.samefile(out, given)):
            raise UsageError(f'{option} {output} is {what}: writing it would destroy the input; name another '
                             f'{"folder" if os.path.isdir(out) else "file"}')
        if given.startswith(out.rstrip(os.sep) + os.sep):
            raise UsageError(f'{option} {output} holds {what} ({path}): replacing it would destroy the input; name '
                             f'another folder')


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


def check_output_file(path: str, option: str, suffixes: Sequence[str] = (),
                      inputs: Sequence[Tuple[Optional[str], str]] = ()) -> str:
    """The absolute path of an output file that can be written and is none of `inputs`, or UsageError saying why."""
    if not path:
        raise UsageError(f'{option} needs a file name')
    full = _in_real_folder(path)
    if os.path.isdir(full):
        raise UsageError(f'{option} {path} is a folder: expected a file name' +
                         (f' ending in {" or ".join(suffixes)}' if suffixes else ''))
    if suffixes and not path.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise UsageError(f'{option} {path}: expected a file name ending in {" or ".join(suffixes)}')
    check_not_an_input(path, option, inputs)
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise UsageError(f'cannot write {path}: the file is read-only')
    _check_writable_folder(os.path.dirname(full), path)
    return full


def check_output_dir(path, option: str, may_create: bool = False) -> str:
    """An existing folder that files can be written into, or with `may_create` a new one whose parent is; the
    absolute path, or UsageError saying why not."""
    if not str(path):
        raise UsageError(f'{option} needs a folder name')
    full = _real(path)
    if os.path.exists(full):
        if not os.path.isdir(full):
            raise UsageError(f'{option} {path} is a file: expected a folder')
        _check_writable_folder(full, str(path))
    elif may_create:
        _check_writable_folder(os.path.dirname(full), str(path))
    else:
        raise UsageError(f'{option} {path} does not exist: expected an existing folder')
    return full


def _folder_marker_files(folder: str, marker: str) -> Optional[List[str]]:
    """The files that a command's `marker` (written by `write_folder_marker`) says it wrote, or None."""
    try:
        with open(os.path.join(folder, marker), encoding='utf-8') as f:
            files = json.load(f).get('files')
    except (OSError, ValueError, AttributeError):
        return None
    return [str(name) for name in files] if isinstance(files, list) else None


def write_folder_marker(folder: str, marker: str, prog: str) -> None:
    """Record, in `folder`, that `prog` wrote every file now in it: only then may `--overwrite` replace it."""
    files = sorted(name for name in os.listdir(folder) if name != marker)
    with open(os.path.join(folder, marker), 'w', encoding='utf-8') as f:
        json.dump({'written_by': prog, 'files': files}, f, indent=1)


def check_output_folder(path: str, option: str, replace: bool = False, marker: Optional[str] = None,
                        inputs: Sequence[Tuple[Optional[str], str]] = ()) -> str:
    """An output folder: new (its parent must be writable), or, with `replace`, an existing one that holds nothing
    but what this command wrote there: its `marker` file and exactly the files that marker lists. A folder holding
    anything else, or any of `inputs`, is never replaced."""
    if not path:
        raise UsageError(f'{option} needs a folder name')
    full = _real(path)  # a link to a folder, or `.`, is replaced where it points
    check_not_an_input(path, option, inputs)
    if os.path.exists(full):
        if not os.path.isdir(full):
            raise UsageError(f'{option} {path} is a file: expected a folder (new, or one this command wrote)')
        if not replace:
            raise UsageError(f'{option} {path} exists: pass --overwrite to replace it')
        contents = set(os.listdir(full))
        written = _folder_marker_files(full, marker) if marker else None
        if contents and written is None:
            raise UsageError(f'{option} {path} holds files that this command did not write (it has no {marker}), '
                             f'so it is not replaced: name a new folder')
        others = sorted(contents - {marker} - set(written or ()))
        if others:
            raise UsageError(f'{option} {path} holds files that this command did not write ({", ".join(others[:5])}'
                             f'{", ..." if len(others) > 5 else ""}), so it is not replaced: name a new folder')
    _check_writable_folder(os.path.dirname(full), path)
    return full


# --- argparse value types: the message says what is expected -------------------------------------------------

def whole_number(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""
    expected = range_text(low, math.inf if high is None else high, whole=True)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {expected}, got {text!r}') from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f'expected {expected}, got {value}')
        return value
    parse.__name__ = 'whole number'  # argparse names the type in some messages
    parse.bounds = (low, math.inf if high is None else high, True, True, True)  # (low, high, in, in, whole)
    return parse


def real_number(low: float = -math.inf, high: float = math.inf, low_in: bool = True,
                high_in: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in the range (never NaN or infinity)."""
    expected = range_text(low, high, low_in, high_in)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or value > high or (value == low and not low_in) \
                or (value == high and not high_in):
            raise argparse.ArgumentTypeError(f'expected {expected}, got {text!r}')
        return value
    parse.__name__ = 'number'
    parse.bounds = (low, high, low_in, high_in, False)
    return parse


random_seed = whole_number(0, MAX_SEED)
image_size = whole_number(1, MAX_IMG_SIZE)
batch_size = whole_number(1, MAX_BATCH)
fraction = real_number(0, 1, low_in=False)  # e.g. a crop fraction
positive_float = real_number(0, low_in=False)
non_negative_float = real_number(0)


def check_model_name(name: str) -> None:
    """UsageError naming close matches when timm has no model `name`, or the tag of an 'arch.tag' name is not one of
    the arch's."""
    if timm.is_model(name):
        if '.' in name:
            from timm.models import get_pretrained_cfg
            try:
                get_pretrained_cfg(name)
            except RuntimeError:
                arch = name.split('.', 1)[0]
                tags = [t for t in timm.list_models(arch, pretrained=True) if t.split('.', 1)[0] == arch]
                raise UsageError(f'unknown pretrained tag in {name!r}: expected {arch} or one of '
                                 f'{", ".join(tags) or "its tags (it has none)"}') from None
        return
    matches = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f'; close matches: {", ".join(matches)}' if matches else '; `timm-nf list` shows the NF models'
    raise UsageError(f'unknown model {name!r}{hint}')
