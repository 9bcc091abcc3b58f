"""Training, the same for every family: folds, the run layout, results, and the dispatch by family.

``train_fold(0, model="yolo11n-seg.yaml")`` trains YOLO (:mod:`yolohand.models.yolo.train`),
``model="smp:UnetPlusPlus:resnet34"`` a segmentation_models_pytorch model
(:mod:`yolohand.models.smp.train`), ``model="refine:Unet:resnet18"`` the per-bone refiner
(:mod:`yolohand.models.refine.train`). Every family writes ``<runs>/<name>/fold<k>/`` with
``weights/best.pt``, ``weights/last.pt`` and ``results.csv`` holding the validation Dice column
(:data:`yolohand.defaults.DICE_KEY`); best.pt is the epoch with the best validation Dice. The run
layout's rules live in :mod:`yolohand.models.shared.runs` (re-exported here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yolohand.core import crops as cr
from yolohand.models.shared.runs import TrainResult, check_run_dir, fold_yaml, list_folds

__all__ = ["TrainResult", "fold_yaml", "list_folds", "check_run_dir", "train_fold", "train_folds", "format_results",
           "first_stage_crops"]


def train_fold(fold: int = 0, *, model: str | os.PathLike | None = None, **kwargs: Any) -> TrainResult:
    """Train one fold with the family ``model`` names (see the module docstring); kwargs go to that family."""
    from yolohand.models.shared.checkpoint import parse_model

    spec = parse_model(model)
    if spec.family == "smp":
        from yolohand.models.smp.train import train_fold as train_smp

        return train_smp(fold, spec=spec, **kwargs)
    if spec.family == "refine":
        from yolohand.models.shared.plan import plan_run

        # Planned (run place and inputs checked) before the refiner's module loads torch and Lightning (seconds).
        plan = plan_run(fold, spec, **{k: v for k, v in kwargs.items() if k not in ("device", "progress", "time")})
        from yolohand.models.refine.train import train_fold as train_refine

        return train_refine(fold, spec=spec, first_stage=first_stage_crops, plan=plan, **kwargs)
    from yolohand.models.yolo.train import train_fold as train_yolo

    return train_yolo(fold, model=model, **kwargs)


def first_stage_crops(images: list[Path], detector: str, device: str) -> list[cr.ClassCrops]:
    """The class crops of a first-stage checkpoint (any family) on each image, default prediction
    settings: the refiner's validation priors."""
    from yolohand.data.layout import read_image
    from yolohand.models.family import load_network
    from yolohand.models.predict import predict_crops
    from yolohand.models.shared.settings import Settings

    net = load_network(Path(detector), device=device)
    return [predict_crops([net], [read_image(p)], Settings())[0] for p in images]


def train_folds(folds: list[int] | None = None, **kwargs: Any) -> list[TrainResult]:
    """Train each fold in turn (default: every ``fold<k>.yaml``), same arguments; return each result."""
    folds = folds if folds is not None else list_folds(kwargs.get("yolo"))
    for k in folds:
        fold_yaml(kwargs.get("yolo"), k)  # fail before hours of training, not after
    return [train_fold(k, **kwargs) for k in folds]


def format_results(results: list[TrainResult]) -> str:
    """A table: fold, best Dice, best epoch, best.pt path; plus the mean Dice when several folds."""
    lines = [f"{'fold':>4}  {'Dice':>6}  {'epoch':>5}  best.pt"]
    for r in results:
        lines.append(f"{r.fold:>4}  {r.dice:6.4f}  {r.best_epoch:>5}  {r.best}")
    if len(results) > 1:
        mean = sum(r.dice for r in results) / len(results)
        lines.append(f"{'mean':>4}  {mean:6.4f}")
    return "\n".join(lines)
