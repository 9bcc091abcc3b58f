"""Training, the same for every family: folds, the run layout, results, and the dispatch by family.

``train_fold(0, model="yolo11n-seg.yaml")`` trains YOLO (:mod:`yolohand.models.yolo.train`),
``model="smp:UnetPlusPlus:resnet34"`` a segmentation_models_pytorch model
(:mod:`yolohand.models.smp.train`), ``model="refine:Unet:resnet18"`` the per-bone refiner
(:mod:`yolohand.models.refine.train`). Every family writes ``<runs>/<name>/fold<k>/`` with
``weights/best.pt``, ``weights/last.pt`` and ``results.csv`` holding the validation Dice column
(:data:`yolohand.defaults.DICE_KEY`); best.pt is the epoch with the best validation Dice.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolohand.config import default_path
from yolohand.errors import YolohandError

__all__ = ["TrainResult", "fold_yaml", "list_folds", "check_run_dir", "train_fold", "train_folds", "format_results"]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one fold's training."""

    best: Path  # absolute path of weights/best.pt
    dice: float  # validation Dice of best.pt
    run_dir: Path  # <runs>/<name>/fold<k>
    fold: int = -1
    best_epoch: int = -1  # 1-based epoch of best.pt (-1 when unknown)
    epochs: int = 0  # epochs run


def fold_yaml(yolo: str | os.PathLike | None, fold: int) -> Path:
    """``<yolo>/folds/fold<k>.yaml``; YolohandError telling to run ``yolohand convert`` when missing."""
    root = default_path("yolo", yolo)
    path = root / "folds" / f"fold{fold}.yaml"
    if not path.is_file():
        hint = "" if (root / "folds").is_dir() else " (no folds/ folder there)"
        raise YolohandError(
            f"{path}: fold {fold} not found{hint}; run `yolohand convert --out {root}` first "
            f"(or pass --yolo with the folder convert wrote)"
        )
    return path


def list_folds(yolo: str | os.PathLike | None) -> list[int]:
    """Fold indices with a ``fold<k>.yaml`` under ``<yolo>/folds``, sorted; error when there is none."""
    root = default_path("yolo", yolo)
    names = (re.fullmatch(r"fold(\d+)\.yaml", p.name) for p in (root / "folds").glob("fold*.yaml"))
    folds = sorted(int(m.group(1)) for m in names if m)
    if not folds:
        raise YolohandError(f"{root / 'folds'}: no fold<k>.yaml found; run `yolohand convert --out {root}` first")
    return folds


def check_run_dir(run_dir: Path, force: bool, resume: bool) -> bool:
    """Check a fold's run folder against --force/--resume, for every family (YolohandError);
    True when an existing folder is to be replaced.

    --resume needs ``weights/last.pt``. A folder that is not plainly a training run is never
    replaced, even with --force; a run interrupted before its first checkpoint (no last.pt) holds
    nothing to resume, so a rerun replaces it without --force.
    """
    last = run_dir / "weights" / "last.pt"
    if resume:
        if not last.is_file():
            raise YolohandError(f"{last}: nothing to resume (no last.pt in {run_dir})")
        return False
    if not run_dir.exists():
        return False
    from yolohand.core.paths import RUN, is_previous_output

    if not is_previous_output(run_dir, RUN):
        raise YolohandError(f"{run_dir}: exists and is not a training run; not replaced, even with --force")
    if last.is_file() and not force:
        raise YolohandError(f"{run_dir}: run already exists (pass --force to replace it, or --resume to continue it)")
    return True


def train_fold(fold: int = 0, *, model: str | os.PathLike | None = None, **kwargs: Any) -> TrainResult:
    """Train one fold with the family ``model`` names (see the module docstring); kwargs go to that family."""
    from yolohand.models.family import parse_model

    spec = parse_model(model)
    if spec.family == "smp":
        from yolohand.models.smp.train import train_fold as train_smp

        return train_smp(fold, spec=spec, **kwargs)
    if spec.family == "refine":
        from yolohand.models.refine.train import train_fold as train_refine

        return train_refine(fold, spec=spec, **kwargs)
    from yolohand.models.yolo.train import train_fold as train_yolo

    return train_yolo(fold, model=model, **kwargs)


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
