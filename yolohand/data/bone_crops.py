"""Per-bone windows of full-resolution images and masks, cached for the refiner (numpy + cv2).

The refiner (``yolohand.models.refine``) segments one bone in a crop of the original image around
its box. Training jitters the box every epoch, so it needs the pixels around each bone, not the
whole 2048 px image: :func:`build_crop_cache` stores per image one ``.npz`` with, per class
present, a *window* (the ground-truth box grown by :data:`WINDOW_GROW` of its side on each side,
clipped to the image): ``img<c>`` uint8 (h, w), ``mask<c>`` the bone's packed full-size mask in the
window (``np.packbits`` of the flattened bool (h, w)), ``win<c>`` int64 (y0, x0, y1, x1) of the
window and ``box<c>`` int64 (y0, x0, y1, x1) of the bone's ground-truth box, both in image pixels.
A whole image's windows take about 1 MB at 2048 px; decoding the PNG happens once.

With ``priors`` (a folder of probability maps, :mod:`yolohand.core.probmaps`, as ``yolohand predict
--save-probs`` writes them: out-of-fold detector predictions), each class also gets ``pri<c>``, the
predicted map of that class in the window (uint8, probability x 255), and ``pbox<c>`` int64, the box
of its pixels ``p >= 0.5`` inside the window (image pixels). A bone the detector missed there (no
such pixel in its window; a prediction elsewhere, on another bone, is not this bone's) has neither.
Such a cache depends on the maps too: give it its own folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolohand.core.classes import NUM_CLASSES
from yolohand.core.probmaps import THRESHOLD_U8, load_probmap, probmap_path
from yolohand.data.preprocess import Clahe, apply_clahe
from yolohand.errors import YolohandError

__all__ = ["WINDOW_GROW", "BoneWindow", "windows_of", "add_priors", "build_crop_cache", "load_windows"]

#: Window around a bone's box: the box grown by this fraction of its side, each side (room for
#: box jitter and margin while training).
WINDOW_GROW = 0.5


@dataclass
class BoneWindow:
    """One bone of one image: image and mask pixels of a window, and where window and box are."""

    cls: int
    image: np.ndarray  # uint8 (h, w)
    mask: np.ndarray  # bool (h, w)
    window: tuple[int, int, int, int]  # y0, x0, y1, x1 in the image (exclusive ends)
    box: tuple[int, int, int, int]  # the bone's tight box, same frame
    prior: np.ndarray | None = None  # uint8 (h, w): a detector's predicted map of the bone in the window
    pbox: tuple[int, int, int, int] | None = None  # the box of prior >= 0.5 (image frame); None: missed


def _grow(box: tuple[int, int, int, int], frac: float, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = box
    dy, dx = int(np.ceil((y1 - y0) * frac)), int(np.ceil((x1 - x0) * frac))
    return max(0, y0 - dy), max(0, x0 - dx), min(hw[0], y1 + dy), min(hw[1], x1 + dx)


def windows_of(image: np.ndarray, masks: np.ndarray) -> list[BoneWindow]:
    """The windows of every non-empty class: image uint8 (H, W), masks bool (29, H, W)."""
    out = []
    for c in range(masks.shape[0]):
        rows, cols = np.flatnonzero(masks[c].any(axis=1)), np.flatnonzero(masks[c].any(axis=0))
        if rows.size == 0:
            continue
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        y0, x0, y1, x1 = win = _grow(box, WINDOW_GROW, image.shape[:2])
        out.append(BoneWindow(c, image[y0:y1, x0:x1].copy(), masks[c, y0:y1, x0:x1].copy(), win, box))
    return out


def _cache_file(cache: Path, image: Path) -> Path:
    return cache / image.parent.name / f"{image.stem}.bones.npz"


def add_priors(windows: list[BoneWindow], probs: np.ndarray) -> list[BoneWindow]:
    """``windows`` with each bone's predicted map and box from uint8 (29, H, W) maps of the whole image
    (see the module docstring; a bone without ``p >= 0.5`` in its window is left without)."""
    for w in windows:
        y0, x0, y1, x1 = w.window
        pri = probs[w.cls, y0:y1, x0:x1]
        rows, cols = np.flatnonzero((pri >= THRESHOLD_U8).any(axis=1)), np.flatnonzero((pri >= THRESHOLD_U8).any(axis=0))
        if rows.size:
            w.prior = np.ascontiguousarray(pri)
            w.pbox = (y0 + int(rows[0]), x0 + int(cols[0]), y0 + int(rows[-1]) + 1, x0 + int(cols[-1]) + 1)
    return windows


def build_crop_cache(images: list[Path], cache: Path, progress: bool = True, clahe: Clahe | None = None,
                     priors: str | os.PathLike | None = None) -> list[Path]:
    """Write (or reuse, when newer than image, label and prior map) each image's windows; return the files.

    ``clahe``: the windows are cut from the CLAHE of the full-resolution image
    (:mod:`yolohand.data.preprocess`); ``priors``: a folder of probability maps named after the images
    (module docstring; an image without one keeps no predictions, one line says how many). Give
    either kind of cache its own folder."""
    from tqdm.auto import tqdm

    from yolohand.data.layout import read_image
    from yolohand.data.samples import label_masks, label_path

    files = [_cache_file(cache, Path(p)) for p in images]
    maps = _prior_maps(images, priors) if priors is not None else [None] * len(files)
    todo = []
    for image, f, m in zip(images, files, maps):
        newest = max(os.stat(image).st_mtime, os.stat(label_path(Path(image))).st_mtime,
                     os.stat(m).st_mtime if m is not None else 0.0)
        if not (f.is_file() and f.stat().st_mtime >= newest):
            todo.append((Path(image), f, m))
    for image, f, m in tqdm(todo, desc="cache bone windows", unit="img", disable=not progress or not todo):
        try:
            im = read_image(image)
            windows = windows_of(apply_clahe(im, clahe), label_masks(image, im.shape[:2]))
        except (OSError, ValueError) as exc:
            raise YolohandError(f"{image}: cannot build its bone windows ({exc})") from None
        if m is not None:
            windows = add_priors(windows, load_probmap(m, shape=im.shape[:2]))
        _save_windows(f, windows)
    return files


def _prior_maps(images: list[Path], priors: str | os.PathLike) -> list[Path | None]:
    """Each image's map in the folder ``priors`` (None where it has none); YolohandError when the
    folder is missing or holds a map of none of the images."""
    import sys

    folder = Path(priors)
    if not folder.is_dir():
        raise YolohandError(f"priors {folder}: probability-map folder not found (write one with "
                            "`yolohand predict --save-probs DIR` from a detector that did not train on these images)")
    maps = [probmap_path(folder, Path(p).name) for p in images]
    found = [m if m.is_file() else None for m in maps]
    missing = [m for m, f in zip(maps, found) if f is None]
    if images and len(missing) == len(images):
        raise YolohandError(f"priors {folder}: no probability map of any training image (expected e.g. {maps[0].name})")
    if missing:
        print(f"yolohand: priors {folder}: {len(missing)} of {len(images)} training images have no map (e.g. "
              f"{missing[0].name}); their bones train on degraded ground truth only", file=sys.stderr)
    return found


def load_windows(path: Path) -> list[BoneWindow]:
    """The :class:`BoneWindow` list of one cache file (classes in order)."""
    with np.load(path, allow_pickle=False) as z:
        out = []
        for c in range(NUM_CLASSES):
            if f"img{c}" not in z:
                continue
            img = z[f"img{c}"]
            mask = np.unpackbits(z[f"mask{c}"], count=img.size).reshape(img.shape).astype(bool)
            pbox = tuple(int(v) for v in z[f"pbox{c}"]) if f"pbox{c}" in z else None
            out.append(BoneWindow(c, img, mask, tuple(int(v) for v in z[f"win{c}"]), tuple(int(v) for v in z[f"box{c}"]),
                                  z[f"pri{c}"] if pbox is not None else None, pbox))
    return out


def _save_windows(path: Path, windows: list[BoneWindow]) -> None:
    arrays = {}
    for w in windows:
        arrays[f"img{w.cls}"] = w.image
        arrays[f"mask{w.cls}"] = np.packbits(w.mask.ravel())
        arrays[f"win{w.cls}"] = np.asarray(w.window, np.int64)
        arrays[f"box{w.cls}"] = np.asarray(w.box, np.int64)
        if w.prior is not None and w.pbox is not None:
            arrays[f"pri{w.cls}"] = w.prior
            arrays[f"pbox{w.cls}"] = np.asarray(w.pbox, np.int64)
    from yolohand.core.atomic import atomic_file

    with atomic_file(path, force=True, mode="wb") as fh:  # whole or not at all; a full disk names the file
        np.savez(fh, **arrays)
