"""The competition's run-length encoding, and set operations on runs without rasterising.

String format (DESIGN.md): flatten the H x W mask in row-major order; ``"start length ..."``
with 1-based starts; runs may wrap from the end of one row into the next; an empty mask is ``""``
(NaN / None / ``"nan"`` read back from pandas mean the same).

In memory a mask is a *Runs* array: int64, shape (K, 2), each row ``[start, end)`` in 0-based flat
row-major indices, sorted, disjoint and non-touching (canonical: one run per maximal stretch of set
pixels). Every function here returns canonical runs; inputs are expected canonical too (the ones
from :func:`string_to_runs`, :func:`mask_to_runs`, :func:`vote` are).

This module owns all run algebra, as pycocotools' ``mask.py`` does for COCO RLE: encode/decode,
area and intersections (one pair, or all 29 classes of an image in one pass; a union's area is
``area(a) + area(b) - intersection``), the union of several masks, bounding boxes and crops.
Elsewhere runs are only passed around, never re-derived.

Boxes (:data:`Box`) are ``(y0, x0, y1, x1)`` with exclusive ends, in pixels of the full image:
rows ``y0..y1-1``, columns ``x0..x1-1``; the crop ``mask[y0:y1, x0:x1]``.

This module imports only numpy (no torch, no ultralytics).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: int64 (K, 2) array of ``[start, end)`` flat 0-based pixel intervals, canonical (see module doc).
Runs = npt.NDArray[np.int64]
#: ``(y0, x0, y1, x1)``: rows y0..y1-1 and columns x0..x1-1 of the image (exclusive ends).
Box = tuple[int, int, int, int]

__all__ = [
    "Runs", "Box", "empty_runs", "encode", "decode", "mask_to_runs", "crop_to_runs", "runs_to_mask",
    "runs_to_string", "string_to_runs", "area", "intersection_area", "union", "vote",
    "mask_bbox", "bbox", "union_boxes", "runs_crop", "stack_classes", "class_areas",
    "class_intersections",
]

# Values above this cannot be real pixel indices and would overflow int64 sums.
_MAX_VALUE = 2**62


def _probe_fromstring_strict() -> bool:
    """True when ``np.fromstring(sep=" ")`` raises on trailing garbage (numpy >= 2.x does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            np.fromstring("1 x", dtype=np.int64, sep=" ")
        except ValueError:
            return True
    return False


_FROMSTRING_STRICT = _probe_fromstring_strict()


def empty_runs() -> Runs:
    """An empty Runs array: int64 shape (0, 2)."""
    return np.zeros((0, 2), dtype=np.int64)


# ----------------------------------------------------------------------------- encoding


def _merge_touching(starts: np.ndarray, ends: np.ndarray) -> Runs:
    """Stack sorted, disjoint ``starts``/``ends`` (int64, (K,)) into canonical runs.

    Runs that touch (``end == next start``, e.g. a run reaching the end of a row and one starting
    the next row) are fused.
    """
    if starts.size > 1:
        keep = starts[1:] != ends[:-1]  # False where run i+1 continues run i
        starts = np.concatenate((starts[:1], starts[1:][keep]))
        ends = np.concatenate((ends[:-1][keep], ends[-1:]))
    return np.stack((starts, ends), axis=1).astype(np.int64, copy=False)


def _block_runs(block: np.ndarray, r0: int, c0: int, width: int) -> Runs:
    """Runs of a (h, w) block whose top-left pixel sits at (r0, c0) in an image ``width`` wide.

    The block is copied into a bool buffer with one False column on each side, so that a run
    never crosses a row of the buffer; one diff over the flat buffer then finds every boundary.
    Runs wrapping from one image row into the next are fused afterwards (only possible when the
    block spans the full width).
    """
    h, w = block.shape
    padded = np.zeros((h, w + 2), dtype=bool)
    padded[:, 1:-1] = block  # casting to bool: any nonzero value is set
    flat = padded.ravel()
    # Boundary at i means flat[i] != flat[i+1]; the pixel at i+1 starts (or ends, exclusive) a run.
    p = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    row, col = np.divmod(p, w + 2)
    pos = (row + r0) * width + (col - 1 + c0)
    return _merge_touching(pos[0::2], pos[1::2])


def _as_nonzero_view(mask: np.ndarray) -> np.ndarray:
    """A view (or, for wide dtypes, a copy) of ``mask`` whose nonzero bytes mark set pixels."""
    if mask.dtype == bool or mask.dtype.itemsize == 1:
        return mask.view(np.uint8)
    return mask != 0


def _nonzero_rows(nz: np.ndarray) -> np.ndarray:
    """Bool (H,): which rows of a 2-D uint8 array hold a nonzero byte.

    The one pass over the whole mask, so it is the hot spot: OR-reducing 8 bytes at a time
    (uint64 view) or a uint8 max are about twice as fast as ``ndarray.any``.
    """
    if nz.shape[1] % 8 == 0 and nz.strides[1] == 1:
        try:
            return np.bitwise_or.reduce(nz.view(np.uint64), axis=1) != 0
        except ValueError:  # rows not laid out for a uint64 view
            pass
    return nz.max(axis=1) != 0


def _check_2d(mask: npt.ArrayLike, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what} must be 2-D (H, W), got shape {mask.shape}")
    return mask


def mask_bbox(mask: npt.ArrayLike) -> Box | None:
    """Box (y0, x0, y1, x1), exclusive ends, of the nonzero pixels of a 2-D array; None if none.

    One fast reduction finds the bounding rows, a second (over that band only) the columns.
    """
    nz = _as_nonzero_view(_check_2d(mask))
    rows = np.flatnonzero(_nonzero_rows(nz))
    if rows.size == 0:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(nz[r0:r1].any(axis=0))
    return r0, int(cols[0]), r1, int(cols[-1]) + 1


def _window_runs(arr: np.ndarray, top: int, left: int, width: int) -> Runs:
    """Runs of the set pixels of a 2-D array placed at (top, left) in an image ``width`` wide.

    Only the bounding box of the set pixels is copied and diffed, never the empty rest.
    """
    box = mask_bbox(arr)
    if box is None:
        return empty_runs()
    r0, c0, r1, c1 = box
    return _block_runs(arr[r0:r1, c0:c1], top + r0, left + c0, width)


def mask_to_runs(mask: npt.ArrayLike) -> Runs:
    """Canonical runs (int64 (K, 2)) of a 2-D mask (bool or numeric (H, W), nonzero = set)."""
    mask = _check_2d(mask)
    return _window_runs(mask, 0, 0, mask.shape[1])


def crop_to_runs(crop: npt.ArrayLike, y0: int, x0: int, shape: tuple[int, int]) -> Runs:
    """Runs, in a (H, W) image, of a 2-D crop (bool/numeric (h, w)) whose top-left is at (y0, x0).

    Parts of the crop falling outside the image are ignored (a box may overhang the border).
    """
    crop = _check_2d(crop, "crop")
    height, width = int(shape[0]), int(shape[1])
    y0, x0 = int(y0), int(x0)
    ya, xa = max(0, -y0), max(0, -x0)  # clip the crop to the image
    yb = min(crop.shape[0], height - y0)
    xb = min(crop.shape[1], width - x0)
    if ya >= yb or xa >= xb:
        return empty_runs()
    return _window_runs(crop[ya:yb, xa:xb], y0 + ya, x0 + xa, width)


def runs_to_string(runs: Runs) -> str:
    """``"start length ..."`` (1-based starts) of runs (int64 (K, 2)); ``""`` when empty."""
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    if runs.shape[0] == 0:
        return ""
    pairs = np.empty_like(runs)
    pairs[:, 0] = runs[:, 0] + 1
    pairs[:, 1] = runs[:, 1] - runs[:, 0]
    return " ".join(map(str, pairs.ravel().tolist()))


def encode(mask: npt.ArrayLike) -> str:
    """Competition RLE string of a 2-D mask (bool or numeric (H, W), nonzero = set)."""
    return runs_to_string(mask_to_runs(mask))


# ----------------------------------------------------------------------------- decoding


def _is_empty_value(rle: object) -> bool:
    """True for None and float NaN (pandas' empty cell); ValueError for any other number.

    Blank strings and the text ``"nan"`` also mean "empty": :func:`string_to_runs` checks those.
    """
    if rle is None:
        return True
    if isinstance(rle, float):
        if math.isnan(rle):
            return True
        raise ValueError(f"expected an RLE string, got the number {rle!r}")
    return False


def _explain_bad_tokens(text: str) -> str:
    """Precise reason why ``text`` is not a list of integers (slow path, errors only)."""
    for i, token in enumerate(text.split()):
        body = token[1:] if token[:1] in "+-" else token
        if not (body.isascii() and body.isdigit()):
            return f"value {i + 1} is not an integer: {token[:30]!r}"
    return "not a list of integers"


def _parse_ints(text: str) -> np.ndarray:
    """Whitespace-separated integers -> int64 (N,); ValueError naming the bad token."""
    if "\x00" in text:  # the C parser would stop silently at a NUL
        raise ValueError("contains a NUL character")
    try:
        if _FROMSTRING_STRICT:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise ValueError(_explain_bad_tokens(text)) from None
    return values


def string_to_runs(rle: str | float | None, size: int | None = None) -> Runs:
    """Parse and validate an RLE string into canonical runs (int64 (K, 2)).

    ``None``, NaN, blank and ``"nan"`` give no runs. ``size`` (H*W), when given, bounds the runs.
    Touching runs (``start == previous end``, as a per-row encoder writes them) are accepted and
    fused. Raises ValueError with a precise reason for: non-integers, an odd number of values,
    starts < 1, zero or negative lengths, runs unsorted or overlapping, runs past ``size``.
    """
    if _is_empty_value(rle):
        return empty_runs()
    if not isinstance(rle, str):
        raise ValueError(f"expected an RLE string, got {type(rle).__name__}")
    text = rle.strip()
    if not text or (len(text) == 3 and text.lower() == "nan"):
        return empty_runs()
    values = _parse_ints(text)
    if values.size % 2:
        raise ValueError(f"odd number of values ({values.size}): expected start/length pairs")
    pairs = values.reshape(-1, 2)
    # Fast path: a handful of whole-array operations; the precise diagnosis runs only on failure.
    if values.min() >= 1 and values.max() < _MAX_VALUE:  # starts and lengths >= 1, no overflow
        runs = pairs - 1  # [start - 1, length - 1]
        runs[:, 1] += pairs[:, 0]  # 0-based exclusive end = start - 1 + length
        gaps = runs[1:, 0] - runs[:-1, 1]  # < 0 overlap or unsorted, 0 touching
        min_gap = int(gaps.min()) if gaps.size else 1
        if min_gap >= 0 and (size is None or runs[-1, 1] <= size):
            return runs if min_gap > 0 else _merge_touching(runs[:, 0], runs[:, 1])
    _check_pairs(pairs[:, 0], pairs[:, 1], size)  # raises with the first problem
    raise AssertionError("unreachable: fast path and diagnosis disagree")  # pragma: no cover


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _check_pairs(starts: np.ndarray, lengths: np.ndarray, size: int | None) -> None:
    """Vectorised validation of 1-based starts and lengths; ValueError on the first problem."""
    if (bad := starts < 1).any():
        i = _first(bad)
        raise ValueError(f"run {i + 1}: start {starts[i]} < 1 (starts are 1-based)")
    if (bad := lengths < 1).any():
        i = _first(bad)
        raise ValueError(f"run {i + 1} (start {starts[i]}): length {lengths[i]} is not positive")
    if (bad := (starts >= _MAX_VALUE) | (lengths >= _MAX_VALUE)).any():
        i = _first(bad)
        raise ValueError(f"run {i + 1}: value too large (start {starts[i]}, length {lengths[i]})")
    ends = starts + lengths  # 1-based exclusive end == 0-based start of the next free pixel + 1
    if (bad := starts[1:] < ends[:-1]).any():
        i = _first(bad) + 1
        what = "is out of order" if starts[i] < starts[i - 1] else "overlaps the previous run"
        raise ValueError(
            f"run {i + 1} (start {starts[i]}) {what}: the previous run covers pixels "
            f"{starts[i - 1]}..{ends[i - 1] - 1}"
        )
    if size is not None and starts.size and ends[-1] - 1 > size:
        # Runs are sorted and disjoint, so only the last one can pass the end.
        i = starts.size - 1
        where = "starts" if starts[i] > size else "ends"
        raise ValueError(
            f"run {i + 1} {where} past the image: pixels {starts[i]}..{ends[i] - 1} "
            f"but H*W = {size}"
        )


def runs_to_mask(runs: Runs, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask of canonical (or at least disjoint) runs (int64 (K, 2))."""
    height, width = int(shape[0]), int(shape[1])
    size = height * width
    out = np.zeros(size, dtype=bool)
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    if runs.shape[0]:
        if runs[0, 0] < 0 or runs[-1, 1] > size:
            raise ValueError(f"runs span {runs[0, 0]}..{runs[-1, 1]}, outside a {shape} image")
        if runs.shape[0] > 1 and (runs[1:, 0] < runs[:-1, 1]).any():
            raise ValueError("runs must be sorted and disjoint")
        # +1 at starts, -1 at ends, prefix-summed over the runs' span only (0/1 for disjoint runs).
        s0, e1 = int(runs[0, 0]), int(runs[-1, 1])
        step = np.zeros(e1 - s0 + 1, dtype=np.int8)
        step[runs[:, 0] - s0] += 1
        step[runs[:, 1] - s0] -= 1
        np.cumsum(step[:-1], dtype=np.int8, out=out[s0:e1].view(np.int8))
    return out.reshape(height, width)


def decode(rle: str | float | None, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask of an RLE string; NaN / None / "" give an empty mask.

    Raises ValueError when the string is malformed or runs past H*W.
    """
    return runs_to_mask(string_to_runs(rle, int(shape[0]) * int(shape[1])), shape)


# ----------------------------------------------------------------------------- set operations


def _as_runs(runs: Runs) -> Runs:
    return np.asarray(runs, dtype=np.int64).reshape(-1, 2)


def area(runs: Runs) -> int:
    """Number of pixels covered by runs (int64 (K, 2))."""
    runs = _as_runs(runs)
    return int((runs[:, 1] - runs[:, 0]).sum())


def _coverage(runs: Runs, x: np.ndarray) -> np.ndarray:
    """For each position in ``x`` (int64), the number of pixels of ``runs`` lying below it."""
    starts, ends = runs[:, 0], runs[:, 1]
    before = np.concatenate(([0], np.cumsum(ends - starts)))  # pixels in runs 0..j-1
    j = np.searchsorted(starts, x, side="left")  # runs starting strictly below x
    last = np.maximum(j - 1, 0)
    partial = np.clip(x - starts[last], 0, ends[last] - starts[last])
    return np.where(j > 0, before[last] + partial, 0)


def intersection_area(a: Runs, b: Runs) -> int:
    """Pixels covered by both canonical run lists (vectorised: binary search, no loop)."""
    a, b = _as_runs(a), _as_runs(b)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return 0
    if a.shape[0] > b.shape[0]:
        a, b = b, a  # search the longer list with the shorter one's boundaries
    return int((_coverage(b, a[:, 1]) - _coverage(b, a[:, 0])).sum())


def union(runs_list: Sequence[Runs]) -> Runs:
    """Canonical runs of the pixels covered by any of the run lists (OR of the masks)."""
    if len(runs_list) == 1:
        return _as_runs(runs_list[0])
    return vote(runs_list, min_weight=1)


# ----------------------------------------------------------------------------- all classes at once


def stack_classes(runs_list: Sequence[Runs], stride: int) -> tuple[Runs, np.ndarray]:
    """Concatenate per-class runs into one sorted list, class c shifted by ``c * stride``.

    ``stride`` must be >= every run end (H*W does), so that the classes stay apart and one
    vectorised pass can serve all classes of an image. Returns (runs int64 (K, 2), sorted and
    disjoint (the last run of one class may touch the first of the next), class index int64 (K,));
    subtract ``cls * stride`` to get the original runs back.
    """
    arrays = [_as_runs(r) for r in runs_list]
    counts = np.fromiter((len(r) for r in arrays), np.int64, len(arrays))
    if counts.sum() == 0:
        return empty_runs(), np.zeros(0, np.int64)
    cls = np.repeat(np.arange(len(arrays), dtype=np.int64), counts)
    return np.concatenate(arrays) + (cls * stride)[:, None], cls


def class_areas(runs_list: Sequence[Runs]) -> np.ndarray:
    """int64 (C,): pixels of each class's runs."""
    return np.fromiter((area(r) for r in runs_list), np.int64, len(runs_list))


def _stride(*run_lists: Sequence[Runs]) -> int:
    """One more than the largest run end in the lists (a valid ``stack_classes`` stride)."""
    return 1 + max((int(r[-1, 1]) for rl in run_lists for r in map(_as_runs, rl) if len(r)), default=0)


def class_intersections(runs_a: Sequence[Runs], runs_b: Sequence[Runs], stride: int | None = None) -> np.ndarray:
    """int64 (C,): |A_c n B_c| for every class c at once, from canonical runs, no rasterising.

    Same result as :func:`intersection_area` class by class, in one vectorised pass: the classes
    are stacked (:func:`stack_classes`; ``stride`` defaults to just past the largest run end,
    H*W also works), then for each run of A the pixels of B below its end minus those below its
    start are summed per class.
    """
    n = len(runs_a)
    if len(runs_b) != n:
        raise ValueError(f"{n} classes in A but {len(runs_b)} in B")
    stride = _stride(runs_a, runs_b) if stride is None else int(stride)
    a, cls = stack_classes(runs_a, stride)
    b, _ = stack_classes(runs_b, stride)
    out = np.zeros(n, np.int64)
    if len(a) and len(b):
        np.add.at(out, cls, _coverage(b, a[:, 1]) - _coverage(b, a[:, 0]))
    return out


# ----------------------------------------------------------------------------- boxes and crops


def bbox(runs: Runs, width: int) -> Box | None:
    """Exact box (y0, x0, y1, x1), exclusive ends, of runs in an image ``width`` wide; None if empty.

    A run wrapping from one row into the next covers the last column of the first row and
    column 0 of the next, so any multi-row run makes the box full width.
    """
    runs = _as_runs(runs)
    if runs.shape[0] == 0:
        return None
    row_s, col_s = np.divmod(runs[:, 0], width)
    row_e, col_e = np.divmod(runs[:, 1] - 1, width)  # the last pixel, inclusive
    y0, y1 = int(row_s.min()), int(row_e.max()) + 1
    if (row_s != row_e).any():
        return y0, 0, y1, int(width)
    return y0, int(col_s.min()), y1, int(col_e.max()) + 1


def union_boxes(boxes: Sequence[Box | None]) -> Box | None:
    """The smallest box holding every given box (None entries are skipped); None if none given."""
    given = [b for b in boxes if b is not None]
    if not given:
        return None
    return (min(b[0] for b in given), min(b[1] for b in given),
            max(b[2] for b in given), max(b[3] for b in given))


def runs_crop(runs: Runs, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """bool (y1 - y0, x1 - x0): the mask of ``runs`` (in a (H, W) image) inside ``box``.

    Only the runs crossing the box's rows are rasterised (clipped to that band), never the image.
    """
    y0, x0, y1, x1 = (int(v) for v in box)
    width = int(shape[1])
    lo, hi = y0 * width, y1 * width
    band = np.clip(_as_runs(runs), lo, hi) - lo
    band = band[band[:, 1] > band[:, 0]]
    return runs_to_mask(band, (y1 - y0, width))[:, x0:x1]


def vote(
    runs_list: Sequence[Runs],
    weights: Sequence[float] | None = None,
    min_weight: float | None = None,
) -> Runs:
    """Pixel-wise weighted vote over k canonical run lists, by a sweep over run boundaries.

    A pixel is kept when the summed weight of the lists covering it is ``>= min_weight``; by
    default (``min_weight=None``) when it is strictly more than half the total weight (strict
    majority; with unit weights ``min_weight=m`` is "at least m votes"). Weights default to 1 and
    must be >= 0; ``min_weight`` must be > 0. Integer weights are summed exactly; float weights
    are compared with a tolerance of 1e-9 x total weight so that summation order cannot flip a tie.
    Never rasterises: cost is O(R log R) in the total number of runs R.
    """
    k = len(runs_list)
    if weights is None:
        w = np.ones(k, dtype=np.int64)
    else:
        w = np.asarray(weights)
        if w.shape != (k,):
            raise ValueError(f"{w.size} weights for {k} run lists")
        if w.dtype.kind not in "iub":
            w = w.astype(np.float64)
            if not np.isfinite(w).all():
                raise ValueError("weights must be finite")
        else:
            w = w.astype(np.int64)
        if (w < 0).any():
            raise ValueError("weights must be >= 0")
    total = w.sum()
    exact = w.dtype.kind == "i"
    tol = 0 if exact else 1e-9 * float(total)
    if min_weight is not None and not min_weight > 0:
        raise ValueError(f"min_weight must be > 0, got {min_weight}")
    if k == 0:
        return empty_runs()

    arrays = [_as_runs(r) for r in runs_list]
    counts = np.array([r.shape[0] for r in arrays])
    if counts.sum() == 0:
        return empty_runs()
    allruns = np.concatenate(arrays)
    wr = np.repeat(w, counts)  # weight of each run
    pos = np.concatenate((allruns[:, 0], allruns[:, 1]))
    delta = np.concatenate((wr, -wr))
    order = np.argsort(pos, kind="stable")
    pos, delta = pos[order], delta[order]
    level = np.cumsum(delta)
    # Several events may share a position: the level holding on [pos[i], pos[i+1]) is the one
    # after the last event at pos[i].
    last = np.flatnonzero(np.concatenate((pos[1:] != pos[:-1], [True])))
    pos, level = pos[last], level[last]
    if min_weight is None:
        keep = 2 * level > total + 2 * tol  # strict majority, without halving an integer
    else:
        keep = level >= min_weight - tol
    # Kept stretches [pos[i], pos[i+1]); after the last position nothing is covered.
    keep[-1] = False
    edges = np.diff(np.concatenate(([False], keep)).astype(np.int8))
    starts = pos[edges == 1]
    ends = pos[np.flatnonzero(edges == -1)]
    return np.stack((starts, ends), axis=1).astype(np.int64, copy=False)
