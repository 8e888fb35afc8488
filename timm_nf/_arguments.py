"""Checks of the Python API's arguments: a TypeError for a value of the wrong type, a ValueError for a value out of
range, each naming the argument. The command line turns the same errors into its one-line errors naming its options
(`BadArgument.naming`), so one check serves both.

Limits that keep a value far from overflow or an impossible allocation live here, so that every command and the API
agree on them; where memory decides, timm_nf/_memory.py estimates it.
"""
import math
import numbers
from typing import Any, Optional, Tuple, Type, Union

MAX_SEED = 2 ** 32 - 1        # what numpy's and Python's seeding take, as well as torch's
MAX_IMG_SIZE = 8192           # px per side; memory (timm_nf/_memory.py) usually decides well below this
MAX_BATCH = 65536


class BadArgument(ValueError):
    """A bad value for one argument. The message is a template: `{arg}` is the argument's name from Python and the
    option's name on the command line (`naming`)."""

    def __init__(self, argument: str, template: str):
        self.argument, self.template = argument, template
        super().__init__(self.naming(argument))

    def naming(self, name: str) -> str:
        return self.template.replace('{arg}', name)  # not str.format: the rest may quote braces


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none: a one-line error can quote it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def range_text(low: float = -math.inf, high: float = math.inf, low_in: bool = True, high_in: bool = True,
               whole: bool = False) -> str:
    """'a whole number in [1, 8192]', 'a finite number > 0', ...: what a bounded value must be."""
    kind = 'a whole number' if whole else 'a finite number'
    low_text = f'{int(low)}' if whole and low != -math.inf else f'{low:g}'
    high_text = f'{int(high)}' if whole and high != math.inf else f'{high:g}'
    if low == -math.inf and high == math.inf:
        return kind
    if high == math.inf:
        return f'{kind} {">=" if low_in else ">"} {low_text}'
    if low == -math.inf:
        return f'{kind} {"<=" if high_in else "<"} {high_text}'
    return f'{kind} in {"[" if low_in else "("}{low_text}, {high_text}{"]" if high_in else ")"}'


def require_type(name: str, value: Any, types: Union[Type, Tuple[Type, ...]], expected: str) -> Any:
    """TypeError naming `name` unless `value` is an instance of `types` (bools are never numbers)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise TypeError(f'{name} must be {expected}, got {type(value).__name__} {_short(value)}')
    return value


def require_whole(name: str, value: Any, low: int, high: Optional[int] = None) -> int:
    """`value` as an int: TypeError unless it is a whole number, BadArgument unless it is in [low, high]."""
    expected = range_text(low, math.inf if high is None else high, whole=True)
    require_type(name, value, numbers.Integral, expected)
    if value < low or (high is not None and value > high):
        raise BadArgument(name, f'{{arg}} must be {expected}, got {value!r}')
    return int(value)


def require_real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, low_in: bool = True,
                 high_in: bool = True) -> float:
    """`value` as a float: TypeError unless it is a real number, BadArgument unless it is finite and in range."""
    expected = range_text(low, high, low_in, high_in)
    require_type(name, value, numbers.Real, expected)
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (value == low and not low_in) \
            or (value == high and not high_in):
        raise BadArgument(name, f'{{arg}} must be {expected}, got {value!r}')
    return value


def _as_tuple(types) -> Tuple[Type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'
