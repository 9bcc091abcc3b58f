"""Writing outputs so that an interrupted run never leaves a partial file or folder.

Every output is written to a temporary sibling (``.NAME.<random>.tmp``) and renamed over the
output only when complete; on any exception, Ctrl-C included, the temporary is removed and the
output place is left as it was. The output place is checked first by
:func:`yolohand.core.paths.check_output` (same kind, ``--force``, writable, clear of the inputs).
Outputs get the modes the umask gives a newly created file or folder (0644 / 0755 under umask
022), not mkstemp's private 0600 / 0700.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from yolohand.core.paths import FILE, FOLDER, OutputKind, check_output, write_marker


def current_umask() -> int:
    """The process umask (read by setting and restoring it: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(folder: bool) -> int:
    """Mode a new file (0o666) or folder (0o777) gets under the current umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


def check_writable(path: str | os.PathLike, force: bool, kind: OutputKind = FILE,
                   inputs: Iterable[str | os.PathLike | None] = (), flag: str = "output") -> Path:
    """:func:`yolohand.core.paths.check_output` (kept under its old name): where to write ``path``."""
    return check_output(path, kind, inputs, force, flag)


def _remove(path: Path) -> None:
    """Remove a file, link or folder (folders without following links inside)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, force: bool = False, mode: str = "w", kind: OutputKind = FILE,
                **open_kw) -> Iterator:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    ``kind``: what ``path`` must be if it exists (see :mod:`yolohand.core.paths`). On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = check_output(path, kind, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if "b" not in mode:
        open_kw.setdefault("encoding", "utf-8")
        open_kw.setdefault("newline", "")
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
        os.chmod(tmp, umask_mode(folder=False))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, kind: OutputKind = FOLDER) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    The folder gets yolohand's marker of ``kind`` (so a later ``--force`` recognises it). A
    previous output (with ``force``) is moved aside only once the new one is complete, then
    removed; if the swap fails half way the previous output is put back.
    """
    path = check_output(path, kind, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, umask_mode(folder=True))
        yield tmp
        write_marker(tmp, kind)
        check_output(path, kind, force=force)  # the place may have changed during the work
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` goes to a unique hidden name first and is
    removed after (restored if the second rename fails or is interrupted)."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rmdir(old)  # only the unique name is wanted
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


__all__ = [
    "current_umask", "umask_mode", "check_writable", "atomic_file", "atomic_dir",
]
