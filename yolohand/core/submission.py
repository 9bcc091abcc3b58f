"""Submission CSVs (``image_name,class,rle``): streaming writer and validating streaming reader.

Format (DESIGN.md): header exactly ``image_name,class,rle``; for every image, 29 contiguous rows,
one per class in :data:`yolohand.core.classes.CLASSES` order; an undetected class has an empty rle.

Reading decisions, documented here once:

- An empty field and the literal ``nan`` (any case; pandas writes it when an all-empty rle column
  was converted with ``astype(str)``) both mean an empty mask.
- A UTF-8 byte-order mark before the header (Excel exports) is ignored.
- Blank lines are skipped, as pandas does.
- Runs that touch (``start == previous end``, as a per-row encoder writes them) are fused;
  everything else malformed is an error: ``YolohandError("<path>:<line>: <problem>")``.

Memory: the reader holds one image's 29 run lists at a time (plus the set of image names seen,
to detect an image whose rows are not contiguous). No torch, no ultralytics.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from yolohand.core.atomic import atomic_file
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.paths import CSV
from yolohand.core.rle import Runs, runs_to_string, string_to_runs
from yolohand.errors import YolohandError

COLUMNS: tuple[str, str, str] = ("image_name", "class", "rle")

# RLE fields of noisy masks can exceed csv's default 128 KiB field limit.
_FIELD_LIMIT = 2**31 - 1


def _rle_text(rle: object) -> str:
    """A string for the rle column: str as is, Runs arrays encoded, None/NaN as empty."""
    if rle is None:
        return ""
    if isinstance(rle, str):
        return rle
    if isinstance(rle, float) and rle != rle:  # NaN
        return ""
    if isinstance(rle, np.ndarray):
        return runs_to_string(rle)
    raise TypeError(f"expected an RLE string or a Runs array, got {type(rle).__name__}")


class SubmissionWriter:
    """Write a submission CSV image by image, atomically (temp file renamed on success).

    Usage::

        with SubmissionWriter("sub.csv", force=False) as out:
            out.write_image("image1661130828152.png", rles)   # 29 strings (or Runs arrays)

    If the block raises (or :meth:`write_image` refuses its input) nothing is left at ``path``.
    """

    def __init__(self, path: str | os.PathLike, force: bool = False) -> None:
        self.path = Path(path)
        self.force = force
        self.n_images = 0
        self._seen: set[str] = set()
        self._stack: contextlib.ExitStack | None = None
        self._writer = None

    def __enter__(self) -> SubmissionWriter:
        with contextlib.ExitStack() as stack:  # a header that cannot be written still removes the temporary
            fh: TextIO = stack.enter_context(atomic_file(self.path, self.force, kind=CSV))
            self._writer = csv.writer(fh, lineterminator="\n")
            self._writer.writerow(COLUMNS)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> bool:
        stack, self._stack, self._writer = self._stack, None, None
        assert stack is not None
        return bool(stack.__exit__(*exc_info))

    def write_image(self, image_name: str, rles: Sequence[str | Runs | None]) -> None:
        """Write the 29 rows of one image; ``rles`` in CLASSES order (str, Runs array or None)."""
        if self._writer is None:
            raise RuntimeError("SubmissionWriter.write_image called outside its `with` block")
        if not image_name or not isinstance(image_name, str):
            raise YolohandError(f"{self.path}: invalid image name {image_name!r}")
        if len(rles) != NUM_CLASSES:
            raise YolohandError(
                f"{self.path}: image {image_name}: expected {NUM_CLASSES} masks, got {len(rles)}"
            )
        if image_name in self._seen:
            raise YolohandError(f"{self.path}: image {image_name} written twice")
        self._seen.add(image_name)
        self._writer.writerows(
            (image_name, cls, _rle_text(rle)) for cls, rle in zip(CLASSES, rles)
        )
        self.n_images += 1


def write_submission(
    path: str | os.PathLike,
    items: Iterable[tuple[str, Sequence[str | Runs | None]]],
    force: bool = False,
) -> int:
    """Write ``(image_name, 29 rles)`` items to ``path`` atomically; return the number of images.

    ``items`` is consumed lazily (a generator keeps memory flat). Raises YolohandError if
    ``path`` exists and not ``force``, or an item is malformed (nothing is written then).
    """
    with SubmissionWriter(path, force=force) as out:
        for image_name, rles in items:
            out.write_image(image_name, rles)
    return out.n_images


def _is_empty_field(text: str) -> bool:
    text = text.strip()
    return not text or (len(text) == 3 and text.lower() == "nan")


class _CountedLines:
    """Iterator over a text file's lines that counts them (for ``<path>:<line>`` messages)."""

    def __init__(self, fh: TextIO) -> None:
        self._fh = fh
        self.count = 0

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        self.count += 1
        return line


def _next_row(lines: _CountedLines) -> list[str] | None:
    """The next CSV record, or None at end of file.

    Unquoted lines (all that RLE submissions contain) are split directly, several times faster
    than the csv module; a line with a quote goes through ``csv.reader``, which pulls further
    lines itself when a quoted field spans several.
    """
    line = next(lines, None)
    if line is None:
        return None
    if '"' not in line:
        return line.rstrip("\r\n").split(",")
    return next(csv.reader(itertools.chain((line,), lines)), [])


def _iter_images(
    path: str | os.PathLike, shape: tuple[int, int], parse: bool
) -> Iterator[tuple[str, list]]:
    """Validate ``path`` while streaming it; yield (image_name, 29 Runs or 29 raw strings)."""
    path = Path(path)
    size = int(shape[0]) * int(shape[1])
    csv.field_size_limit(_FIELD_LIMIT)
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise YolohandError(f"{path}: cannot open: {e.strerror or e}") from None
    with fh:
        lines = _CountedLines(fh)

        def fail(problem: str) -> YolohandError:
            return YolohandError(f"{path}:{lines.count}: {problem}")

        try:
            header = _next_row(lines)
            if header is None:
                raise YolohandError(f"{path}:1: empty file, expected header {','.join(COLUMNS)}")
            if tuple(header) != COLUMNS:
                raise fail(f"header is {','.join(header)!r}, expected {','.join(COLUMNS)!r}")
            seen: set[str] = set()
            name = ""
            masks: list = []
            while (row := _next_row(lines)) is not None:
                if not row or row == [""]:  # blank line
                    continue
                if len(row) != 3:
                    raise fail(f"expected 3 fields (image_name,class,rle), got {len(row)}")
                image, cls, text = row
                k = len(masks)
                if k == 0:
                    if not image:
                        raise fail("empty image_name")
                    if image in seen:
                        raise fail(f"image {image} appears again: its rows are not contiguous")
                    seen.add(image)
                    name = image
                elif image != name:
                    raise fail(
                        f"image {name} has only {k} of {NUM_CLASSES} rows "
                        f"(expected class {CLASSES[k]}, found image {image})"
                    )
                if cls != CLASSES[k]:
                    what = "unknown class" if cls not in CLASSES else "class"
                    raise fail(
                        f"image {name}: {what} {cls!r} where row {k + 1} of the image "
                        f"must be {CLASSES[k]!r} (classes in competition order)"
                    )
                if parse:
                    if _is_empty_field(text):
                        masks.append(np.zeros((0, 2), dtype=np.int64))
                    else:
                        try:
                            masks.append(string_to_runs(text, size))
                        except ValueError as e:
                            raise fail(f"image {name}, class {cls}: malformed rle: {e}") from None
                else:
                    masks.append(text)
                if len(masks) == NUM_CLASSES:
                    yield name, masks
                    masks = []
            if masks:
                raise fail(f"image {name} has only {len(masks)} of {NUM_CLASSES} rows at end of file")
        except csv.Error as e:
            raise fail(f"unreadable CSV: {e}") from None
        except UnicodeDecodeError as e:
            raise YolohandError(f"{path}: not UTF-8 text ({e.reason})") from None


def iter_submission(
    path: str | os.PathLike, shape: tuple[int, int] = (2048, 2048)
) -> Iterator[tuple[str, list[Runs]]]:
    """Stream ``path`` image by image: yield ``(image_name, 29 Runs arrays in CLASSES order)``.

    Validates everything on the way (header, class names and order, 29 contiguous rows per image,
    each RLE well formed and within H*W of ``shape``); the first problem raises
    ``YolohandError("<path>:<line>: <problem>")``. Constant memory (one image at a time).
    """
    return _iter_images(path, shape, parse=True)


def read_image_names(path: str | os.PathLike) -> list[str]:
    """Image names of a submission CSV in file order.

    Checks the structure (header, classes, 29 contiguous rows per image) but does not parse the
    RLE strings; use :func:`iter_submission` for full validation.
    """
    return [name for name, _ in _iter_images(path, (0, 0), parse=False)]


__all__ = [
    "COLUMNS", "SubmissionWriter", "write_submission", "iter_submission", "read_image_names",
]
