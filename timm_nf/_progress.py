"""Progress bars for long work: shown on a terminal, quiet in CI and when stderr is piped or redirected."""
import os
import sys
from typing import Iterable, Optional

from tqdm.auto import tqdm


def progress_wanted(requested: Optional[bool] = None) -> bool:
    """`requested` when given (a --progress/--no-progress flag), otherwise: stderr is a terminal and not in CI."""
    if requested is not None:
        return requested
    return sys.stderr.isatty() and os.environ.get('CI', '').lower() in ('', '0', 'false')


def progress_bar(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = '',
                 unit: str = 'it', show: Optional[bool] = None) -> tqdm:
    """A tqdm bar on stderr, disabled unless `progress_wanted(show)`; `leave=False` keeps finished bars out of logs."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not progress_wanted(show), leave=False,
                file=sys.stderr, dynamic_ncols=True)
