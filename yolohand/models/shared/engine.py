"""The training engine of the semantic families: a PyTorch Lightning module and trainer.

Why Lightning and not a plain loop: AMP (``precision="16-mixed"``), DDP (``--device 0,1``),
gradient accumulation, checkpoint/resume with optimizer and scheduler state, early stopping and
a progress bar are each one argument of ``lightning.Trainer``; written by hand they are the
parts most often wrong. Its cost on this CPU was measured (README, "smp family"): the same
steps timed with Lightning and with a bare loop.

:class:`SegModule` holds the model and the loss (segmentation_models_pytorch losses,
``mode="multilabel"``: 29 independent sigmoid channels, never a softmax) and delegates the
validation score to a family's ``score`` callable: it returns, per validation image, the 29
competition Dice values (at the original resolution), averaged over images then classes into
``metrics/dice(M)``; best.pt is the epoch with the highest.

With ``window`` (smp, README "Leaderboard techniques") validation predicts each image by sliding
windows (:mod:`.windows`) as ``predict`` does. With ``swa_epochs`` N, :class:`WeightAverage` keeps
the mean of the last N epochs' weights and :func:`finish_average` makes it best.pt (BatchNorm
re-estimated on a full pass over the training set, then validated). A run without validation
(``--fold none``) re-estimates BatchNorm at the end of every epoch instead, and best.pt is the last
epoch (or the average).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolohand.defaults import DICE_KEY

# Lightning's import is slow and prints tips: quieted before import.
os.environ.setdefault("POSSIBLE_USER_WARNING", "off")
import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.plugins.io import TorchCheckpointIO  # noqa: E402

# Deprecation notices from inside torch/Lightning and Lightning's advertising tips ("💡 Tip: ... try
# installing litlogger"): nothing a user of yolohand can act on.
for _notice in (r".*isinstance\(treespec, LeafSpec\).*", r".*distributed\.nn\.functional\.all_gather is deprecated.*",
                r".*but have no `val_dataloader`.*"):  # --fold none: no validation, on purpose
    warnings.filterwarnings("ignore", message=_notice)
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: not str(record.msg).startswith("💡"))

__all__ = ["make_loss", "SegModule", "ResultsCsv", "make_trainer", "Interrupted", "NotLearning", "AtomicCheckpointIO", "WeightAverage",
           "finish_average"]

#: :class:`NotLearning` warns when the validation Dice is below this after this many epochs.
NOT_LEARNING_EPOCHS, NOT_LEARNING_DICE = 3, 0.02

def make_loss(args: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``args["loss"]`` names, from segmentation_models_pytorch.losses (multilabel)."""
    from yolohand.models.shared.network import import_smp

    losses = import_smp().losses
    name = args["loss"]
    if name == "combo":
        bce, dice = losses.SoftBCEWithLogitsLoss(), losses.DiceLoss("multilabel", from_logits=True)
        wb, wd = float(args["bce_weight"]), float(args["dice_weight"])
        return lambda logits, target: wb * bce(logits, target) + wd * dice(logits, target)
    table = {
        "bce": lambda: losses.SoftBCEWithLogitsLoss(),
        "dice": lambda: losses.DiceLoss("multilabel", from_logits=True),
        "focal": lambda: losses.FocalLoss("multilabel"),
        "tversky": lambda: losses.TverskyLoss("multilabel", from_logits=True),
        "lovasz": lambda: losses.LovaszLoss("multilabel", from_logits=True),
        "jaccard": lambda: losses.JaccardLoss("multilabel", from_logits=True),
    }
    return table[name]()


class SegModule(pl.LightningModule):
    """Model + loss + optimizer; validation Dice from ``score(model, batch) -> float (B, 29)``."""

    def __init__(self, model: torch.nn.Module, args: dict[str, Any], meta: dict[str, Any],
                 score: Callable[[torch.nn.Module, Any], np.ndarray]) -> None:
        super().__init__()
        self.model, self.args, self.meta, self.score = model, args, meta, score
        self.loss_fn = make_loss(args)
        self._dice: list[np.ndarray] = []  # float64 (B, 29) per validation batch
        self._index: list[np.ndarray] = []  # int64 (B,): which validation images those rows are
        self._val_loss: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def full_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of whole images as prediction computes them: by sliding windows when the run has a
        ``window`` smaller than the images (:func:`yolohand.models.shared.windows.sliding_logits`)."""
        from yolohand.models.shared.windows import check_window, sliding_logits

        window, stride = check_window(self.args.get("window"), self.args.get("stride"))
        if window is None or window >= max(x.shape[-2:]):
            return self.model(x)
        return sliding_logits(self.model, x, window, stride, batch=max(1, int(self.args["batch"])))

    def recalibrate(self, loader: Any, batches: int) -> int:
        """Precise BatchNorm (:mod:`.batchnorm`) on ``batches`` batches of ``loader`` (its first item: the input)."""
        from yolohand.models.shared.batchnorm import recalibrate_batchnorm

        amp = self.trainer.precision.startswith("16")
        return recalibrate_batchnorm(self.model, loader, lambda b: b[0].to(self.device), batches, amp=amp)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self.model(x), y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        """Precise BatchNorm before each validation (:mod:`.batchnorm`): ``bn_batches`` training batches
        (not after :func:`finish_average`, which re-estimated it on the whole training set)."""
        loader = self.trainer.train_dataloader
        if loader is not None and self.args.get("bn_batches") and not getattr(self, "averaged", False):
            self.recalibrate(loader, int(self.args["bn_batches"]))

    def on_train_epoch_end(self) -> None:
        """A run without validation (``--fold none``): precise BatchNorm before the epoch's checkpoint,
        as a validating run gets it before each validation."""
        loader = self.trainer.train_dataloader
        if not self.trainer.val_dataloaders and loader is not None and self.args.get("bn_batches"):
            self.recalibrate(loader, int(self.args["bn_batches"]))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch["x"], batch["y"].float()
        logits = self.full_logits(x)
        self._val_loss.append(float(self.loss_fn(logits, y)))
        self._dice.append(self.score(logits, batch))
        self._index.append(batch["index"].cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        per_image = np.concatenate(self._dice) if self._dice else np.full((1, 29), np.nan)
        index = np.concatenate(self._index) if self._index else np.zeros(1, np.int64)
        if self.trainer.world_size > 1:  # every rank scored a shard of the validation set
            per_image = self._gather_images(per_image, index)
        dice = float(np.nanmean(per_image.mean(axis=0)))  # over images, then over classes
        # sync_dist: the Dice is already the same on every rank; the loss becomes the mean of the ranks'
        self.log(DICE_KEY, torch.tensor(dice), prog_bar=True, sync_dist=True)
        self.log("val/loss", float(np.mean(self._val_loss)) if self._val_loss else math.nan, sync_dist=True)
        self._dice, self._index, self._val_loss = [], [], []

    def _gather_images(self, per_image: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Every rank's (n, 29) rows, each validation image once: the distributed sampler pads the
        shards to one length by repeating images, so a mean of the ranks' means would count those twice."""
        rows = self.all_gather(torch.from_numpy(per_image)).reshape(-1, per_image.shape[1]).cpu().numpy()
        ids = self.all_gather(torch.from_numpy(index)).reshape(-1).cpu().numpy()
        _, first = np.unique(ids, return_index=True)
        return rows[first]

    def configure_optimizers(self):
        a = self.args
        params = self.model.parameters()
        if a["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=a["lr0"], momentum=0.9, weight_decay=a["weight_decay"])
        elif a["optimizer"] == "adamw":
            opt = torch.optim.AdamW(params, lr=a["lr0"], weight_decay=a["weight_decay"])
        else:
            opt = torch.optim.Adam(params, lr=a["lr0"], weight_decay=a["weight_decay"])
        if not a["cos_lr"]:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, a["epochs"]), eta_min=a["lr0"] * a["lrf"])
        return {"optimizer": opt, "lr_scheduler": sched}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["yolohand"] = {**self.meta, "epoch": int(self.current_epoch) + 1, **getattr(self, "meta_extra", {})}
        # Keep only the network's weights under the model's own names (no loss buffers).
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


class ResultsCsv(pl.Callback):
    """``results.csv``: one row per epoch (epoch, train/loss, val/loss, Dice, lr, time; the last
    validation's values on epochs without one),
    rewritten through a temporary file so it is never half-written."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows, self.t0 = path, [], time.perf_counter()
        if path.is_file():  # resumed run: keep the earlier epochs
            with open(path, newline="", encoding="utf-8") as fh:
                self.rows = list(csv.DictReader(fh))

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Lightning validates before the train epoch ends: both losses and the Dice are known here.
        # A run without validation (--fold none) writes every epoch, its Dice and val/loss empty.
        validates = bool(trainer.val_dataloaders) and trainer.limit_val_batches != 0
        if trainer.global_rank != 0 or (validates and DICE_KEY not in trainer.callback_metrics):
            return
        m = trainer.callback_metrics
        value = lambda k: f"{float(m[k]):.6g}" if k in m else ""
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        epoch = trainer.current_epoch + 1
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.rows.append({"epoch": epoch, "train/loss": value("train/loss"), "val/loss": value("val/loss"),
                          DICE_KEY: value(DICE_KEY), "lr": f"{lr:.6g}", "time": f"{time.perf_counter() - self.t0:.1f}"})
        from yolohand.core.atomic import atomic_file

        with atomic_file(self.path, force=True) as fh:  # a full disk: one line naming results.csv, no temporary left
            writer = csv.DictWriter(fh, fieldnames=list(self.rows[-1]))
            writer.writeheader()
            writer.writerows(self.rows)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through :func:`yolohand.core.atomic.atomic_file`: best.pt and last.pt
    are written whole or not at all (Lightning's own writes in place, so a full disk left a half-written
    best.pt), and a failed write is one line naming the file (:class:`yolohand.core.atomic.WriteFailed`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        from yolohand.core.atomic import atomic_file

        with atomic_file(path, force=True, mode="wb") as fh:
            torch.save(checkpoint, fh)


class Interrupted(pl.Callback):
    """Remembers a Ctrl-C: Lightning turns it into ``sys.exit(1)``; the caller re-raises it. After each
    batch a Ctrl-C that a library swallowed (raised in a weakref callback) is raised again
    (:func:`yolohand.interrupts.check`), so one always stops training."""

    seen = False

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.seen = isinstance(exception, KeyboardInterrupt)

    def on_train_batch_end(self, *args: Any) -> None:
        from yolohand.interrupts import check

        check()

    on_validation_batch_end = on_train_batch_end


class NotLearning(pl.Callback):
    """One warning when the validation Dice is still near zero after the first epochs: the usual sign
    of a from-scratch run with a loss or learning rate that cannot move it (README, "smp family")."""

    def __init__(self, epochs: int = NOT_LEARNING_EPOCHS, floor: float = NOT_LEARNING_DICE) -> None:
        self.epochs, self.floor, self.warned = epochs, floor, False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        dice = trainer.callback_metrics.get(DICE_KEY)
        if self.warned or trainer.global_rank != 0 or dice is None or trainer.current_epoch + 1 < self.epochs:
            return
        self.warned = True
        if float(dice) < self.floor:
            a = module.args
            from yolohand.models.shared.config import DEFAULTS, REFINE_DEFAULTS

            d = dict(DEFAULTS, **(REFINE_DEFAULTS if module.meta.get("family") == "refine" else {}))
            loss = f"combo {a['bce_weight']:g}:{a['dice_weight']:g}" if a["loss"] == "combo" else a["loss"]
            start = a["pretrained"] or a["encoder_weights"] or "random"
            warnings.warn(f"validation Dice {float(dice):.4f} after {trainer.current_epoch + 1} epochs: the model is not "
                          f"learning (loss {loss}, lr0 {a['lr0']:g}, batch {a['batch']}, weights from {start}); from "
                          f"random weights the defaults learn (batch {d['batch']}, lr0 {d['lr0']:g}, bce_weight "
                          f"{d['bce_weight']:g}, bn_batches {d['bn_batches']}), or start from trained weights "
                          "(encoder_weights / pretrained in --config)", stacklevel=1)


class WeightAverage(pl.Callback):
    """The mean of the model's weights at the end of each of the last ``epochs`` epochs (float
    tensors; integer buffers such as BatchNorm's batch count are kept from the last epoch).

    Its running sum is part of last.pt's state, so ``--resume`` continues the average. Why not
    Lightning's ``StochasticWeightAveraging``: it replaces the run's learning-rate schedule by its own
    (SWALR) from its start epoch and re-estimates BatchNorm in an extra training epoch; this keeps
    the cosine schedule and averages what it produced, the "average of the last N epochs" the
    competition's teams reported (+0.0002 mDice, README "Leaderboard techniques").
    """

    def __init__(self, epochs: int) -> None:
        self.epochs, self.sum, self.count, self.first = int(epochs), None, 0, None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch < trainer.max_epochs - self.epochs:
            return
        state = module.model.state_dict()
        if self.sum is None:
            self.sum = {k: v.detach().double().clone() for k, v in state.items() if v.is_floating_point()}
            self.count, self.first = 0, int(trainer.current_epoch) + 1
        else:
            for k, acc in self.sum.items():
                acc.add_(state[k].detach().double())
        self.count += 1

    def average(self, module: pl.LightningModule) -> dict[str, torch.Tensor] | None:
        """The model's state dict with every float tensor the mean over the averaged epochs (None: none yet)."""
        if self.sum is None or not self.count:
            return None
        state = module.model.state_dict()
        return {k: (self.sum[k] / self.count).to(v.dtype) if k in self.sum else v for k, v in state.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "count": self.count, "first": self.first, "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sum, self.count, self.first = state.get("sum"), int(state.get("count", 0)), state.get("first")


def finish_average(trainer: pl.Trainer, module: SegModule, averager: WeightAverage, train_dl: Any, val_dl: Any,
                   best: Path) -> float | None:
    """Load the averaged weights, re-estimate BatchNorm on one pass over ``train_dl``, validate on
    ``val_dl`` (None: no validation) and save them as ``best`` (the best single epoch's weights, if
    any, move to ``best_epoch.pt``). Returns the averaged model's Dice (None without validation or
    when nothing was averaged)."""
    state = averager.average(module)
    if state is None:
        return None
    module.model.load_state_dict(state)
    module.recalibrate(train_dl, len(train_dl))
    module.averaged = True  # the validation below keeps these statistics
    last = int(averager.first) + averager.count - 1
    module.meta_extra = {"averaged_epochs": [int(averager.first), last], "epoch": last}  # (after fit, current_epoch is one on)
    dice = None
    if val_dl is not None:
        trainer.validate(module, val_dl, verbose=False)
        dice = float(trainer.callback_metrics[DICE_KEY]) if DICE_KEY in trainer.callback_metrics else None
        module.meta_extra["averaged_dice"] = dice
    if trainer.global_rank == 0 and best.is_file() and val_dl is not None:
        os.replace(best, best.with_name("best_epoch.pt"))
    trainer.save_checkpoint(best, weights_only=True)
    return dice


class _LastAsBest(pl.callbacks.ModelCheckpoint):
    """best.pt of a run without validation: every epoch's weights. Its own class gives it its own
    Lightning state key (two unmonitored ModelCheckpoints would share one)."""


def _checkpoint(weights: Path, name: str, kind: type = pl.callbacks.ModelCheckpoint, **kw: Any) -> pl.callbacks.ModelCheckpoint:
    cb = kind(dirpath=weights, filename=name, enable_version_counter=False, **kw)
    cb.FILE_EXTENSION = ".pt"  # the run layout every family shares: weights/{best,last}.pt
    return cb


def make_trainer(args: dict[str, Any], run_dir: Path, devices: list[int] | None, progress: bool = True,
                 cpu_processes: int = 1, validate: bool = True) -> tuple[pl.Trainer, Interrupted]:
    """A Lightning trainer writing ``run_dir/weights/{best,last}.pt`` and ``run_dir/results.csv``.

    ``devices``: None for the CPU (``cpu_processes`` > 1: DDP over gloo), else CUDA indices (several: DDP).
    ``validate`` False (``--fold none``): best.pt is every epoch's weights (the last one at the end),
    early stopping is refused. ``args["swa_epochs"]``: a :class:`WeightAverage` among the callbacks.
    """
    gpu = devices is not None
    world = len(devices) if gpu else cpu_processes
    from yolohand.models.shared.config import amp_on

    weights = run_dir / "weights"
    best = (_checkpoint(weights, "best", monitor=DICE_KEY, mode="max", save_top_k=1, save_weights_only=True) if validate
            else _checkpoint(weights, "best", _LastAsBest, monitor=None, save_top_k=1, save_weights_only=True))
    callbacks = [
        best,
        _checkpoint(weights, "last", save_top_k=1, monitor=None),  # full state, for --resume
        ResultsCsv(run_dir / "results.csv"),
        interrupted := Interrupted(),
        NotLearning(),
    ]
    if args.get("swa_epochs"):
        callbacks.append(WeightAverage(int(args["swa_epochs"])))
    if args["patience"] and validate:
        callbacks.append(pl.callbacks.EarlyStopping(monitor=DICE_KEY, mode="max", patience=args["patience"]))
    trainer = pl.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=devices if gpu else cpu_processes,
        strategy="ddp" if world > 1 else "auto",  # CPU: Lightning's DDP uses the gloo backend
        precision="16-mixed" if amp_on(args, gpu) else "32-true", max_epochs=args["epochs"],
        accumulate_grad_batches=args["accumulate"], check_val_every_n_epoch=args["val_every"],
        limit_val_batches=None if validate else 0,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], logger=False, default_root_dir=str(run_dir), num_sanity_val_steps=0,
        enable_model_summary=False, enable_progress_bar=progress, deterministic=bool(args["deterministic"]),
    )
    return trainer, interrupted
