"""The run layout every family shares: fold YAMLs and lists written by ``yolohand convert``,
the run-folder rule (--force/--resume), ``results.csv`` rows, and :class:`TrainResult`.

Every family writes ``<runs>/<name>/fold<k>/`` with ``weights/best.pt``, ``weights/last.pt`` and
``results.csv`` holding the validation Dice column (:data:`yolohand.defaults.DICE_KEY`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from yolohand.config import default_path
from yolohand.errors import YolohandError

__all__ = ["TrainResult", "fold_yaml", "list_folds", "read_list", "check_run_dir", "read_rows", "run_folder",
           "check_run_name", "run_inputs", "check_run_place", "PATH_ARGS"]

#: Run arguments (``--config`` keys of either family) that name a file the run reads.
PATH_ARGS = ("model", "pretrained", "detector", "encoder_weights", "priors")


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


def check_run_name(name: str) -> str:
    """``name`` when it is a plain folder name (``--name``); YolohandError for a path, ``..`` or nothing:
    a run name is a name, so a run never escapes ``--runs``."""
    text = str(name)
    if text.strip() in ("", ".", "..") or "/" in text or "\\" in text or os.sep in text or "\0" in text:
        raise YolohandError(f"--name {text!r}: a run name is a plain folder name (no '/', '..' or absolute path); "
                            "use --runs to choose where runs go")
    return text


def run_folder(runs: str | os.PathLike | None, name: str, fold: int) -> Path:
    """``<runs>/<name>/fold<k>``, the one folder a fold's run writes (``name`` checked by :func:`check_run_name`)."""
    return default_path("runs", runs) / check_run_name(name) / f"fold{fold}"


def run_inputs(yolo: str | os.PathLike | None, config: object = None, model: object = None,
               args: Mapping[str, object] | None = None) -> list[tuple[str, Path]]:
    """Every file or folder a training run reads, each with the words that name it in messages:
    the converted data (``--yolo``) and the raw dataset its images link to (``convert_report.json``'s
    ``root``), ``--config``, ``--model`` when it is a file, and the files the config names
    (:data:`PATH_ARGS`: ``model:``, ``pretrained:``, ``detector:``, ``encoder_weights:``, ``priors:``). Values that
    are not existing paths (``imagenet``, a bundled ``yolo11n-seg.yaml``, ``true``) are left out."""
    root = default_path("yolo", yolo)
    found: list[tuple[str, Path]] = [("--yolo", root)]
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        raw = json.loads((root / "convert_report.json").read_text(encoding="utf-8")).get("root")
        if raw:
            found.append(("the raw dataset", Path(raw)))
    where = str(config) if isinstance(config, (str, os.PathLike)) else "the run arguments"
    if isinstance(config, (str, os.PathLike)):
        found.append(("--config", Path(config)))
    if isinstance(model, (str, os.PathLike)) and str(model):
        found.append(("--model", Path(model)))
    for key in PATH_ARGS:
        value = (args or {}).get(key)
        if isinstance(value, (str, os.PathLike)) and str(value) and not (key == "model" and model is not None):
            found.append((f"{key} (in {where})", Path(value)))
    return [(what, path) for what, path in found if os.path.lexists(Path(path).expanduser())]


def check_run_place(run_dir: Path, inputs: Iterable[tuple[str, Path]], force: bool, resume: bool) -> bool:
    """:func:`check_run_dir`, and the run's inputs (:func:`run_inputs`) against the run folder:
    True when an existing folder is to be replaced. Called before any model is built.

    A run folder inside an input (``--runs datasets/yolo/runs``) is refused; so is replacing a run
    folder that holds an input (``--model runs/y/fold0/weights/best.pt --name y --force``: the
    checkpoint would be deleted before it is read). Nothing is moved or deleted here.
    """
    from yolohand.core.paths import resolved, write_location

    replace = check_run_dir(run_dir, force, resume)
    place = resolved(run_dir)
    for what, path in inputs:
        spots = {write_location(path), resolved(path)}  # the name given and, for a link, what it points to
        if any(place == spot or place.is_relative_to(spot) for spot in spots):
            raise YolohandError(f"{run_dir}: the run folder lies inside {what} {path}; a run never writes into its "
                                "inputs: choose --runs outside it")
        if replace and any(spot.is_relative_to(place) for spot in spots):
            instead = "convert the data again outside it" if what == "--yolo" else f"copy it out of {run_dir} first"
            raise YolohandError(f"{path}: {what} lies inside the run folder {run_dir}, which this run replaces "
                                f"(--force); {instead}, or train under another --name")
    return replace


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (none when it does not exist)."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
