"""Writing files so that a reader never sees half of one.

Everything keysim writes goes to a temporary name in the destination's directory and is renamed
over the destination only when complete (``os.replace`` is atomic on POSIX and Windows), so an
interrupted run leaves either the old file or the new one, never a torn one.  ``tempfile`` makes
its files and directories private (0600, 0700); what keysim writes gets the modes an ordinary
``open`` or ``mkdir`` would give, under the user's umask.  A directory that replaces an earlier
one takes over what the earlier one held and keysim does not write (a report, a note), so that
re-running never deletes a user's file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "replace_dir",
    "temp_dir",
    "umask",
    "write_with",
]


def umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), else
    swapped out and back for the most private one (so a thread racing it errs on the safe side)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new directory in ``parent`` with the mode ``mkdir`` would give it (0777 less the umask)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    tmp.chmod(0o777 & ~umask())
    return tmp


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it goes.
    The file has the mode ``open`` would give it (0666 less the umask)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~umask())
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


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` made a copy of ``src`` out of hard links (symbolic links stay links)."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link)
    else:
        _link(str(src), str(dst))


def replace_dir(complete: Path, out: Path, owned: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Move the finished directory ``complete`` to ``out``, replacing an old ``out``; returns
    the names of the entries of the old ``out`` that ``complete`` did not have and that were
    carried over into the new one (a user's report or notes: nothing but keysim's own files is
    ever deleted).  ``owned(name)`` says which entries keysim wrote there and may drop when the
    new version does not have them (plots not drawn this time).

    The old directory is first renamed aside, so at every moment ``out`` is either the old
    version or the new one (never a mixture), and the old one is removed last.
    """
    old = out.with_name(f".{out.name}.old")
    if not out.exists() and old.is_dir():  # an earlier swap was interrupted between its renames
        os.replace(old, out)
    if not out.exists():
        os.replace(complete, out)
        return []
    kept = sorted(e.name for e in out.iterdir() if not (complete / e.name).exists() and not owned(e.name))
    for name in kept:  # hard links: cheap, and until the swap the old ``out`` is untouched
        _link_tree(out / name, complete / name)
    shutil.rmtree(old, ignore_errors=True)  # a finished swap's leftover: its files are in ``out``
    os.replace(out, old)
    os.replace(complete, out)
    shutil.rmtree(old, ignore_errors=True)
    return kept
