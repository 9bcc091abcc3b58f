"""The competition Dice inside ultralytics training: a validator, its metrics, and a trainer.

* :class:`DiceSegmentMetrics` extends ultralytics' ``SegmentMetrics`` with one more key,
  :data:`DICE_KEY` (``metrics/dice(M)``), and makes it the ``fitness``. The trainer writes every
  key of ``metrics.keys`` into ``results.csv`` and keeps ``best.pt`` at the best ``fitness``, so
  ``best.pt`` is the epoch with the best validation Dice (not the best mAP).
* :class:`DiceSegmentationValidator` computes, per validation image and per class, the Dice of
  DESIGN.md ``(2|A∩B| + 1e-4) / (|A| + |B| + 1e-4)``; averages over images per class, then over
  classes (as :class:`yolohand.core.metrics.DiceTable`). Prediction for a class = the mask of the
  top-confidence detection of that class (each bone occurs once per image), i.e. the validator's
  own mask: ``sigmoid(coefficients @ prototypes) > 0.5`` cropped to the box, at the prototype
  resolution (network input / 4, letterboxed). Truth = the union of that class's ground-truth
  instance masks at the same resolution (``overlap_mask=False`` gives one mask per instance).
  It is therefore a proxy for the full-resolution competition Dice (small bones lose a little);
  ``yolohand predict`` + ``yolohand evaluate`` give the real figure.
* :class:`DiceSegmentationTrainer` returns that validator from ``get_validator()`` and makes
  training offline-safe (see its docstring). It is a module-level class so that ultralytics'
  multi-GPU DDP launcher, which pickles the trainer class by reference and re-imports it in each
  worker process, can find it.

Importing this module calls :func:`yolohand.models.yolo.offline.setup_offline` before importing ultralytics.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from copy import copy
from typing import Any

from yolohand.models.yolo.offline import setup_offline

setup_offline()  # must precede the first ultralytics import (YOLO_OFFLINE, fonts, config dir)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationTrainer, SegmentationValidator  # noqa: E402
from ultralytics.utils import LOGGER, RANK  # noqa: E402
from ultralytics.utils import callbacks as ul_callbacks  # noqa: E402
from ultralytics.utils.metrics import SegmentMetrics  # noqa: E402

from yolohand.core.metrics import dice_score  # noqa: E402
from yolohand.defaults import DICE_KEY  # noqa: E402

# GPUs on which ultralytics' own AMP check disables AMP (copied from ultralytics.utils.checks.check_amp).
_BAD_AMP_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.I)


class DiceSegmentMetrics(SegmentMetrics):
    """``SegmentMetrics`` plus the validation Dice, which is also the fitness.

    ``dice`` (float) and ``dice_per_class`` (float64, shape (nc,)) are set by the validator
    before ``results_dict`` is read.
    """

    def __init__(self, names: dict[int, str] | None = None) -> None:
        super().__init__(names)
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


def image_dice(
    pred_masks: torch.Tensor,
    pred_cls: torch.Tensor,
    pred_conf: torch.Tensor,
    gt_masks: torch.Tensor,
    gt_cls: torch.Tensor,
    nc: int,
) -> np.ndarray:
    """Per-class Dice of one image; float64 (nc,).

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
        h, w = gt_masks.shape[1:]
    elif pred_masks.ndim == 3 and pred_masks.shape[0]:
        h, w = pred_masks.shape[1:]
    else:
        return np.ones(nc, dtype=np.float64)
    device = gt_masks.device if gt_masks.numel() else pred_masks.device
    gt = torch.zeros((nc, h * w), dtype=torch.bool, device=device)
    for m, c in zip(gt_masks, gt_cls.long().tolist()):
        gt[c] |= m.reshape(-1).to(device) > 0.5
    pred = torch.zeros((nc, h * w), dtype=torch.bool, device=device)
    if pred_masks.shape[0]:
        cls = pred_cls.long()
        for c in torch.unique(cls).tolist():
            idx = torch.nonzero(cls == c).flatten()
            best = idx[torch.argmax(pred_conf[idx])]
            pred[c] = pred_masks[best].reshape(-1).to(device) > 0.5
    inter = (gt & pred).sum(1).cpu().numpy()
    area_gt = gt.sum(1).cpu().numpy()
    area_pred = pred.sum(1).cpu().numpy()
    return np.asarray(dice_score(inter, area_pred, area_gt), dtype=np.float64)


class DiceSegmentationValidator(SegmentationValidator):
    """``SegmentationValidator`` that also accumulates the per-class Dice (module docstring)."""

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks: dict | None = None) -> None:
        super().__init__(dataloader, save_dir, args, _callbacks)
        self.metrics = DiceSegmentMetrics()
        self.dice_sum = np.zeros(0)  # float64 (nc,): sum over images of each class's Dice
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
        self.dice_sum += image_dice(preds["masks"], preds["cls"], preds["conf"], batch["masks"], batch["cls"], self.nc)
        self.dice_images += 1
        return super()._process_batch(preds, batch)

    def gather_stats(self) -> None:
        """Also sum the Dice accumulators of every DDP rank onto rank 0."""
        super().gather_stats()
        if RANK == -1:
            return
        import torch.distributed as dist

        if RANK == 0:
            gathered = [None] * dist.get_world_size()
            dist.gather_object((self.dice_sum, self.dice_images), gathered, dst=0)
            self.dice_sum = np.sum([g[0] for g in gathered], axis=0)
            self.dice_images = int(sum(g[1] for g in gathered))
        else:
            dist.gather_object((self.dice_sum, self.dice_images), None, dst=0)

    def get_stats(self) -> dict[str, Any]:
        """Set the Dice on the metrics (so ``results_dict`` and ``fitness`` carry it), then ultralytics' stats."""
        per_class = self.dice_sum / max(self.dice_images, 1)
        self.metrics.dice_per_class = per_class
        self.metrics.dice = float(per_class.mean()) if per_class.size and self.dice_images else 0.0
        return super().get_stats()


# ----------------------------------------------------------------------------- offline + CPU cores


#: Environment variable with the number of torch CPU threads for training (default: every core).
THREADS_ENV = "YOLOHAND_CPU_THREADS"


def cpu_threads() -> int:
    """Threads for CPU training: ``$YOLOHAND_CPU_THREADS`` if set (>= 1), else ``os.cpu_count()``."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    return os.cpu_count() or 1


def use_all_cpu_cores(obj: Any) -> None:
    """Callback: on CPU, set torch's thread count to :func:`cpu_threads` (default: every core).

    ultralytics' ``select_device`` sets ``min(8, cores - 1)`` threads, and is called again by the
    final validation of best.pt, so this is registered for ``on_pretrain_routine_start``,
    ``on_train_start`` and ``on_val_start``. On a machine whose cores are busy with other work,
    fewer threads can be much faster (OpenMP threads wait for each other at every op): measured
    on a shared 2-core box, 1 thread trained 7x faster than 2. Hence ``--threads``.
    """
    device = getattr(obj, "device", None)
    if device is None or getattr(device, "type", str(device)) != "cpu":
        return
    n = cpu_threads()
    if torch.get_num_threads() != n or hasattr(obj, "epochs"):  # always say it once for the trainer
        torch.set_num_threads(n)
        LOGGER.info(f"yolohand: torch uses {torch.get_num_threads()} CPU thread(s)")


_CORE_EVENTS = ("on_pretrain_routine_start", "on_train_start", "on_val_start")


def _offline_check_amp(model: torch.nn.Module) -> bool:
    """Replacement for ultralytics' ``check_amp``, which downloads yolo26n.pt to compare FP32 and AMP outputs.

    Keeps AMP on for CUDA except on the GPUs ultralytics itself blacklists; off on CPU/MPS.
    """
    device = next(model.parameters()).device
    if device.type in {"cpu", "mps"}:
        return False
    if device.type == "cuda" and _BAD_AMP_GPU.search(torch.cuda.get_device_name(device)):
        LOGGER.warning("yolohand: AMP disabled on this GPU (ultralytics lists it as giving NaN losses with AMP)")
        return False
    LOGGER.info("yolohand: AMP on (ultralytics' AMP check skipped: it downloads a checkpoint)")
    return True


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """Temporarily replace ``module.name`` with ``value``."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _no_integrations(instance: Any) -> None:
    """Stand-in for ``add_integration_callbacks``: no Platform/W&B/Comet/MLflow/... callbacks, no analytics."""


#: Training batches used to re-estimate BatchNorm statistics before each validation (0 = off).
BN_RECALIBRATION_BATCHES = 8


def recalibrate_batchnorm(model: torch.nn.Module, loader: Any, preprocess: Any, batches: int) -> int:
    """Re-estimate every BatchNorm's running mean/var on ``batches`` training batches ("precise BN").

    ``model`` (the EMA model) is run in train mode without gradients; BN momentum is set to
    None (cumulative average) meanwhile and restored after. Returns the number of batches used.

    Why: from scratch with a small batch, weights move faster than BN's running statistics
    (momentum 0.03) follow, and the eval-mode network is far off the train-mode one. Measured on
    yolo11n-seg after 3 epochs (synthetic, AdamW lr 1e-3, batch 8): max class score 0.001 with
    the running statistics vs 0.73 with re-estimated ones; validation Dice stayed 0 without it.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    used = 0
    model.train()
    try:
        with torch.no_grad():
            for batch in loader:
                if used >= batches:
                    break
                model(preprocess(batch)["img"])
                used += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return used


class DiceSegmentationTrainer(SegmentationTrainer):
    """``SegmentationTrainer`` whose validator is :class:`DiceSegmentationValidator`, offline by construction.

    * No integration callbacks (ultralytics Platform, which streams to the web when an API key is
      set, W&B, Comet, MLflow, ClearML, DVC, Ray Tune, TensorBoard) and no analytics events.
    * ultralytics' AMP check (downloads yolo26n.pt) is replaced by :func:`_offline_check_amp`,
      so ``amp=True`` keeps AMP on a GPU without any download.
    * On CPU, torch uses every core (:func:`use_all_cpu_cores`).
    * Before each validation the EMA model's BatchNorm statistics are re-estimated on
      :data:`BN_RECALIBRATION_BATCHES` training batches (:func:`recalibrate_batchnorm`).
    """

    def __init__(self, cfg=None, overrides: dict | None = None, _callbacks: dict | None = None) -> None:
        from ultralytics.utils import DEFAULT_CFG

        cbs = _callbacks if _callbacks is not None else ul_callbacks.get_default_callbacks()
        for event in _CORE_EVENTS:
            if use_all_cpu_cores not in cbs[event]:
                cbs[event].append(use_all_cpu_cores)
        with _patched(ul_callbacks, "add_integration_callbacks", _no_integrations):
            super().__init__(cfg if cfg is not None else DEFAULT_CFG, overrides, cbs)

    def _setup_train(self) -> None:
        import ultralytics.engine.trainer as engine_trainer

        with _patched(engine_trainer, "check_amp", _offline_check_amp):
            super()._setup_train()

    def validate(self):
        """Re-estimate the EMA model's BatchNorm statistics (:func:`recalibrate_batchnorm`), then validate.

        The recalibrated EMA is what ``save_model`` writes to last.pt/best.pt right after.
        Consumes a few batches of the training stream (the next epoch starts a little further on).
        """
        if self.ema is not None and BN_RECALIBRATION_BATCHES > 0:
            recalibrate_batchnorm(self.ema.ema, self.train_loader, self.preprocess_batch, BN_RECALIBRATION_BATCHES)
        return super().validate()

    def get_validator(self) -> DiceSegmentationValidator:
        """The Dice validator (ultralytics' loss names as in SegmentationTrainer.get_validator)."""
        return DiceSegmentationValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )
