"""Training samples for semantic models: each image and its 29 masks, cached once at S x S.

A semantic model (the smp and refine families) needs, per sample and epoch, the image and 29
target masks at the training size. Decoding a 2048 px PNG and filling 29 polygons every time
dominates an epoch (benchmarks/bench_samples.py), so :func:`build_sample_cache` does it once per
image and stores

- ``<cache>/<ID>/<stem>.img.npy``: uint8 (S, S) grayscale image (``cv2.INTER_AREA``; from the
  convert resize cache ``<stem>.npy`` when it exists, else the PNG);
- ``<cache>/<ID>/<stem>.mask.npy``: uint8 (S, S, 4) masks, the 29 classes of a pixel packed
  into its 4 bytes (``np.packbits`` along the class axis: unpacking gives the channels-last
  (S, S, 29) array albumentations wants with no transpose): the label polygons filled at full size as the ground truth is, area-resized
  to S (:func:`fill_label`).

The image is squashed to S x S whatever its aspect; prediction does the same and resizes the
logits back to the original size, so train and predict agree. The cache lives in the converted
dataset (``<yolo>/cache/samples<S>/``, beside ultralytics' own label caches); an entry is reused
while it is newer than its label file and image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolohand.core.classes import NUM_CLASSES
from yolohand.data.imcache import read_gray_like_ultralytics
from yolohand.errors import YolohandError

__all__ = ["Sample", "label_masks", "sample_paths", "label_path", "fill_label", "make_sample", "build_sample_cache", "load_sample"]

@dataclass(frozen=True)
class Sample:
    """One cached sample: where its files are and the original image size."""

    image: Path  # the training image (fold tree path, a symlink to the PNG)
    img_npy: Path
    mask_npy: Path


def label_path(image: Path) -> Path:
    """The YOLO label file of a converted image: last ``/images/`` -> ``/labels/``, ``.txt``."""
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def sample_paths(cache: Path, image: Path) -> Sample:
    """Cache file names of ``image`` (``<cache>/<ID folder>/<stem>.{img,mask}.npy``)."""
    folder = cache / image.parent.name
    return Sample(image, folder / f"{image.stem}.img.npy", folder / f"{image.stem}.mask.npy")


def fill_label(label: Path, size: int, orig_hw: tuple[int, int]) -> np.ndarray:
    """bool (29, size, size): each class's label polygons filled at the original size exactly as
    the ground truth is (``cv2.fillPoly`` of the integer pixel points), then area-resized to
    ``size`` and kept where at least half of a pixel is covered.

    So a target pixel is on when most of the full-size mask under it is: the training target
    of the competition's full-size Dice, with no half-pixel growth of a low-resolution fill.
    """
    from yolohand.data.convert import parse_label_file

    by_class: dict[int, list[np.ndarray]] = {}
    for cls, pts in parse_label_file(label, *orig_hw):
        by_class.setdefault(cls, []).append(pts)
    masks = np.zeros((NUM_CLASSES, size, size), bool)
    full = np.zeros(orig_hw, np.uint8)
    for cls, polys in by_class.items():  # one full-size plane at a time
        full[:] = 0
        cv2.fillPoly(full, polys, 255)
        masks[cls] = cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA) >= 128
    return masks


def label_masks(image: Path, hw: tuple[int, int]) -> np.ndarray:
    """bool (29, H, W): a converted image's label polygons filled at full size, which is the
    annotation JSON's fill exactly (labels round back to the integer points, see convert)."""
    from yolohand.data.convert import parse_label_file

    masks = np.zeros((NUM_CLASSES, *hw), np.uint8)
    for cls, pts in parse_label_file(label_path(image), *hw):
        cv2.fillPoly(masks[cls], [pts], 1)
    return masks.astype(bool)


def _source_image(image: Path) -> np.ndarray:
    """uint8 (H, W): the convert resize cache when present (no PNG decode), else the image."""
    npy = image.with_suffix(".npy")
    if npy.is_file():
        return np.load(npy, allow_pickle=False)
    return read_gray_like_ultralytics(image)


def make_sample(image: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (size, size) image, bool (29, size, size) masks) computed from the files."""
    from yolohand.data.layout import image_size

    im = cv2.resize(_source_image(image), (size, size), interpolation=cv2.INTER_AREA)
    return im, fill_label(label_path(image), size, image_size(image))


def _fresh(sample: Sample) -> bool:
    if not (sample.img_npy.is_file() and sample.mask_npy.is_file()):
        return False
    newest_input = max(os.stat(sample.image).st_mtime, os.stat(label_path(sample.image)).st_mtime)
    return min(sample.img_npy.stat().st_mtime, sample.mask_npy.stat().st_mtime) >= newest_input


def _save(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file (:func:`yolohand.core.atomic.atomic_file`), so an interrupted
    build never leaves a truncated file, and a full disk is one line naming the cache file."""
    from yolohand.core.atomic import atomic_file

    with atomic_file(path, force=True, mode="wb") as fh:
        np.save(fh, array, allow_pickle=False)


def build_sample_cache(images: Sequence[Path], cache: Path, size: int, progress: bool = True) -> list[Sample]:
    """Cache every image (skipping fresh entries) and return their :class:`Sample` records, in order."""
    from tqdm.auto import tqdm

    samples = [sample_paths(cache, Path(p)) for p in images]
    todo = [s for s in samples if not _fresh(s)]
    for s in tqdm(todo, desc=f"cache samples {size}px", unit="img", disable=not progress or not todo):
        try:
            im, masks = make_sample(s.image, size)
        except (OSError, ValueError) as exc:
            raise YolohandError(f"{s.image}: cannot build its training sample ({exc})") from None
        _save(s.img_npy, im)
        _save(s.mask_npy, np.packbits(masks.transpose(1, 2, 0), axis=-1))
    return samples


def load_sample(sample: Sample, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (S, S) image, uint8 (S, S, 29) 0/1 masks, channels last as albumentations wants)."""
    im = np.load(sample.img_npy, allow_pickle=False)
    packed = np.load(sample.mask_npy, allow_pickle=False)
    return im, np.unpackbits(packed, axis=-1, count=NUM_CLASSES)
