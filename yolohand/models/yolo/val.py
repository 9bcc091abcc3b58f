"""The Dice validator: ultralytics' ``SegmentationValidator`` that also scores the competition Dice.

Per validation image and per class it computes the Dice of DESIGN.md
(:func:`yolohand.models.yolo.metrics.image_dice`); averages over images per class, then over
classes (as :class:`yolohand.core.metrics.DiceTable`). Prediction for a class = the mask of the
top-confidence detection of that class (each bone occurs once per image), i.e. the validator's
own mask: ``sigmoid(coefficients @ prototypes) > 0.5`` cropped to the box, at the prototype
resolution (network input / 4, letterboxed). Truth = the union of that class's ground-truth
instance masks at the same resolution (``overlap_mask=False`` gives one mask per instance).
It is therefore a proxy for the full-resolution competition Dice (small bones lose a little);
``yolohand predict`` + ``yolohand evaluate`` give the real figure.

Overridden ultralytics methods (their signatures are checked by tests/test_contract.py):
``init_metrics``, ``get_desc``, ``_process_batch`` (called once per image by ``update_metrics``),
``gather_stats`` (DDP) and ``get_stats``.
"""

from __future__ import annotations

from typing import Any

from yolohand.models.yolo.offline import setup_offline

setup_offline()  # must precede the first ultralytics import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationValidator  # noqa: E402
from ultralytics.utils import RANK  # noqa: E402

from yolohand.models.yolo.metrics import DiceSegmentMetrics, image_dice  # noqa: E402

__all__ = ["DiceSegmentationValidator"]


class DiceSegmentationValidator(SegmentationValidator):
    """``SegmentationValidator`` that also accumulates the per-class Dice (module docstring).

    ``dice_sum`` (float64 (nc,), on the validation device while it runs) sums each class's
    Dice over the ``dice_images`` images scored so far; :meth:`get_stats` turns them into
    ``metrics.dice``.
    """

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks: dict | None = None) -> None:
        super().__init__(dataloader, save_dir, args, _callbacks)
        self.metrics = DiceSegmentMetrics()
        self.dice_sum: torch.Tensor | np.ndarray = np.zeros(0)
        self.dice_images = 0

    def init_metrics(self, model: torch.nn.Module) -> None:
        """Reset the Dice accumulators at the start of every validation."""
        super().init_metrics(model)
        self.dice_sum = np.zeros(self.nc, dtype=np.float64)
        self.dice_images = 0

    def get_desc(self) -> str:
        """Header of the validation table: ultralytics' columns plus Dice."""
        return super().get_desc() + "%11s" % "Dice"

    def _process_batch(self, preds: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Called once per image by ``update_metrics`` with masks at one resolution: add its Dice."""
        dice = image_dice(preds["masks"], preds["cls"], preds["conf"], batch["masks"], batch["cls"], self.nc)
        # Stays on the device: summed there, read once per validation in get_stats.
        self.dice_sum = dice if isinstance(self.dice_sum, np.ndarray) else self.dice_sum + dice
        self.dice_images += 1
        return super()._process_batch(preds, batch)

    def _dice_numpy(self) -> np.ndarray:
        """``dice_sum`` as float64 (nc,) numpy (the one host copy of the validation)."""
        if isinstance(self.dice_sum, torch.Tensor):
            return self.dice_sum.cpu().double().numpy()  # to the host first: MPS has no float64
        return np.asarray(self.dice_sum, dtype=np.float64)

    def gather_stats(self) -> None:
        """Also sum the Dice accumulators of every DDP rank onto rank 0."""
        super().gather_stats()
        if RANK == -1:
            return
        import torch.distributed as dist

        mine = (self._dice_numpy(), self.dice_images)
        if RANK == 0:
            gathered = [None] * dist.get_world_size()
            dist.gather_object(mine, gathered, dst=0)
            self.dice_sum = np.sum([g[0] for g in gathered], axis=0)  # every rank's is (nc,) after init_metrics
            self.dice_images = int(sum(g[1] for g in gathered))
        else:
            dist.gather_object(mine, None, dst=0)

    def get_stats(self) -> dict[str, Any]:
        """Set the Dice on the metrics (so ``results_dict`` and ``fitness`` carry it), then ultralytics' stats."""
        total = self._dice_numpy()
        per_class = total / max(self.dice_images, 1)
        self.metrics.dice_per_class = per_class
        self.metrics.dice = float(per_class.mean()) if per_class.size and self.dice_images else 0.0
        return super().get_stats()
