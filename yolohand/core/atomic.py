"""Writing outputs so that an interrupted run never leaves a partial file or folder.

Every output is written to a temporary sibling (``.NAME.<random>.tmp``) and renamed over the
output only when complete; on any exception, Ctrl-C included, the temporary is removed and the
output place is left as it was. The output place is checked first by
:func:`yolohand.core.paths.check_output` (same kind, ``--force``, writable, clear of the inputs).
Outputs get the modes the umask gives a newly created file or folder (0644 / 0755 under umask
022), not mkstemp's private 0600 / 0700.

A write that fails (a full disk, a quota, an I/O error, a short write that numpy reports as
``65536 requested and 65408 written``) ends in one :class:`WriteFailed` line naming the output,
``out.csv: no space left on device while writing it; nothing written (free space or choose another
place)``, after the temporary is removed: the OSErrors raised inside the ``with`` block that concern
the temporary (its name, or no name at all, as a write to an open file has none) are turned into it.
A folder names the file inside it that failed. Never renamed over: anything but a regular file
(:func:`yolohand.core.paths.not_replaceable`), checked again just before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from yolohand.core.paths import FILE, FOLDER, OutputKind, check_output, not_replaceable, write_marker
from yolohand.errors import YolohandError


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


#: errno values of a failing output place, and how the one line says them.
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for its file system",
    errno.EIO: "input/output error (a failing disk or mount)",
    errno.EROFS: "read-only file system",
}
#: numpy's message for a short write (``ndarray.tofile``): an OSError without errno or file name.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class WriteFailed(YolohandError):
    """Writing an output failed (full disk, quota, I/O error, short write); nothing was left there.

    ``path``: the output; ``why``: what happened (``no space left on device``); ``inner``: the file
    inside an output folder that was being written (None for a file output)."""

    def __init__(self, path: Path, why: str, inner: str | None = None) -> None:
        self.path, self.why, self.inner = Path(path), why, inner
        what = "it" if inner is None else inner
        super().__init__(f"{path}: {why} while writing {what}; nothing written (free space or choose another place)")

    @classmethod
    def of(cls, path: str | os.PathLike, exc: BaseException) -> WriteFailed:
        """The failure ``exc`` (an OSError, or torch's ``PytorchStreamWriter failed writing``) of writing ``path``."""
        if isinstance(exc, OSError):
            return cls(Path(path), _why(exc))
        return cls(Path(path), f"the write failed ({' '.join(str(exc).split()[:12])}: a full disk?)")


def _why(exc: OSError) -> str:
    if exc.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[exc.errno]
    text = " ".join((exc.strerror or str(exc) or type(exc).__name__).split())
    if exc.errno is None and _SHORT_WRITE.search(text):
        return f"a short write ({text}: the disk is probably full)"
    return text[:1].lower() + text[1:]


def _concerns(exc: BaseException, tmp: Path) -> Path | None:
    """The file under ``tmp`` (``tmp`` itself for a file) that the OSError ``exc`` failed to write,
    or None when ``exc`` is about something else (an input that cannot be read, say).

    A write to an open file raises without a file name; so does numpy's short write (no errno
    either). An error naming another file is that file's, and already names it."""
    if not isinstance(exc, OSError) or isinstance(exc, (InterruptedError, BlockingIOError)):
        return None
    names = [Path(os.fsdecode(n)) for n in (exc.filename, exc.filename2) if isinstance(n, (str, bytes, os.PathLike))]
    inside = [n for n in names if n == tmp or n.is_relative_to(tmp)]
    if inside:
        return inside[0]
    if names:
        return None
    if exc.errno in _WRITE_ERRNOS:
        return tmp
    text = exc.strerror or str(exc)
    return tmp if exc.errno is None and _SHORT_WRITE.search(text) else None


def write_failed(path: Path, tmp: Path, exc: BaseException) -> WriteFailed | None:
    """The :class:`WriteFailed` of ``exc`` raised while ``tmp`` was written as the output ``path``
    (a file, or a folder: its inner file is named), or None when ``exc`` is not a write failure."""
    if isinstance(exc, WriteFailed) and (exc.path == tmp or exc.path.is_relative_to(tmp)):
        inner = None if exc.path == tmp else exc.path.relative_to(tmp).as_posix()
        return WriteFailed(path, exc.why, inner)  # written by a nested atomic_file in the folder
    where = _concerns(exc, tmp)
    if where is None:
        return None
    return WriteFailed(path, _why(exc), None if where == tmp else where.relative_to(tmp).as_posix())


def _check_rename(tmp: Path, path: Path) -> None:
    """Last check before ``tmp`` replaces ``path``: never rename over a device, a pipe or a socket."""
    why = not_replaceable(path) if os.path.lexists(path) else None
    if why is not None:
        raise YolohandError(f"{path}: {why}; not replaced by the output (write to a regular file instead)")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, force: bool = False, mode: str = "w", kind: OutputKind = FILE,
                **open_kw) -> Iterator:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    ``kind``: what ``path`` must be if it exists (see :mod:`yolohand.core.paths`). On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = check_output(path, kind, force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteFailed(path, _why(exc)) from exc
    tmp = Path(name)
    if "b" not in mode:
        open_kw.setdefault("encoding", "utf-8")
        open_kw.setdefault("newline", "")
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
        os.chmod(tmp, umask_mode(folder=False))
        _check_rename(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        failed = write_failed(path, tmp, exc)
        if failed is not None:
            raise failed from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, kind: OutputKind = FOLDER) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    The folder gets yolohand's marker of ``kind`` (so a later ``--force`` recognises it). A
    previous output (with ``force``) is moved aside only once the new one is complete, then
    removed; if the swap fails half way the previous output is put back.
    """
    path = check_output(path, kind, force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise WriteFailed(path, _why(exc)) from exc
    try:
        os.chmod(tmp, umask_mode(folder=True))
        yield tmp
        write_marker(tmp, kind)
        check_output(path, kind, force=force)  # the place may have changed during the work
        _swap_in(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = write_failed(path, tmp, exc)
        if failed is not None:
            raise failed from exc
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
    "current_umask", "umask_mode", "check_writable", "atomic_file", "atomic_dir", "WriteFailed", "write_failed",
]
