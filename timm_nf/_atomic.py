"""Write files through a temporary sibling, so that a failure never leaves half a file behind.

Every writer in the project (SPP results and figures, fused weights, the published-weights registry, MODEL_CARD.md,
validate/ results) goes through here.
"""
import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in the same folder; on success it becomes `path` with the usual permissions."""
    folder = os.path.realpath(os.path.dirname(path) or '.')  # where the OS puts `path`, even as `link/../name`
    base, ext = os.path.splitext(os.path.basename(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.tmp-{base}-', suffix=ext)
    except OSError as e:  # named after the file asked for, not the temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a result file should be readable like any other
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(str(path)) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
