"""Paired comparison of two predictions of the same images: the mDice delta and its noise.

Two runs scored by ``yolohand evaluate --json`` on the same images (one "without" a technique,
one "with" it) give, per image, the Dice of each of the 29 classes (``per_image``: image name ->
29 floats). When every image scores all 29 classes, the competition's mDice (mean over classes
of the per-class means over images) equals the mean over images of each image's mean over its
classes, so the delta of the two mDice is the mean over images of the per-image differences.

Its noise: the images are a sample, and an image that one run finds hard the other finds hard
too, so the two runs are compared image by image (paired). :func:`paired_delta` resamples the
images with replacement (``n_boot`` times, each time the same images for both runs) and takes
the 2.5 and 97.5 percentiles of the resampled mean differences: a 95 % paired-bootstrap
interval. An interval that contains 0 means the images cannot tell the two runs apart
(:func:`verdict`: "noise"). Numpy only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from yolohand.errors import YolohandError

PerImage = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class PairedDelta:
    """``other`` against ``base`` on the same images."""

    base: float        # mDice of the base run (mean over images of per-image means)
    other: float       # mDice of the other run
    delta: float       # other - base
    low: float         # 2.5 percentile of the bootstrapped delta
    high: float        # 97.5 percentile
    n_images: int

    @property
    def verdict(self) -> str:
        """"gain", "loss" or "noise" (the interval contains 0)."""
        return verdict(self.low, self.high)


def verdict(low: float, high: float) -> str:
    """"gain" when the whole interval is above 0, "loss" when below, else "noise"."""
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "noise"


def _matrix(per_image: PerImage, names: list[str], label: str) -> np.ndarray:
    rows = [np.asarray(per_image[n], dtype=np.float64) for n in names]
    widths = {r.shape for r in rows}
    if len(widths) != 1 or len(next(iter(widths))) != 1:
        raise YolohandError(f"{label}: every image needs one Dice per class (found shapes {sorted(widths)})")
    mat = np.stack(rows)
    if not np.isfinite(mat).all():
        bad = names[int(np.flatnonzero(~np.isfinite(mat).all(axis=1))[0])]
        raise YolohandError(f"{label}: image {bad} has a non-finite Dice")
    return mat


def _check_names(base: PerImage, other: PerImage) -> list[str]:
    a, b = set(base), set(other)
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in the base (e.g. {only_a[0]})")
        if only_b:
            parts.append(f"{len(only_b)} only in the other (e.g. {only_b[0]})")
        raise YolohandError("paired comparison needs the same images in both runs: " + ", ".join(parts))
    if not a:
        raise YolohandError("paired comparison of no images")
    return sorted(a)


def paired_delta(base_per_image: PerImage, other_per_image: PerImage, n_boot: int = 2000,
                 seed: int = 0) -> PairedDelta:
    """Mean delta (other - base) of per-image mean Dice and its 95 % paired-bootstrap interval.

    ``*_per_image``: image name -> Dice per class (``evaluate --json``'s ``per_image``). Images are
    matched by name; different sets of names, different numbers of classes between images or a
    non-finite Dice raise :class:`YolohandError`. Deterministic for a given ``seed``."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    names = _check_names(base_per_image, other_per_image)
    base_m, other_m = _matrix(base_per_image, names, "base"), _matrix(other_per_image, names, "other")
    if base_m.shape != other_m.shape:
        raise YolohandError(f"the base scores {base_m.shape[1]} classes per image, the other {other_m.shape[1]}")
    base, other = base_m.mean(axis=1), other_m.mean(axis=1)
    diff = other - base
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    boots = diff[idx].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return PairedDelta(base=float(base.mean()), other=float(other.mean()), delta=float(diff.mean()), low=float(low),
                       high=float(high), n_images=len(names))


def load_per_image(path: str | os.PathLike) -> dict[str, list[float]]:
    """``per_image`` of an ``evaluate --json`` file."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("per_image"), dict):
        raise YolohandError(f"{path}: not an evaluate --json result (no per_image)")
    return doc["per_image"]
