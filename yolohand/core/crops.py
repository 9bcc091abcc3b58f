"""Per-class probability windows ("crops"): the currency of prediction across model families.

numpy only. A model family turns one image into :data:`ClassCrops` (29 entries, one
:class:`Crop` or None per class); averaging folds, flips and families, thresholding to RLE and
writing uint8 probability maps all happen here, the same for every family.

Thresholding is ``p >= threshold`` (0.5), the rule of :mod:`yolohand.core.probmaps`
(``u8 >= 128``), so the CSV and the saved maps agree pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolohand.defaults import AGREE_IOU, MISSING_RULES

__all__ = [
    "Crop", "ClassCrops", "MISSING", "DEFAULT_AGREE_IOU", "flip_crops", "box_iou", "average_crops",
    "crops_to_rles", "crops_to_probmap", "probs_to_crops",
]


@dataclass
class Crop:
    """One class's probabilities in a window of the original image: ``probs`` float32 (h, w) in [0, 1]
    placed with its top-left pixel at (y0, x0); ``conf`` the detection confidence behind it (the
    highest one for a union or an average)."""

    y0: int
    x0: int
    probs: np.ndarray
    conf: float = 1.0

    @property
    def y1(self) -> int:
        return self.y0 + self.probs.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.probs.shape[1]


ClassCrops = list  # list[Crop | None] of length NUM_CLASSES (None = class not detected)


# --------------------------------------------------------------------------- averaging, flipping
def flip_crops(crops: ClassCrops, width: int) -> ClassCrops:
    """Mirror crops left-right in an image of ``width`` columns (undo a horizontal-flip TTA pass)."""
    return [
        None if c is None else Crop(c.y0, width - c.x1, np.ascontiguousarray(c.probs[:, ::-1]), c.conf)
        for c in crops
    ]


MISSING = MISSING_RULES


#: Box IoU below which two runs' crops of one class are different bones (see :func:`average_crops`).
#: The same bone from two models overlaps far more (box IoU > 0.6 on synthetic folds); a
#: neighbouring finger's bone far less.
DEFAULT_AGREE_IOU = AGREE_IOU


def box_iou(a: Crop, b: Crop) -> float:
    """IoU of the two crops' windows (pixel boxes)."""
    ih = min(a.y1, b.y1) - max(a.y0, b.y0)
    iw = min(a.x1, b.x1) - max(a.x0, b.x0)
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    union = a.probs.size + b.probs.size - inter
    return inter / union


def average_crops(runs: Sequence[ClassCrops], missing: str = "zero", agree_iou: float = 0.0) -> ClassCrops:
    """Per class, the mean of the runs' probabilities over the union box of their crops.

    missing="zero": a run that did not detect the class contributes 0 (the mean is divided by
    ``len(runs)``); "skip": the mean is over the runs that found the class (every bone is in
    every image, so a run's miss is its failure, not evidence of absence). Outside a run's
    crop counts as 0 either way. A class no run found stays None.

    agree_iou: a run whose crop's box IoU with the most confident run's crop is below this
    picked a different bone for the class; it counts as a miss (then ``missing`` applies).
    Without this, two folds that disagree on a bone average to two half-probability blobs and
    both vanish at threshold 0.5. 0 (the library default) averages every crop.
    """
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    if len(runs) == 1:
        return list(runs[0])
    out: ClassCrops = []
    for c in range(len(runs[0])):
        found = [r[c] for r in runs if r[c] is not None]
        if not found:
            out.append(None)
            continue
        anchor = max(found, key=lambda f: f.conf)  # first of the most confident on ties
        if agree_iou > 0:
            found = [f for f in found if f is anchor or box_iou(f, anchor) >= agree_iou]
        k = len(runs) if missing == "zero" else len(found)
        y0, x0 = min(f.y0 for f in found), min(f.x0 for f in found)
        y1, x1 = max(f.y1 for f in found), max(f.x1 for f in found)
        acc = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        for f in found:
            acc[f.y0 - y0 : f.y1 - y0, f.x0 - x0 : f.x1 - x0] += f.probs
        acc /= k
        out.append(Crop(y0, x0, acc, anchor.conf))
    return out


# --------------------------------------------------------------------------- outputs
def crops_to_rles(crops: ClassCrops, shape: tuple[int, int], threshold: float | Sequence[float] = 0.5) -> list[str]:
    """29 RLE strings (competition format; '' for an empty class) of ``probs >= threshold``
    (one number, or one threshold per class)."""
    from yolohand.core.rle import crop_to_runs, runs_to_string

    per_class = np.ndim(threshold) > 0
    rles = []
    for k, c in enumerate(crops):
        if c is None:
            rles.append("")
            continue
        t = float(threshold[k]) if per_class else threshold
        rles.append(runs_to_string(crop_to_runs(c.probs >= t, c.y0, c.x0, shape)))
    return rles


def crops_to_probmap(crops: ClassCrops, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (29, H, W) ``round(p * 255)`` full-size maps (the probmaps format); 0 outside crops."""
    out = np.zeros((len(crops), shape[0], shape[1]), dtype=np.uint8)
    for k, c in enumerate(crops):
        if c is not None:
            out[k, c.y0 : c.y1, c.x0 : c.x1] = np.floor(c.probs.astype(np.float64) * 255.0 + 0.5)
    return out


def probs_to_crops(probs: np.ndarray, floor: float = 1.0 / 255.0) -> ClassCrops:
    """Full-image maps -> crops: float32 (C, H, W) probabilities in [0, 1] -> one :class:`Crop` per
    class over the bounding box of ``probs >= floor`` (None where no pixel reaches it).

    What a semantic model (one map per class) hands to the shared averaging and writers; the
    values under ``floor`` (< 0.5/127 of the threshold) are dropped so a crop stays small.
    """
    out: ClassCrops = []
    for plane in probs:
        keep = plane >= floor
        rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
        if rows.size == 0:
            out.append(None)
            continue
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        window = np.ascontiguousarray(plane[y0:y1, x0:x1], dtype=np.float32)
        out.append(Crop(y0, x0, window, float(plane.max())))
    return out
