"""The run layout every family shares: fold YAMLs and lists written by ``yolohand convert``,
the run-folder rule (--force/--resume), ``results.csv`` rows, and :class:`TrainResult`.

Every family writes ``<runs>/<name>/fold<k>/`` with ``weights/best.pt``, ``weights/last.pt`` and
``results.csv`` holding the validation Dice column (:data:`yolohand.defaults.DICE_KEY`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from yolohand.config import default_path
from yolohand.errors import YolohandError

__all__ = ["TrainResult", "fold_yaml", "list_folds", "read_list", "check_run_dir", "read_rows"]


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


def read_list(path: Path) -> list[Path]:
    """Image paths of a fold list (``folds/fold<k>_{train,val}.txt``, one absolute path a line)."""
    return [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]


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


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (none when it does not exist)."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
