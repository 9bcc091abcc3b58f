"""Train a segmentation_models_pytorch model on one fold: ``--model smp:ARCH:ENCODER``.

Same run layout as YOLO (``<runs>/<name>/fold<k>/weights/{best,last}.pt``, ``results.csv`` with
``metrics/dice(M)``), same folds (the fold lists written by ``yolohand convert``), same
``--config`` rules. Validation Dice is the competition's: logits upsampled bilinearly to the
original image size, sigmoid, ``> 0.5``, Dice per image and class against the label polygons
filled at full size, mean over images then classes; best.pt is the epoch with the highest.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from yolohand.config import default_path
from yolohand.errors import YolohandError
from yolohand.models.family import ModelSpec
from yolohand.models.train import TrainResult, check_run_dir, fold_yaml

__all__ = ["devices_of", "plan_run", "run_plan", "train_fold", "full_size_dice", "read_rows"]


def devices_of(device: str | None) -> list[int] | None:
    """None for the CPU, else CUDA indices; YolohandError for a device that is not there."""
    import torch

    text = "" if device is None else str(device).strip().lower().removeprefix("cuda:")
    if text in ("", "auto"):
        return [0] if torch.cuda.is_available() else None
    if text == "cpu":
        return None
    try:
        ids = [int(t) for t in text.split(",")]
    except ValueError:
        raise YolohandError(f"--device {device!r}: expected cpu, a GPU index (0) or a list (0,1)") from None
    if not torch.cuda.is_available() or max(ids) >= torch.cuda.device_count() or min(ids) < 0:
        raise YolohandError(f"--device {device!r}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return ids


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


def plan_run(fold: int, spec: ModelSpec, yolo=None, runs=None, name: str = "train", config=None,
             force: bool = False, resume: bool = False, **flags: Any) -> dict[str, Any]:
    """Every decision of a run, before any work: arguments, paths, lists. Pure apart from reading files."""
    from yolohand.models.smp.config import merge_args, read_config

    data = fold_yaml(yolo, fold)
    cfg = read_config(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    args = merge_args(cfg, flags)
    run_dir = default_path("runs", runs) / name / f"fold{fold}"
    last = run_dir / "weights" / "last.pt"
    replace = check_run_dir(run_dir, force, resume)
    lists = {s: data.parent / f"fold{fold}_{s}.txt" for s in ("train", "val")}
    for s, p in lists.items():
        if not p.is_file():
            raise YolohandError(f"{p}: the fold's {s} list is missing; re-run `yolohand convert`")
    return {"args": args, "spec": spec, "fold": fold, "run_dir": run_dir, "last": last if resume else None, "replace": replace,
            "lists": lists, "cache": data.parent.parent / "cache" / f"samples{args['imgsz']}"}


def _loaders(plan: dict[str, Any], gpu: bool):
    import torch

    from yolohand.data.samples import build_sample_cache
    from yolohand.models.smp.data import TrainSet, ValSet, augmentations, read_list, seed_worker

    args, size = plan["args"], plan["args"]["imgsz"]
    train_imgs, val_imgs = (read_list(plan["lists"][s]) for s in ("train", "val"))
    if not train_imgs or not val_imgs:
        raise YolohandError(f"{plan['lists']['train'].parent}: fold {plan['fold']} has an empty train or val list")
    train = build_sample_cache(train_imgs, plan["cache"], size)
    val = build_sample_cache(val_imgs, plan["cache"], size)
    common = dict(num_workers=args["workers"], pin_memory=gpu, persistent_workers=args["workers"] > 0)
    gen = torch.Generator().manual_seed(args["seed"])
    train_dl = torch.utils.data.DataLoader(TrainSet(train, size, augmentations(args, args["seed"])), batch_size=args["batch"],
                                           shuffle=True, drop_last=len(train) > args["batch"], generator=gen,
                                           worker_init_fn=seed_worker, **common)
    val_dl = torch.utils.data.DataLoader(ValSet(val, size), batch_size=args["batch"], shuffle=False, **common)
    return train_dl, val_dl, val_imgs


def _build_smp(plan: dict[str, Any], devices: list[int] | None):
    """(LightningModule, train loader, val loader) of an smp run."""
    from yolohand.models.smp.engine import SegModule
    from yolohand.models.smp.model import build_model, checkpoint_meta, load_pretrained

    args, spec = plan["args"], plan["spec"]
    train_dl, val_dl, val_imgs = _loaders(plan, devices is not None)
    model = build_model(spec.arch, spec.encoder, in_channels=1, encoder_weights=args["encoder_weights"])
    if args["pretrained"]:
        load_pretrained(model, args["pretrained"], spec.family, spec.arch, spec.encoder)
    meta = checkpoint_meta(spec.family, spec.arch, spec.encoder, args["imgsz"], loss=args["loss"])
    return SegModule(model, args, meta, _scorer(val_imgs)), train_dl, val_dl


def run_plan(plan: dict[str, Any], device: str | None = None, progress: bool = True, build=_build_smp) -> TrainResult:
    """Build module and data for ``plan`` with ``build(plan, devices)``, train, return best.pt and its Dice.

    Shared by the semantic families: CPU threads, run folder, channels-last on CUDA, Ctrl-C.
    """
    import torch

    from yolohand.models.smp.engine import make_trainer

    args, run_dir = plan["args"], plan["run_dir"]
    devices = devices_of(device)
    previous = torch.get_num_threads()
    if devices is None:
        torch.set_num_threads(int(args["threads"] or os.cpu_count() or 1))
    try:
        torch.manual_seed(args["seed"])
        if plan["replace"]:
            shutil.rmtree(run_dir)  # a previous run, checked in plan_run
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        module, train_dl, val_dl = build(plan, devices)
        if devices is not None and (args["channels_last"] is None or args["channels_last"]):
            module.model = module.model.to(memory_format=torch.channels_last)
        trainer, interrupted = make_trainer(args, run_dir, devices, progress)
        try:
            trainer.fit(module, train_dl, val_dl, ckpt_path=str(plan["last"]) if plan["last"] else None)
        except SystemExit:
            if interrupted.seen:  # Lightning's graceful Ctrl-C: last.pt stays for --resume
                raise KeyboardInterrupt from None
            raise
    finally:
        torch.set_num_threads(previous)
    return _result(plan, trainer)


def _result(plan: dict[str, Any], trainer) -> TrainResult:
    best = plan["run_dir"] / "weights" / "best.pt"
    if not best.is_file():
        raise YolohandError(f"{plan['run_dir']}: training ended without weights/best.pt (see the log above)")
    cb = trainer.checkpoint_callback
    score = cb.best_model_score if cb is not None else None
    dice = float(score) if score is not None else math.nan
    from yolohand.models.family import read_checkpoint

    rows = read_rows(plan["run_dir"] / "results.csv")
    best_epoch = int((read_checkpoint(best) or {}).get("yolohand", {}).get("epoch", -1))  # saved with the weights
    return TrainResult(best=best.resolve(), dice=dice, run_dir=plan["run_dir"].resolve(), fold=plan["fold"],
                       best_epoch=best_epoch, epochs=len(rows))


def read_rows(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def train_fold(fold: int = 0, *, spec: ModelSpec, device: str | None = None, progress: bool = True,
               **kwargs: Any) -> TrainResult:
    """Train ``spec`` (family smp) on fold ``fold``; kwargs: yolo, runs, name, config, force, resume,
    and run arguments (``imgsz``, ``epochs``, ``batch``, ``workers``, ``threads``, ...; None = not given)."""
    kwargs.pop("time", None)  # ultralytics' hour budget: not a run argument here
    plan = plan_run(fold, spec, **kwargs)
    return run_plan(plan, device=device, progress=progress)
