"""Resize cache: each image decoded once, resized to the training size, stored as ``.npy``.

Decoding a 2048x2048 PNG dominates ultralytics' data loading. ``yolohand convert --imgsz N``
writes ``<out>/images/IDxxx/<stem>.npy`` next to the image symlink ``<stem>.png``:

* format: ``np.save`` of a uint8 (H', W') grayscale array (:data:`yolohand.data.convert.CHANNELS`
  = 1), long side N, aspect kept. Loading it is a plain read of H'*W' bytes, no decode.
* the array is *exactly* what ultralytics' ``BaseDataset.load_image`` would compute from the PNG
  at ``imgsz=N, channels=1``: ``imread(f, cv2.IMREAD_GRAYSCALE)`` (16-bit -> high byte), then, when
  the long side differs from N, ``cv2.resize`` to ``(min(ceil(w0*r), N), min(ceil(h0*r), N))``
  with ``INTER_LINEAR``, r = N / max(h0, w0). Images smaller than N are stored unresized
  (ultralytics upsamples after loading either way).
* no ultralytics change is needed: ``load_image`` loads ``Path(image).with_suffix(".npy")``
  whenever it exists, is not older than the image and has the right channel count (any cache
  mode). The fold trees reach the file through their directory symlinks. Labels are normalised,
  so they stay valid for the resized image.
* caveat: training at another imgsz would start from the cached size (upsampling when larger):
  train with ``imgsz`` equal to the YAML's ``cache_imgsz`` (``yolohand.data.convert.cache_imgsz``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from yolohand.errors import YolohandError


def read_gray_like_ultralytics(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W): the image as ultralytics reads it with ``channels: 1``.

    Raises YolohandError naming the file when it cannot be decoded.
    """
    try:
        buf = np.fromfile(str(path), np.uint8)
    except OSError as exc:
        raise YolohandError(f"{path}: cannot read ({exc.strerror or exc})") from None
    im = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
    if im is None:
        raise YolohandError(f"{path}: not a readable image")
    if im.dtype == np.uint16:
        im = (im >> 8).astype(np.uint8)
    return im


def resize_long_side(im: np.ndarray, imgsz: int) -> np.ndarray:
    """Resize so the long side is ``imgsz`` (aspect kept), as ultralytics' ``load_image`` does.

    Images already smaller than ``imgsz`` are returned unchanged.
    """
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r >= 1:
        return im
    w, h = min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)
    return cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)


def write_cached(image_path: str | os.PathLike, npy_path: str | os.PathLike, imgsz: int) -> tuple[int, int]:
    """Decode, resize and save one image; return the cached (H', W')."""
    im = resize_long_side(read_gray_like_ultralytics(image_path), imgsz)
    npy_path = Path(npy_path)
    npy_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy_path, np.ascontiguousarray(im), allow_pickle=False)
    return im.shape[0], im.shape[1]


def load_cached(npy_path: str | os.PathLike) -> np.ndarray:
    """uint8 (H', W') array written by :func:`write_cached`."""
    return np.load(npy_path, allow_pickle=False)


__all__ = [
    "read_gray_like_ultralytics", "resize_long_side", "write_cached", "load_cached",
]
