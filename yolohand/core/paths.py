"""Where a command may write: every output place is checked here, before any work starts.

One rule set for every command (DESIGN.md, "Bars"), so no command can destroy its inputs:

* Outputs and inputs are compared after resolving symlinks. An output that **equals** an input,
  **contains** one (``convert --root nest/raw --out nest``) or **lies inside** an input folder
  (``--out <root>/yolo``) is refused, whatever the flags.
* An existing output is replaced only with ``--force``, and only when it is plainly a previous
  output **of the same kind**: a file where a file is written, a folder where a folder is
  written, and for each kind the content yolohand writes (a submission CSV starts with its
  header; a folder carries yolohand's marker file :data:`MARKER`, or, for folders written before
  the marker existed, the files its command always writes). Anything else is refused even with
  ``--force``: a user's file is never taken for an output.
* The place must be writable: the nearest existing ancestor must be a folder in which a file
  can be created (probed with a temporary file, so read-only mounts and ``/proc`` fail here,
  with one line, and not after an hour of inference).
* Only regular files are replaced: an existing output that is a device, a named pipe, a socket
  or a link to one, or that lies in ``/dev``, ``/proc`` or ``/sys`` (``gt /dev/stdout``) is
  refused, ``--force`` or not: a temporary file renamed over it would replace it.
* A file output written with a trailing separator (``-o e.csv/``: the user meant a folder) is
  refused. The shell's word is needed for that, as ``Path("e.csv/")`` drops the ``/``: the CLI
  notes its command line with :func:`command_line`.

Each kind is an :class:`OutputKind`; :func:`check_output` applies the rules and returns the
absolute path to write; :mod:`yolohand.core.atomic` writes through it (temporary file or folder
beside the output, renamed into place, with the umask's modes).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolohand.errors import YolohandError

#: Hidden file every output folder of yolohand carries: ``{"kind": "<kind name>"}``.
MARKER = ".yolohand-output"

PathLike = str | os.PathLike


@dataclass(frozen=True)
class OutputKind:
    """One kind of output: a file or a folder, and how to recognise a previous one.

    ``name``: short name, stored in a folder's :data:`MARKER`; ``what``: words for messages;
    ``legacy``: for folders, a test of the contents of a folder written without the marker
    (None: the marker is required); for files, a test of the file (None: any regular file).
    """

    name: str
    folder: bool
    what: str
    legacy: Callable[[Path], bool] | None = None


def _head(path: Path, n: int = 64) -> bytes:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        return fh.read(n)
    return b""


def _is_submission(path: Path) -> bool:
    head = _head(path).removeprefix(b"\xef\xbb\xbf")
    return head == b"" or head.startswith(b"image_name,class,rle")


def _is_json_object(path: Path) -> bool:
    head = _head(path).lstrip()
    return head == b"" or head.startswith(b"{")


def _is_png(path: Path) -> bool:
    head = _head(path, 8)
    return head in (b"", b"\x89PNG\r\n\x1a\n")


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _has_files(*names: str) -> Callable[[Path], bool]:
    return lambda folder: all((folder / n).is_file() for n in names)


def _only_npz(folder: Path) -> bool:
    return all(p.suffix == ".npz" and p.is_file() for p in _visible(folder))


def _is_run(folder: Path) -> bool:
    """A training run (one fold or several): ultralytics' args.yaml / weights in it or its folds."""
    parts = [folder, *(p for p in _visible(folder) if p.is_dir() and p.name.startswith("fold"))]
    return any((p / "args.yaml").is_file() or (p / "weights").is_dir() for p in parts)


FILE = OutputKind("file", False, "file")
CSV = OutputKind("csv", False, "submission CSV", _is_submission)
JSON = OutputKind("json", False, "JSON file", _is_json_object)
PNG = OutputKind("png", False, "PNG image", _is_png)
FOLDER = OutputKind("folder", True, "folder")
#: synth: competition-layout data; marker only (a real dataset has the same layout).
DATASET = OutputKind("dataset", True, "synthetic dataset")
YOLO = OutputKind("yolo", True, "converted dataset", _has_files("convert_report.json"))
REPORT = OutputKind("report", True, "compare report", _has_files("report.html", "iou.csv"))
PROBMAPS = OutputKind("probmaps", True, "probability-map folder", _only_npz)
RUN = OutputKind("run", True, "training run", _is_run)


def resolved(path: PathLike) -> Path:
    """Absolute path with every symlink resolved (also a dangling final one, as far as it goes)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def write_location(path: PathLike) -> Path:
    """Where ``path`` is written: its parent resolved, its own name kept (an output that is a
    symlink is replaced as a link, never written through)."""
    p = Path(path).expanduser()
    if p.name in ("", ".", ".."):
        return resolved(p)
    return resolved(p.parent) / p.name


def overlap(out: PathLike, inputs: Iterable[PathLike | None]) -> tuple[Path, str] | None:
    """The first input ``out`` equals, contains or lies inside, with how: (input, "equals" |
    "contains" | "inside"); None when the output is clear of every input."""
    places = {write_location(out), resolved(out)}
    for inp in inputs:
        if inp is None:
            continue
        src = resolved(inp)
        for place in places:
            if place == src:
                return Path(inp), "equals"
            if src.is_relative_to(place):
                return Path(inp), "contains"
            if place.is_relative_to(src):
                return Path(inp), "inside"
    return None


def marker_kind(folder: Path) -> str | None:
    """The kind named by ``folder``'s :data:`MARKER`, None when absent or unreadable."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind"))
    return None


def write_marker(folder: Path, kind: OutputKind) -> None:
    """Mark ``folder`` as yolohand's output of ``kind`` (what lets ``--force`` replace it later)."""
    (folder / MARKER).write_text(json.dumps({"kind": kind.name, "by": "yolohand"}) + "\n", encoding="utf-8")


#: System folders whose entries are never replaced by an output file (devices, kernel files).
SYSTEM_FOLDERS = ("/dev", "/proc", "/sys")

_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_replaceable(loc: Path) -> str | None:
    """Why the existing ``loc`` must never be renamed over, or None for a regular file or folder
    (a symlink to one included): a device, a named pipe or a socket (or a link to one), or an entry
    of a system folder (``/dev/stdout`` is a link into ``/proc`` even when it leads to a file)."""
    for system in SYSTEM_FOLDERS:
        if loc.is_relative_to(system) and not loc.is_relative_to("/dev/shm"):  # /dev/shm: a tmpfs for files
            return f"lies in {system}, a system folder"
    try:
        mode = os.stat(loc).st_mode  # follows links: what writing through it would reach
    except OSError:
        return None  # a dangling link: judged as what it is (not a previous output)
    link = " a link to" if os.path.islink(loc) else ""
    return next((f"is{link} {what}" for test, what in _SPECIAL if test(mode)), None)


def is_previous_output(path: Path, kind: OutputKind) -> bool:
    """True when the existing ``path`` is plainly an earlier output of ``kind`` (never a device, a
    pipe or an entry of a system folder: :func:`not_replaceable`)."""
    if not_replaceable(path) is not None:
        return False
    if kind.folder:
        if not path.is_dir():
            return False
        try:
            if not _visible(path):
                return True  # an empty folder holds nothing to lose
        except OSError:
            return False
        if marker_kind(path) is not None:
            return marker_kind(path) == kind.name
        return kind.legacy is not None and kind.legacy(path)
    return path.is_file() and (kind.legacy is None or kind.legacy(path))


_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)
#: The command line's words that end in a path separator (:func:`command_line`), normalised.
_FOLDER_WORDS: set[str] = set()


@contextlib.contextmanager
def command_line(argv: Sequence[str]) -> Iterator[None]:
    """Within the block, remember which words of ``argv`` end in a path separator (``-o e.csv/``,
    ``--out=e.csv/``), so :func:`check_output` can refuse a file output the user wrote as a folder:
    typer's ``Path("e.csv/")`` has already dropped the ``/``. The CLI's boundary wraps each command."""
    words = set()
    for word in map(str, argv):
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if value.endswith(_SEPARATORS) and value.rstrip("".join(_SEPARATORS)):
            words.update(_spellings(value))
    saved = set(_FOLDER_WORDS)
    _FOLDER_WORDS.clear()
    _FOLDER_WORDS.update(words)
    try:
        yield
    finally:
        _FOLDER_WORDS.clear()
        _FOLDER_WORDS.update(saved)


def _spellings(text: str) -> set[str]:
    """``text`` as given (normalised) and made absolute: a command may pass either on."""
    return {os.path.normpath(text), os.path.abspath(os.path.expanduser(text))}


def _written_as_folder(path: PathLike) -> bool:
    """True when ``path`` was given with a trailing separator (as a string, or on the command line)."""
    text = os.fspath(path)
    return text.endswith(_SEPARATORS) or (bool(text) and not _spellings(text).isdisjoint(_FOLDER_WORDS))


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_place(path: Path, flag: str) -> None:
    """YolohandError unless a file can be created in ``path``'s folder (or the nearest existing
    ancestor, when the folder will be created). Probes with a temporary file."""
    where = _nearest_existing(path.parent)
    if not where.is_dir():
        raise YolohandError(f"{path}: {where} is not a folder, so {flag} cannot be written there")
    try:
        fd, probe = tempfile.mkstemp(prefix=".yolohand-probe-", dir=where)
    except OSError as exc:
        why = "files cannot be created there" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
        raise YolohandError(f"{path}: cannot write in {where} ({why})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(
    path: PathLike,
    kind: OutputKind = FILE,
    inputs: Iterable[PathLike | None] = (),
    force: bool = False,
    flag: str = "output",
) -> Path:
    """Apply every rule of the module docstring to the output ``path``; return where to write.

    ``inputs``: every file or folder the command reads (None entries are skipped). ``flag``
    names the option in messages (``--out``). Raises YolohandError with one line naming the
    path and the problem; never touches anything but a probe file.
    """
    if str(path) == "":
        raise YolohandError(f"{flag}: empty path")
    if not kind.folder and _written_as_folder(path):
        name = os.path.normpath(os.fspath(path))
        raise YolohandError(f"{name}{os.sep}: ends in '{os.sep}' (a folder), but {flag} writes a {kind.what}; give a "
                            f"file name (e.g. {Path(name) / ('out.' + kind.name if kind.name != 'file' else 'out')}) "
                            f"or drop the '{os.sep}'")
    loc = write_location(path)
    hit = overlap(path, inputs)
    if hit is not None:
        inp, how = hit
        words = {"equals": "is also an input", "contains": f"contains the input {inp}",
                 "inside": f"lies inside the input {inp}"}[how]
        raise YolohandError(f"{path}: {flag} {words}; choose an output outside the inputs")
    if os.path.lexists(loc):
        _check_existing(Path(path), loc, kind, force, flag)
    check_place(loc, flag)
    return loc


def _check_existing(path: Path, loc: Path, kind: OutputKind, force: bool, flag: str) -> None:
    special = not_replaceable(loc)
    if special is not None:
        raise YolohandError(f"{path}: {special}; {flag} is written as a temporary file renamed into place, which "
                            "would replace it: write to a regular file instead (refused even with --force)")
    if kind.folder and not loc.is_dir():
        raise YolohandError(f"{path}: exists and is not a folder; {flag} writes a {kind.what} (a folder); "
                            "not replaced, even with --force")
    if not kind.folder and loc.is_dir():
        raise YolohandError(f"{path}: is a folder; {flag} writes a {kind.what}: give a file name "
                            f"(e.g. {path / ('out.' + kind.name if kind.name != 'file' else 'out')})")
    if not force:
        raise YolohandError(f"{path}: already exists (pass --force to replace it)")
    if not is_previous_output(loc, kind):
        raise YolohandError(f"{path}: exists and is not a previous yolohand {kind.what}; not replaced, even "
                            f"with --force (move it away or choose another {flag})")


def check_submission_outputs(
    out: PathLike, save_probs: PathLike | None, inputs: Iterable[PathLike | None], force: bool = False,
    flag: str = "--out",
) -> tuple[Path, Path | None]:
    """The places of a submission CSV and (optionally) a probability-map folder, written by one
    command (predict, ensemble): each checked against every input and the two against each other."""
    inputs = list(inputs)
    out_path = check_output(out, CSV, inputs, force, flag=flag)
    probs = None if save_probs is None else check_output(save_probs, PROBMAPS, [*inputs, out_path], force,
                                                          flag="--save-probs")
    return out_path, probs


__all__ = [
    "CSV", "DATASET", "FILE", "FOLDER", "JSON", "MARKER", "PNG", "PROBMAPS", "REPORT", "RUN", "YOLO",
    "OutputKind", "check_output", "check_submission_outputs", "check_place", "is_previous_output",
    "marker_kind", "overlap", "resolved", "write_location", "write_marker", "PathLike", "SYSTEM_FOLDERS",
    "command_line", "not_replaceable",
]
