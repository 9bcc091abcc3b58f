"""Train a segmentation_models_pytorch model on one fold: ``--model smp:ARCH:ENCODER``.

Same run layout as YOLO (``<runs>/<name>/fold<k>/weights/{best,last}.pt``, ``results.csv`` with
``metrics/dice(M)``), same folds (the fold lists written by ``yolohand convert``), same
``--config`` rules. Validation Dice is the competition's: logits upsampled bilinearly to the
original image size, sigmoid, ``> 0.5``, Dice per image and class against the label polygons
filled at full size, mean over images then classes; best.pt is the epoch with the highest.

``window`` W: training samples are random W x W windows of the S x S plane (S = ``imgsz``;
without an ``imgsz`` given, the largest side of the training images: full resolution), validation
predicts whole images by sliding windows, as ``predict`` does. ``clahe``/``gamma``: see
:mod:`yolohand.data.preprocess`. All three are stored in the checkpoint's metadata (with the
prediction stride), so ``predict`` reproduces them without being told.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yolohand.models.shared.checkpoint import ModelSpec
from yolohand.models.shared.devices import devices_of
from yolohand.models.shared.plan import plan_run, run_plan
from yolohand.models.shared.runs import TrainResult, read_rows

__all__ = ["devices_of", "plan_run", "run_plan", "train_fold", "full_size_dice", "read_rows", "technique_meta"]


def technique_meta(args: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint stores of the run's windows and preprocessing (predict's defaults; plain values)."""
    from yolohand.models.shared.windows import check_window

    window, stride = check_window(args.get("window"), args.get("stride"))
    if window is not None and window >= int(args["imgsz"]):
        window = stride = None  # one window covers the plane: the plain pass
    return {"window": window, "stride": stride, "clahe": args.get("clahe"), "gamma": args.get("gamma"),
            "swa_epochs": int(args.get("swa_epochs") or 0)}


def full_size_dice(logits, gt: np.ndarray) -> np.ndarray:
    """float64 (29,): competition Dice of logits (29, s, s) (torch) upsampled to gt's bool (29, H, W)."""
    import torch.nn.functional as F

    from yolohand.core.metrics import dice_score

    out = np.empty(gt.shape[0])
    for c in range(gt.shape[0]):  # one class at a time: memory stays at one full-size plane
        up = F.interpolate(logits[c][None, None].float(), size=gt.shape[1:], mode="bilinear", align_corners=False)
        pred = (up[0, 0] >= 0).cpu().numpy()  # sigmoid >= 0.5  <=>  logit >= 0 (prediction's rule)
        out[c] = dice_score(np.count_nonzero(pred & gt[c]), np.count_nonzero(pred), np.count_nonzero(gt[c]))
    return out


def _scorer(val_images: list[Path]):
    from yolohand.data.layout import image_size
    from yolohand.data.samples import label_masks

    def score(logits, batch) -> np.ndarray:
        rows = []
        for j, i in enumerate(batch["index"].tolist()):
            image = val_images[i]
            rows.append(full_size_dice(logits[j], label_masks(image, image_size(image))))
        return np.stack(rows)

    return score


def _loaders(plan: dict[str, Any], gpu: bool):
    import torch

    from yolohand.data.samples import build_sample_cache
    from yolohand.models.shared.fit import drop_last
    from yolohand.models.shared.plan import plan_images
    from yolohand.models.smp.data import TrainSet, ValSet, augmentations, seed_worker

    args, size = plan["args"], plan["args"]["imgsz"]
    train_imgs, val_imgs = plan_images(plan, "train"), plan_images(plan, "val")
    train = build_sample_cache(train_imgs, plan["cache"], size)
    val = build_sample_cache(val_imgs, plan["cache"], size) if val_imgs else []
    common = dict(num_workers=args["workers"], pin_memory=gpu, persistent_workers=args["workers"] > 0)
    gen = torch.Generator().manual_seed(args["seed"])
    batch = plan["batch"]  # per process
    data = TrainSet(train, size, augmentations(args, args["seed"]), window=args.get("window"), clahe=args.get("clahe"))
    train_dl = torch.utils.data.DataLoader(data, batch_size=batch,
                                           shuffle=True, drop_last=drop_last(len(train), batch, plan.get("world", 1)),
                                           generator=gen,
                                           worker_init_fn=seed_worker, **common)
    val_dl = torch.utils.data.DataLoader(ValSet(val, size, clahe=args.get("clahe")), batch_size=batch, shuffle=False,
                                         **common) if val else None
    return train_dl, val_dl, val_imgs


def _build_smp(plan: dict[str, Any], devices: list[int] | None):
    """(LightningModule, train loader, val loader) of an smp run."""
    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.engine import SegModule
    from yolohand.models.shared.fit import check_run
    from yolohand.models.shared.network import build_model, load_pretrained

    args, spec = plan["args"], plan["spec"]
    train_dl, val_dl, val_imgs = _loaders(plan, devices is not None)
    model = build_model(spec.arch, spec.encoder, in_channels=1, encoder_weights=args["encoder_weights"])
    needs = check_run(plan, model, 1, len(train_dl.dataset), devices)
    if args["pretrained"]:
        load_pretrained(model, args["pretrained"], spec.family, spec.arch, spec.encoder)
    meta = checkpoint_meta(spec.family, spec.arch, spec.encoder, args["imgsz"], loss=args["loss"], multiple=needs.multiple,
                           **technique_meta(args))
    return SegModule(model, args, meta, _scorer(val_imgs)), train_dl, val_dl


def train_fold(fold: int = 0, *, spec: ModelSpec, device: str | None = None, progress: bool = True,
               **kwargs: Any) -> TrainResult:
    """Train ``spec`` (family smp) on fold ``fold``; kwargs: yolo, runs, name, config, force, resume,
    and run arguments (``imgsz``, ``epochs``, ``batch``, ``workers``, ``threads``, ...; None = not given)."""
    kwargs.pop("time", None)  # ultralytics' hour budget: not a run argument here
    plan = plan_run(fold, spec, **kwargs)
    return run_plan(plan, _build_smp, device=device, progress=progress)
