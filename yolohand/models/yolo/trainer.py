"""The yolohand trainer: ultralytics' ``SegmentationTrainer`` with the Dice validator, offline by construction.

:class:`DiceSegmentationTrainer` is a module-level class so that ultralytics' multi-GPU DDP
launcher, which pickles the trainer class by reference and re-imports it in each worker
process, can find it. What it changes, and where:

* ``get_validator``: :class:`yolohand.models.yolo.val.DiceSegmentationValidator` (ultralytics'
  own ``get_validator`` is still called first: before 8.4.104 it is what sets ``loss_names``).
* ``__init__``: no integration callbacks (ultralytics Platform, which streams to the web when an
  API key is set, W&B, Comet, MLflow, ClearML, DVC, Ray Tune, TensorBoard), no analytics; the
  CPU-thread callback (:func:`use_all_cpu_cores`) and the best-epoch callback (:func:`note_best_epoch`).
* ``_setup_train``: ultralytics' AMP check (it downloads yolo26n.pt) is replaced by
  :func:`offline_check_amp` for its duration, so ``amp=True`` keeps AMP on a GPU with no download.
* ``validate``: the EMA model's BatchNorm statistics are re-estimated first
  (:func:`recalibrate_batchnorm`), under autocast when AMP is on, on rank 0 only (ultralytics
  broadcasts rank 0's EMA buffers to the other ranks at the start of ``validate``).
* ``get_model`` / ``build_dataset``: the run's preprocessing (``train --clahe/--gamma``, given in
  ``$YOLOHAND_PREPROCESS`` so DDP workers inherit it) is written into the model's ``yaml`` dict
  (:data:`PREPROCESS_KEY`), which every checkpoint of the run carries (last.pt, best.pt; a run
  fine-tuning a checkpoint sets its own, a resumed one keeps it); the datasets of training and validation apply it
  to each image as ultralytics loaded it (long side imgsz, before any augmentation):
  :class:`PreprocessedYOLODataset`. The predictor reads the same key (:mod:`.predict`).

The signatures of the overridden private methods are checked by tests/test_contract.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import warnings
from collections.abc import Iterator
from copy import copy
from typing import Any

from yolohand.models.yolo.offline import setup_offline

setup_offline()  # must precede the first ultralytics import

import torch  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402
from ultralytics.utils import LOGGER, RANK  # noqa: E402
from ultralytics.utils import callbacks as ul_callbacks  # noqa: E402

from yolohand.data.preprocess import apply_clahe, apply_gamma, apply_to_gray, parse_clahe, parse_gamma  # noqa: E402
from yolohand.errors import YolohandError  # noqa: E402
from yolohand.models.shared.batchnorm import recalibrate_batchnorm  # noqa: E402
from yolohand.models.yolo.val import DiceSegmentationValidator  # noqa: E402

__all__ = [
    "PREPROCESS_ENV", "PREPROCESS_KEY", "PreprocessedYOLODataset", "model_preprocess", "preprocess_image",
    "THREADS_ENV", "BN_RECALIBRATION_BATCHES", "AMP_CHECK_SITES", "DiceSegmentationTrainer", "cpu_threads",
    "use_all_cpu_cores", "note_best_epoch", "stop_if_interrupted", "amp_allowed", "offline_check_amp",
    "drop_partial_checkpoints",
]

#: Environment variable with the number of torch CPU threads for training (default: every core).
THREADS_ENV = "YOLOHAND_CPU_THREADS"

#: Environment variable with the run's preprocessing as JSON (``{"clahe": [2.0, 8], "gamma": null}``);
#: unset: the model's own (a resumed run, a fine-tuned checkpoint's).
PREPROCESS_ENV = "YOLOHAND_PREPROCESS"
#: Key of the preprocessing in the model's ``yaml`` dict (saved inside every ultralytics checkpoint).
PREPROCESS_KEY = "yolohand_preprocess"

#: Training batches used to re-estimate BatchNorm statistics before each validation (0 = off).
BN_RECALIBRATION_BATCHES = 8

#: (module, name) of every place ultralytics' AMP check can be looked up from: where it is
#: defined and where ``_setup_train`` imports it. Each one present is patched (a rename upstream
#: then fails tests/test_contract.py by name instead of silently running the downloading check).
AMP_CHECK_SITES: tuple[tuple[str, str], ...] = (("ultralytics.engine.trainer", "check_amp"),
                                                ("ultralytics.utils.checks", "check_amp"))

# GPUs on which ultralytics' own AMP check disables AMP (copied from ultralytics.utils.checks.check_amp).
_BAD_AMP_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.I)

_CORE_EVENTS = ("on_pretrain_routine_start", "on_train_start", "on_val_start")


# ----------------------------------------------------------------------------- callbacks


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


def note_best_epoch(trainer: Any) -> None:
    """``on_model_save`` callback: remember the 1-based epoch whose weights went to best.pt.

    ultralytics writes best.pt exactly when ``best_fitness == fitness`` after ``save_model``;
    the same test here gives the epoch from the trainer's own (unrounded) state.
    """
    fitness, best = getattr(trainer, "fitness", None), getattr(trainer, "best_fitness", None)
    if fitness is not None and best is not None and best == fitness:
        trainer.yolohand_best_epoch = int(trainer.epoch) + 1


# ----------------------------------------------------------------------------- AMP, offline


def stop_if_interrupted(obj: Any) -> None:  # noqa: ARG001 - ultralytics passes the trainer or validator
    """``on_train_batch_end`` / ``on_val_batch_end`` callback: raise a Ctrl-C that a library swallowed
    (raised inside a weakref callback, ``Exception ignored in: ... WeakKeyDictionary``), so a user's
    Ctrl-C stops training every time (:func:`yolohand.interrupts.check`)."""
    from yolohand.interrupts import check

    check()


def amp_allowed(device_type: str, device_name: str = "") -> bool:
    """Whether AMP stays on: on CUDA except the GPUs ultralytics itself blacklists; off on CPU/MPS/other."""
    if device_type != "cuda":
        return False
    return not _BAD_AMP_GPU.search(device_name or "")


def offline_check_amp(model: torch.nn.Module, *args: Any, **kwargs: Any) -> bool:
    """Replacement for ultralytics' ``check_amp``, which downloads yolo26n.pt to compare FP32 and AMP outputs.

    Same decision as ultralytics' without the download: :func:`amp_allowed` of the model's device.
    """
    device = next(model.parameters()).device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    allowed = amp_allowed(device.type, name)
    if device.type == "cuda" and not allowed:
        LOGGER.warning(f"yolohand: AMP disabled on {name} (ultralytics lists it as giving NaN losses with AMP)")
    elif allowed:
        LOGGER.info("yolohand: AMP on (ultralytics' AMP check skipped: it downloads a checkpoint)")
    return allowed


@contextlib.contextmanager
def _patched_amp_check() -> Iterator[list[str]]:
    """Replace ultralytics' AMP check by :func:`offline_check_amp` at every :data:`AMP_CHECK_SITES` present.

    Yields the ``module.name`` sites patched; restores them after.
    """
    import importlib

    saved = []
    for module_name, name in AMP_CHECK_SITES:
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, offline_check_amp)
    try:
        yield [f"{m.__name__}.{n}" for m, n, _ in saved]
    finally:
        for module, name, old in saved:
            setattr(module, name, old)


@contextlib.contextmanager
def _no_integrations() -> Iterator[None]:
    """``add_integration_callbacks`` replaced by a no-op: no Platform/W&B/Comet/MLflow/... callbacks, no analytics."""
    old = ul_callbacks.add_integration_callbacks
    ul_callbacks.add_integration_callbacks = lambda instance: None
    try:
        yield
    finally:
        ul_callbacks.add_integration_callbacks = old


# ----------------------------------------------------------------------------- BatchNorm


# ----------------------------------------------------------------------------- preprocessing


def model_preprocess(model: Any) -> dict[str, Any]:
    """``{"clahe": (clip, tile) | None, "gamma": (lo, hi) | None}`` stored in an ultralytics model's
    ``yaml`` (:data:`PREPROCESS_KEY`); both None for a model trained without."""
    stored = (getattr(model, "yaml", None) or {}).get(PREPROCESS_KEY) or {}
    return {"clahe": parse_clahe(stored.get("clahe"), flag="checkpoint clahe"),
            "gamma": parse_gamma(stored.get("gamma"), flag="checkpoint gamma")}


def preprocess_image(img: Any, clahe: Any, gamma: Any, augment: bool) -> Any:
    """An image as ultralytics loaded it (long side imgsz; (H, W, C) gray) through the run's CLAHE, then,
    on an augmenting (training) dataset, a gamma drawn from ``gamma`` (ultralytics seeds ``random``)."""
    if clahe is not None:
        img = apply_to_gray(img, lambda g: apply_clahe(g, clahe))
    if gamma and augment:
        g = random.uniform(*gamma)
        img = apply_to_gray(img, lambda x: apply_gamma(x, g))
    return img


class PreprocessedYOLODataset(YOLODataset):
    """ultralytics' ``YOLODataset`` with the run's CLAHE and gamma (:func:`preprocess_image`), set in
    place on a built dataset (``__class__``) by :meth:`DiceSegmentationTrainer.build_dataset`.

    ``get_image_and_label`` is where each image reaches the transforms (mosaic and mixup fetch their
    extra images through it too), while the image cache (``self.ims``) keeps the raw pixels."""

    yolohand_clahe: Any = None
    yolohand_gamma: Any = None

    def get_image_and_label(self, index: int) -> dict[str, Any]:
        label = super().get_image_and_label(index)
        label["img"] = preprocess_image(label["img"], self.yolohand_clahe, self.yolohand_gamma, self.augment)
        return label


# ----------------------------------------------------------------------------- a failed checkpoint write


def drop_partial_checkpoints(trainer: Any, exc: BaseException) -> YolohandError:
    """After ``exc`` interrupted a checkpoint write of ``trainer`` (its ``wdir``, ``last``, ``best``):
    remove every checkpoint in ``wdir`` that is not a complete archive (the half-written one), and
    return the one-line error naming it (:class:`yolohand.core.atomic.WriteFailed`)."""
    from pathlib import Path

    from yolohand.core.atomic import WriteFailed
    from yolohand.models.shared.checkpoint import archive_problem

    wdir = Path(trainer.wdir)
    partial = [p for p in sorted(wdir.glob("*.pt")) if p.is_file() and archive_problem(p) is not None]
    for p in partial:
        with contextlib.suppress(OSError):
            p.unlink()
    named = getattr(exc, "filename", None)
    where = partial[0] if partial else Path(named) if isinstance(named, str) else Path(trainer.last)
    return WriteFailed.of(where, exc)


# ----------------------------------------------------------------------------- the trainer


class DiceSegmentationTrainer(SegmentationTrainer):
    """``SegmentationTrainer`` whose validator is :class:`DiceSegmentationValidator`, offline (module docstring).

    After training, ``yolohand_best_epoch`` is the 1-based epoch saved as best.pt during this
    run (absent when no epoch of this run improved on the best, e.g. a resume, or in a DDP parent).
    """

    def __init__(self, cfg=None, overrides: dict | None = None, _callbacks: dict | None = None) -> None:
        from ultralytics.utils import DEFAULT_CFG

        cbs = _callbacks if _callbacks is not None else ul_callbacks.get_default_callbacks()
        for event in _CORE_EVENTS:
            if use_all_cpu_cores not in cbs[event]:
                cbs[event].append(use_all_cpu_cores)
        if note_best_epoch not in cbs["on_model_save"]:
            cbs["on_model_save"].append(note_best_epoch)
        # ultralytics' albumentations ToGray meets the 1-channel images: nothing a user can act on
        warnings.filterwarnings("ignore", message="The image is already gray")
        for event in ("on_train_batch_end", "on_val_batch_end"):  # a swallowed Ctrl-C still stops the run
            if stop_if_interrupted not in cbs[event]:
                cbs[event].append(stop_if_interrupted)
        with _no_integrations():
            super().__init__(cfg if cfg is not None else DEFAULT_CFG, overrides, cbs)

    def _setup_train(self, *args: Any, **kwargs: Any) -> None:
        """ultralytics' setup with the offline AMP check (8.4.1-8.4.103 pass ``world_size``, later none)."""
        with _patched_amp_check():
            super()._setup_train(*args, **kwargs)

    def validate(self):
        """Re-estimate the EMA model's BatchNorm statistics (:func:`recalibrate_batchnorm`), then validate.

        The recalibrated EMA is what ``save_model`` writes to last.pt/best.pt right after.
        Consumes a few batches of the training stream (the next epoch starts a little further on).
        Rank 0 only: ultralytics' ``validate`` broadcasts rank 0's EMA buffers to every rank.
        """
        if self.ema is not None and BN_RECALIBRATION_BATCHES > 0 and RANK in {-1, 0}:
            recalibrate_batchnorm(self.ema.ema, self.train_loader, lambda b: self.preprocess_batch(b)["img"],
                                  BN_RECALIBRATION_BATCHES, amp=bool(getattr(self, "amp", False)))
        return super().validate()

    def get_model(self, cfg=None, weights=None, verbose: bool = True):
        """ultralytics' model, with the run's preprocessing (``$YOLOHAND_PREPROCESS``) in its ``yaml``."""
        model = super().get_model(cfg, weights, verbose)
        text = os.environ.get(PREPROCESS_ENV)
        if text is not None and isinstance(getattr(model, "yaml", None), dict):
            model.yaml[PREPROCESS_KEY] = json.loads(text)
        return model

    def build_dataset(self, img_path, mode: str = "train", batch=None):
        """ultralytics' dataset, made a :class:`PreprocessedYOLODataset` when the model has a preprocessing."""
        dataset = super().build_dataset(img_path, mode, batch)
        model = getattr(self.model, "module", self.model)  # DDP wraps it
        pre = model_preprocess(getattr(model, "_orig_mod", model))  # so may torch.compile
        if pre["clahe"] is None and pre["gamma"] is None:
            return dataset
        if type(dataset) is not YOLODataset:
            raise YolohandError(f"--clahe/--gamma: ultralytics built a {type(dataset).__name__} here, which yolohand "
                                "cannot preprocess (only YOLODataset)")
        dataset.__class__ = PreprocessedYOLODataset
        dataset.yolohand_clahe, dataset.yolohand_gamma = pre["clahe"], pre["gamma"]
        return dataset

    def save_model(self):
        """ultralytics' ``save_model``, which writes last.pt and best.pt in place: when a write fails (a full
        disk), the half-written file is removed and the failure is one line naming it, so the run does not
        look finished (:func:`drop_partial_checkpoints`)."""
        try:
            return super().save_model()
        except OSError as exc:
            raise drop_partial_checkpoints(self, exc) from exc

    def final_eval(self):
        """ultralytics' ``final_eval``, which strips the optimizer from last.pt and best.pt in place
        (torch.save over each): a failed write is handled as in :meth:`save_model`."""
        try:
            return super().final_eval()
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "PytorchStreamWriter" not in str(exc):
                raise
            raise drop_partial_checkpoints(self, exc) from exc

    def get_validator(self) -> DiceSegmentationValidator:
        """The Dice validator, after ultralytics' own ``get_validator`` (which sets ``loss_names`` up to 8.4.103)."""
        super().get_validator()
        return DiceSegmentationValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )
