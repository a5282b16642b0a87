"""Writing files safely: every file ckmodel writes goes through :func:`atomic_write`.

A reader never sees a half-written output: the content goes to a temporary file in the target's
folder, is flushed to disk, and is then renamed over the target in one step. When writing fails,
the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temporary file, renamed onto ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; missing parent folders are made.
    write : callable
        Called with the temporary file's path; writes the whole content there (e.g.
        ``lambda p: df.to_csv(p)`` or ``lambda p: ds.to_netcdf(p)``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(d / "a.txt", lambda p: p.write_text("hello")).read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
