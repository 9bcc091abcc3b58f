"""Train the per-bone refiner on one fold: ``--model refine:ARCH:ENCODER --imgsz R``.

Training crops come from the fold's ground truth with detector-like boxes and YOLO-like priors
(:mod:`yolohand.models.refine.data`). Validation is end to end on the fold's validation images:
first-stage crops -> refiner -> the competition's Dice at full resolution; best.pt is the epoch
with the highest. The first stage is the checkpoint the run config names as ``detector`` (a
YOLO best.pt of the same fold, so its validation images are unseen by both); without one, the
validation priors are degraded ground truth drawn once with the run's seed. The first stage's
own Dice on the same images is printed once, so the gain is visible.

With ``priors`` (a folder of out-of-fold probability maps of the training images) a ``prior_mix``
share of the training crops use the detector's real boxes and masks (:mod:`.data`); their bone
windows are cached in a folder of their own.

**The gate.** With a ``detector``, each validation also compares, per class, the detector's Dice
with the refined Dice on the same images; the classes where the refiner is lower by more than
``gate_margin`` are stored in the checkpoint's metadata (``gate``: the classes, the margin, the
number of images and both per-class Dice), and prediction keeps the detector's mask for them
(:func:`yolohand.models.refine.predict.refine_crops`). One line at the end of training names them.
Without a detector nothing is measured and nothing is gated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolohand.core import crops as cr
from yolohand.data.preprocess import apply_clahe, parse_clahe
from yolohand.errors import YolohandError
from yolohand.models.refine.gate import gate_line, gate_of
from yolohand.models.shared.checkpoint import ModelSpec
from yolohand.models.shared.engine import SegModule
from yolohand.models.shared.runs import TrainResult

__all__ = ["RefineModule", "crops_dice", "train_fold"]

#: ``(validation images, detector checkpoint, device) -> class crops per image`` of a first stage.
FirstStage = Callable[[list[Path], str, str], list[cr.ClassCrops]]


def crops_dice(crops: cr.ClassCrops, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """float64 (29,): competition Dice of class crops against bool (29, H, W) ground truth."""
    from yolohand.core.metrics import dice_score

    out = np.empty(gt.shape[0])
    for c in range(gt.shape[0]):
        area_gt = np.count_nonzero(gt[c])
        crop = crops[c]
        if crop is None:
            out[c] = dice_score(0, 0, area_gt)
            continue
        pred = crop.probs >= threshold
        inter = np.count_nonzero(pred & gt[c, crop.y0 : crop.y1, crop.x0 : crop.x1])
        out[c] = dice_score(inter, np.count_nonzero(pred), area_gt)
    return out


class RefineModule(SegModule):
    """The refiner: the loss on each crop's own output channel; validation end to end per image.

    ``prior_dice``: float (n, 29) per-image Dice of ``priors`` (the detector's crops) when they come
    from a real detector; then each validation measures the gate (:func:`gate_of`), saved with the
    checkpoint's metadata under ``gate``."""

    def __init__(self, model, args, meta, val_images: list[Path], priors: list[cr.ClassCrops],
                 prior_dice: np.ndarray | None = None) -> None:
        super().__init__(model, args, meta, score=None)
        self.val_images, self.priors, self.prior_dice = val_images, priors, prior_dice
        self.gate: dict[str, Any] | None = None

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, cls = batch
        logits = self.model(x)[torch.arange(x.shape[0], device=x.device), cls][:, None]
        loss = self.loss_fn(logits, y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        from yolohand.data.layout import read_image
        from yolohand.data.samples import label_masks
        from yolohand.models.refine.predict import refine_crops

        clahe = parse_clahe(self.args.get("clahe"))
        for i in batch.tolist():
            image = read_image(self.val_images[i])
            refined = refine_crops(self.model, apply_clahe(image, clahe), self.priors[i], float(self.args["margin"]),
                                   int(self.args["imgsz"]), self.device)
            self._dice.append(crops_dice(refined, label_masks(self.val_images[i], image.shape[:2]))[None])
            self._index.append(np.array([i]))

    def on_validation_epoch_end(self) -> None:
        if self.prior_dice is not None and self._dice:
            rows, index = np.concatenate(self._dice), np.concatenate(self._index)
            if self.trainer.world_size > 1:  # every rank scored a shard (padded by repeats)
                rows = self.all_gather(torch.from_numpy(rows)).reshape(-1, rows.shape[1]).cpu().numpy()
                index = self.all_gather(torch.from_numpy(index)).reshape(-1).cpu().numpy()
            index, first = np.unique(index, return_index=True)
            self.gate = gate_of(self.prior_dice[index], rows[first], float(self.args["gate_margin"]))
        super().on_validation_epoch_end()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.gate is not None:  # the gate of the weights saved: measured at this epoch's validation
            checkpoint["yolohand"]["gate"] = self.gate


def _degraded_priors(images: list[Path], args: dict[str, Any]) -> list[cr.ClassCrops]:
    """First-stage stand-ins: per image and bone, a degraded ground truth in a jittered box."""
    from yolohand.data.bone_crops import windows_of
    from yolohand.data.layout import read_image
    from yolohand.data.samples import label_masks
    from yolohand.models.refine.geometry import degrade_prior, jitter_box

    rng = np.random.default_rng(int(args["seed"]))
    out = []
    for path in images:
        image = read_image(path)
        crops: cr.ClassCrops = [None] * 29
        for w in windows_of(image, label_masks(path, image.shape[:2])):
            y0, x0, y1, x1 = w.window
            box = jitter_box((w.box[0] - y0, w.box[1] - x0, w.box[2] - y0, w.box[3] - x0), float(args["jitter"]), rng,
                             (0, 0, y1 - y0, x1 - x0))
            prior = degrade_prior(w.mask, box, float(args["prior_stride"]), rng)
            crops[w.cls] = cr.Crop(y0 + box[0], x0 + box[1], prior[box[0] : box[2], box[1] : box[3]].copy())
        out.append(crops)
    return out


def _val_priors(val_imgs: list[Path], args: dict[str, Any], devices,
                first_stage: FirstStage | None) -> tuple[list[cr.ClassCrops], np.ndarray | None]:
    """The validation priors: the run's ``detector`` through ``first_stage``, else degraded ground
    truth; and their float (n, 29) per-image Dice when they are a detector's (None otherwise)."""
    from yolohand.data.layout import image_size
    from yolohand.data.samples import label_masks

    if args["detector"]:
        if not Path(str(args["detector"])).is_file():
            raise YolohandError(f"detector {args['detector']}: checkpoint not found (nothing is downloaded)")
        if first_stage is None:
            raise YolohandError(f"detector {args['detector']}: no first stage to run it (train through yolohand.models.train)")
        priors = first_stage(val_imgs, str(args["detector"]), "cpu" if devices is None else f"{devices[0]}")
        source = f"detector {args['detector']}"
    else:
        priors = _degraded_priors(val_imgs, args)
        source = "degraded ground truth (no detector in the run config)"
    rows = np.stack([crops_dice(p, label_masks(v, image_size(v))) for v, p in zip(val_imgs, priors)])
    print(f"yolohand: refiner validation priors from {source}: first-stage mDice {rows.mean(axis=0).mean():.4f} "
          f"on {len(val_imgs)} images", file=sys.stderr)
    return priors, (rows if args["detector"] else None)


def _cache_folder(plan: dict[str, Any], args: dict[str, Any]) -> Path:
    """The bone-window cache of the run: its own folder per CLAHE and per ``priors`` folder."""
    import hashlib

    clahe = parse_clahe(args.get("clahe"))
    bones = "bones" if clahe is None else f"bones-clahe{clahe[0]:g}x{clahe[1]}"  # windows cut from the CLAHE image
    if args.get("priors"):  # windows holding those maps' predictions
        bones += "-priors-" + hashlib.sha1(str(Path(str(args["priors"])).resolve()).encode()).hexdigest()[:12]
    return plan["cache"].parent / bones


def _build_refine(plan: dict[str, Any], devices):
    from yolohand.data.bone_crops import build_crop_cache
    from yolohand.models.refine.data import BoneSet
    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.fit import check_run, drop_last
    from yolohand.models.shared.network import build_model, load_pretrained
    from yolohand.models.shared.plan import plan_images

    args, spec = plan["args"], plan["spec"]
    if args.get("window"):
        raise YolohandError(f"--window {args['window']}: the refiner already works on full-resolution bone crops "
                            "(--imgsz is its crop side); windows are for the smp family")
    train_imgs, val_imgs = plan_images(plan, "train"), plan_images(plan, "val")
    files = build_crop_cache(train_imgs, _cache_folder(plan, args), clahe=parse_clahe(args.get("clahe")),
                             priors=args.get("priors"))
    gen = torch.Generator().manual_seed(args["seed"])
    bones = BoneSet(files, args)
    if args.get("priors"):
        print(f"yolohand: refiner training priors: {bones.predicted} of {len(bones)} bones found by the detector in "
              f"{args['priors']}; prior_mix {float(args['prior_mix']):g} of their draws use its box and mask, the rest "
              "degraded ground truth", file=sys.stderr)
    train_dl = torch.utils.data.DataLoader(bones, batch_size=plan["batch"], shuffle=True, generator=gen,
                                           drop_last=drop_last(len(bones), plan["batch"], plan.get("world", 1)),
                                           num_workers=args["workers"], persistent_workers=args["workers"] > 0)
    val_dl = torch.utils.data.DataLoader(torch.arange(len(val_imgs)), batch_size=1) if val_imgs else None
    model = build_model(spec.arch, spec.encoder, in_channels=2, encoder_weights=args["encoder_weights"])
    check_run(plan, model, 2, len(bones), devices)
    if args["pretrained"]:
        load_pretrained(model, args["pretrained"], spec.family, spec.arch, spec.encoder)
    meta = checkpoint_meta(spec.family, spec.arch, spec.encoder, args["imgsz"], channels=2, loss=args["loss"],
                           margin=float(args["margin"]), prior_stride=float(args["prior_stride"]), clahe=args.get("clahe"),
                           gamma=args.get("gamma"), swa_epochs=int(args.get("swa_epochs") or 0))
    priors, prior_dice = _val_priors(val_imgs, args, devices, plan.get("first_stage")) if val_imgs else ([], None)
    return RefineModule(model, args, meta, val_imgs, priors, prior_dice), train_dl, val_dl


def train_fold(fold: int = 0, *, spec: ModelSpec, device: str | None = None, progress: bool = True,
               first_stage: FirstStage | None = None, plan: dict[str, Any] | None = None, **kwargs: Any) -> TrainResult:
    """Train the refiner ``spec`` on fold ``fold``; kwargs as :func:`yolohand.models.smp.train.train_fold`.

    ``first_stage(images, detector, device)``: the detector's class crops of each validation image
    (given by :func:`yolohand.models.train.train_fold`, which knows every family). ``plan``: the run's
    :func:`~yolohand.models.shared.plan.plan_run` when the caller made it already (then kwargs are not read)."""
    from yolohand.models.shared.checkpoint import read_checkpoint
    from yolohand.models.shared.devices import is_worker
    from yolohand.models.shared.plan import plan_run, run_plan

    kwargs.pop("time", None)
    plan = dict(plan if plan is not None else plan_run(fold, spec, **kwargs), first_stage=first_stage)
    result = run_plan(plan, _build_refine, device=device, progress=progress)
    if not is_worker():
        gate = (read_checkpoint(result.best) or {}).get("yolohand", {}).get("gate")
        print(gate_line(gate, f" {result.best}"), file=sys.stderr)
    return result
