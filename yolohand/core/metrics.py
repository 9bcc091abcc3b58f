"""The competition metric: Dice per (image, class), mean over images per class, mean over classes.

Dice = (2 |A n B| + 1e-4) / (|A| + |B| + 1e-4) on binary full-resolution masks; two empty masks
score 1, an empty prediction against a non-empty truth scores ~0. No torch, no ultralytics.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from yolohand.core.classes import NUM_CLASSES
from yolohand.core.rle import Runs, area, intersection_area

__all__ = ["SMOOTH", "dice_score", "dice_masks", "dice_runs", "DiceTable"]

SMOOTH: float = 1e-4


def dice_score(
    inter: npt.ArrayLike, area_a: npt.ArrayLike, area_b: npt.ArrayLike
) -> float | np.ndarray:
    """``(2*inter + SMOOTH) / (area_a + area_b + SMOOTH)``; float for scalars, float64 array else."""
    inter_, a_, b_ = (np.asarray(x, dtype=np.float64) for x in (inter, area_a, area_b))
    score = (2.0 * inter_ + SMOOTH) / (a_ + b_ + SMOOTH)
    return float(score) if score.ndim == 0 else score


def _binary(masks: np.ndarray, what: str) -> np.ndarray:
    if masks.dtype == bool:
        return masks
    if masks.dtype.kind in "iu":
        return masks != 0
    raise TypeError(f"{what} must be bool or integer (nonzero = set), got {masks.dtype}; "
                    "threshold probabilities first (p >= 0.5)")


def dice_masks(pred: npt.ArrayLike, gt: npt.ArrayLike) -> np.ndarray:
    """Per-class Dice of two (C, H, W) binary masks (bool or integer) -> float64 (C,)."""
    pred_, gt_ = np.asarray(pred), np.asarray(gt)
    if pred_.shape != gt_.shape or pred_.ndim != 3:
        raise ValueError(f"pred and gt must both be (C, H, W), got {pred_.shape} and {gt_.shape}")
    p = _binary(pred_, "pred").reshape(pred_.shape[0], -1)
    g = _binary(gt_, "gt").reshape(gt_.shape[0], -1)
    inter = np.count_nonzero(p & g, axis=1)
    return np.asarray(dice_score(inter, np.count_nonzero(p, axis=1), np.count_nonzero(g, axis=1)),
                      dtype=np.float64)


def dice_runs(pred_runs: Runs, gt_runs: Runs) -> float:
    """Dice of two masks given as canonical runs (int64 (K, 2)), without rasterising."""
    return float(dice_score(intersection_area(pred_runs, gt_runs), area(pred_runs), area(gt_runs)))


class DiceTable:
    """Accumulates per-image, per-class Dice and reduces it the competition's way.

    ``per_class()`` is the mean over images for each class (float64 (C,)); ``mean()`` is the
    mean of that over classes (mDice).
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.image_names: list[str] = []
        self._rows: list[np.ndarray] = []
        self._names: set[str] = set()

    def add(self, image_name: str, per_class: npt.ArrayLike) -> None:
        """Record one image's Dice per class (float (C,)); an image may be added once."""
        row = np.asarray(per_class, dtype=np.float64)
        if row.shape != (self.num_classes,):
            raise ValueError(f"{image_name}: expected {self.num_classes} scores, got {row.shape}")
        if image_name in self._names:
            raise ValueError(f"{image_name}: scored twice")
        self._names.add(image_name)
        self.image_names.append(image_name)
        self._rows.append(row)

    @property
    def n_images(self) -> int:
        return len(self._rows)

    def scores(self) -> np.ndarray:
        """All recorded scores, float64 (n_images, C), rows in the order added."""
        if not self._rows:
            return np.zeros((0, self.num_classes))
        return np.stack(self._rows)

    def per_class(self) -> np.ndarray:
        """Mean Dice over images for each class: float64 (C,). ValueError when empty."""
        if not self._rows:
            raise ValueError("no images scored")
        return self.scores().mean(axis=0)

    def mean(self) -> float:
        """mDice: the mean over classes of :meth:`per_class`."""
        return float(self.per_class().mean())
