"""The competition Dice as an ultralytics metric: :class:`DiceSegmentMetrics` and :func:`image_dice`.

:class:`DiceSegmentMetrics` extends ultralytics' ``SegmentMetrics`` with one more key,
:data:`DICE_KEY` (``metrics/dice(M)``), and makes it the ``fitness``. The trainer writes every
key of ``metrics.keys`` into ``results.csv`` and keeps ``best.pt`` at the best ``fitness``, so
``best.pt`` is the epoch with the best validation Dice (not the best mAP).

:func:`image_dice` is the per-image, per-class Dice of DESIGN.md
``(2|A∩B| + 1e-4) / (|A| + |B| + 1e-4)`` on the validator's own masks (see
:mod:`yolohand.models.yolo.val`), computed on the masks' device without a Python loop over
instances or classes, so a validation image costs no GPU synchronisation.

Importing this module calls :func:`yolohand.models.yolo.offline.setup_offline` before importing ultralytics.
"""

from __future__ import annotations

from yolohand.models.yolo.offline import setup_offline

setup_offline()  # must precede the first ultralytics import (YOLO_OFFLINE, fonts, config dir)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics.utils.metrics import SegmentMetrics  # noqa: E402

from yolohand.core.metrics import SMOOTH  # noqa: E402
from yolohand.defaults import DICE_KEY  # noqa: E402

__all__ = ["DICE_KEY", "DiceSegmentMetrics", "image_dice"]


class DiceSegmentMetrics(SegmentMetrics):
    """``SegmentMetrics`` plus the validation Dice, which is also the fitness.

    ``dice`` (float) and ``dice_per_class`` (float64, shape (nc,)) are set by the validator
    before ``results_dict`` is read.
    """

    def __init__(self, names: dict[int, str] | None = None) -> None:
        super().__init__(names or {})
        self.dice: float = 0.0
        self.dice_per_class: np.ndarray = np.zeros(0)

    @property
    def keys(self) -> list[str]:
        """ultralytics' box and mask keys, then :data:`DICE_KEY` (order = results.csv columns)."""
        return [*super().keys, DICE_KEY]

    def mean_results(self) -> list[float]:
        """Box P, R, mAP50, mAP50-95, mask P, R, mAP50, mAP50-95, Dice."""
        return [*super().mean_results(), self.dice]

    def class_result(self, i: int) -> list[float]:
        """Per-class row; ``i`` indexes ``ap_class_index`` like ultralytics does."""
        c = int(self.ap_class_index[i])
        dice = float(self.dice_per_class[c]) if c < len(self.dice_per_class) else 0.0
        return [*super().class_result(i), dice]

    @property
    def fitness(self) -> float:
        """The validation Dice: ``best.pt`` and early stopping follow it."""
        return float(self.dice)


def _class_index(cls: torch.Tensor, nc: int) -> torch.Tensor:
    """int64 class indices with anything outside [0, nc) sent to the spare row ``nc`` (dropped later)."""
    cls = cls.long().reshape(-1)
    return torch.where((cls >= 0) & (cls < nc), cls, torch.full_like(cls, nc))


def _class_masks(masks: torch.Tensor, cls: torch.Tensor, nc: int, hw: int, device: torch.device) -> torch.Tensor:
    """bool (nc, hw): the union of the instance masks (> 0.5) of each class."""
    out = torch.zeros((nc + 1, hw), dtype=torch.int32, device=device)
    if masks.shape[0]:
        binary = (masks.to(device).reshape(masks.shape[0], -1) > 0.5).to(torch.int32)
        out.index_add_(0, _class_index(cls.to(device), nc), binary)  # counts per pixel; > 0 is the union
    return out[:nc] > 0


def _top1_masks(masks: torch.Tensor, conf: torch.Tensor, cls: torch.Tensor, nc: int, hw: int) -> torch.Tensor:
    """bool (nc, hw): each class's mask of its most confident prediction (ties: the lowest index); empty if none.

    The best confidence rank per class comes from one ``scatter_reduce(amin)``; the rows are
    gathered with an all-empty spare row for classes without a prediction. No boolean indexing,
    so nothing waits for the GPU.
    """
    n, device = masks.shape[0], masks.device
    by_conf = torch.argsort(conf.to(device).reshape(-1), descending=True, stable=True)  # rank -> index
    rank = torch.empty_like(by_conf)
    rank[by_conf] = torch.arange(n, device=device)
    best = torch.full((nc + 1,), n, dtype=torch.long, device=device)  # n = "no prediction"
    best.scatter_reduce_(0, _class_index(cls.to(device), nc), rank, reduce="amin", include_self=True)
    rows = torch.cat([masks.reshape(n, -1) > 0.5, torch.zeros((1, hw), dtype=torch.bool, device=device)])
    index = torch.cat([by_conf, torch.tensor([n], device=device)])  # rank n -> the spare empty row
    return rows[index[best[:nc]]]


def image_dice(
    pred_masks: torch.Tensor,
    pred_cls: torch.Tensor,
    pred_conf: torch.Tensor,
    gt_masks: torch.Tensor,
    gt_cls: torch.Tensor,
    nc: int,
) -> torch.Tensor:
    """Per-class Dice of one image: float64 (nc,) on the masks' device (float32 on MPS).

    Args:
        pred_masks: (N, h, w) predicted instance masks (any dtype; > 0.5 is foreground).
        pred_cls, pred_conf: (N,) class index and confidence of each prediction.
        gt_masks: (M, h, w) ground-truth instance masks (> 0.5 is foreground), same (h, w).
        gt_cls: (M,) class index of each ground-truth instance.
        nc: number of classes.

    For each class the top-confidence prediction is kept (others ignored); ground-truth
    instances of one class are OR-ed. A class absent from both scores 1 (as the metric's
    smoothing term gives), absent from one side ~0.
    """
    if gt_masks.ndim == 3 and gt_masks.shape[0]:
        (h, w), device = gt_masks.shape[1:], gt_masks.device
    elif pred_masks.ndim == 3 and pred_masks.shape[0]:
        (h, w), device = pred_masks.shape[1:], pred_masks.device
    else:
        device = gt_masks.device
        return torch.ones(nc, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    gt = _class_masks(gt_masks, gt_cls, nc, h * w, device)
    if pred_masks.shape[0]:
        pred = _top1_masks(pred_masks.to(device), pred_conf, pred_cls, nc, h * w)
    else:
        pred = torch.zeros((nc, h * w), dtype=torch.bool, device=device)
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    inter = (gt & pred).sum(1).to(dtype)
    total = gt.sum(1).to(dtype) + pred.sum(1).to(dtype)
    return (2.0 * inter + SMOOTH) / (total + SMOOTH)
