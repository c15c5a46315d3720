"""Writing files so that a reader never sees half of one.

Everything keysim writes goes to a temporary name in the destination's directory and is renamed
over the destination only when complete (``os.replace`` is atomic on POSIX and Windows), so an
interrupted run leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "replace_dir", "write_with"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it goes."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Let ``writer`` fill a temporary file, then move it into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def replace_dir(complete: Path, out: Path) -> None:
    """Move the finished directory ``complete`` to ``out``, replacing an old ``out``.

    The old directory is first renamed aside, so at every moment ``out`` is either the old
    version or the new one (never a mixture), and the old one is removed last.
    """
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(complete, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(complete, out)
