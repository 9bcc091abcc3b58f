"""Prediction choices (:class:`Settings`) and what a loaded checkpoint of any family offers
(:class:`Network`, :class:`Refiner`): the contract between the families and
:mod:`yolohand.models.predict`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from yolohand import defaults as D
from yolohand.core import crops as cr
from yolohand.errors import YolohandError

__all__ = ["Settings", "Network", "Refiner"]


@dataclass
class Settings:
    """Prediction choices. The first four are YOLO's (:mod:`yolohand.models.yolo.postprocess`);
    the rest apply to every family."""

    merge: str = D.MERGE
    conf_weight: bool = D.CONF_WEIGHT
    mask_mode: str = D.MASK_MODE
    mask_threshold: float = D.MASK_THRESHOLD  # YOLO: raw mask probability mapped to 0.5
    tta: bool = False
    threshold: float = D.THRESHOLD
    missing: str = D.MISSING  # averaging: a run (model or flip) that missed a class is left out ("zero": counts 0)
    agree_iou: float = D.AGREE_IOU  # averaging: a run whose box IoU with the most confident is lower is a miss
    tta_scales: tuple[float, ...] = (1.0,)  # multi-scale TTA: input sizes x these, averaged like the flip (1: plain)

    def __post_init__(self) -> None:
        """Checked once, here, for the CLI and the library alike (messages name the CLI flags)."""
        for flag, value, choices in (("--merge", self.merge, D.MERGES), ("--missing", self.missing, D.MISSING_RULES),
                                     ("--mask-mode", self.mask_mode, D.MASK_MODES)):
            if value not in choices:
                raise YolohandError(f"{flag} {value!r}: expected one of {', '.join(choices)}")
        for flag, value, ok, what in (("--mask-threshold", self.mask_threshold, 0 < self.mask_threshold < 1, "(0, 1)"),
                                      ("--threshold", self.threshold, 0 < self.threshold <= 1, "(0, 1]"),
                                      ("--agree-iou", self.agree_iou, 0 <= self.agree_iou <= 1, "[0, 1]")):
            if not ok:
                raise YolohandError(f"{flag} {value}: expected a value in {what}")
        scales = tuple(float(v) for v in self.tta_scales)
        if not scales or not all(0 < v <= 8 for v in scales) or len(set(scales)) != len(scales):
            raise YolohandError(f"--tta-scales {','.join(f'{v:g}' for v in scales) or '(none)'}: expected distinct "
                                "scales in (0, 8], e.g. 0.8,1,1.25")
        self.tta_scales = scales


class Network(Protocol):
    """A loaded checkpoint of any family."""

    path: Path

    def crops(self, images: list[np.ndarray], settings: Settings) -> list[cr.ClassCrops]:
        """29 class crops per image; images are uint8 (H, W) grayscale arrays of any size. A network
        that predicts at a TTA scale also takes ``scale=s`` (never passed for scale 1)."""


class Refiner(Protocol):
    """A second stage that re-segments each class's crop (the ``refine`` family)."""

    path: Path

    def refine(self, image: np.ndarray, crops: cr.ClassCrops) -> cr.ClassCrops:
        """Refined crops of one uint8 (H, W) image; a None class stays None."""
