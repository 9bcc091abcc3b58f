"""The run plan of the semantic families (smp, refine): every decision before any work
(:func:`plan_run`), then training one fold with a family's ``build`` (:func:`run_plan`).

Same run layout as YOLO (``<runs>/<name>/fold<k>/weights/{best,last}.pt``, ``results.csv`` with
``metrics/dice(M)``), same folds (the fold lists written by ``yolohand convert``), same
``--config`` rules (:mod:`.config`).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolohand.errors import YolohandError
from yolohand.models.shared.checkpoint import ModelSpec, read_checkpoint, read_resumable
from yolohand.models.shared.devices import cpu_processes, devices_of, is_worker
from yolohand.models.shared.runs import TrainResult, check_run_place, fold_yaml, list_folds, read_rows, run_folder, run_inputs

__all__ = ["NO_FOLD", "plan_run", "run_plan", "plan_images"]


#: ``--fold none``: train on every training image (no validation), after model selection.
NO_FOLD = "none"


def plan_images(plan: dict[str, Any], split: str) -> list[Path]:
    """The image paths of a plan's ``"train"`` or ``"val"`` split (each listed image once, in list order);
    YolohandError when the training images (or a fold's validation images) are none."""
    from yolohand.models.shared.runs import read_list

    files = plan["lists"].get(split) or []
    images = list(dict.fromkeys(p for f in files for p in read_list(f)))
    if not images and (split == "train" or plan["fold"] != NO_FOLD):
        where = files[0].parent if files else "the fold lists"
        raise YolohandError(f"{where}: fold {plan['fold']} has an empty {split} list; re-run `yolohand convert`")
    return images


def _full_resolution(images: list[Path]) -> int:
    """The largest side of ``images`` (PNG headers only), rounded up to 32 (a side every encoder takes):
    a windowed run's plane when no imgsz is given."""
    from yolohand.data.layout import image_size

    return -(-max(max(image_size(p)) for p in images) // 32) * 32


def plan_run(fold: int | str, spec: ModelSpec, yolo=None, runs=None, name: str = "train", config=None,
             force: bool = False, resume: bool = False, **flags: Any) -> dict[str, Any]:
    """Every decision of a run, before any work: arguments, paths, lists. Pure apart from reading files.

    ``fold`` :data:`NO_FOLD`: every image of every fold's validation list trains (each once), nothing
    validates, the run folder is ``<runs>/<name>/full``. A ``window`` without an ``imgsz`` (flag or
    config) trains on the full resolution: the largest side of the training images.
    """
    from yolohand.models.shared.config import merge_args, read_config

    whole = fold == NO_FOLD
    folds = list_folds(yolo) if whole else [fold]
    data = fold_yaml(yolo, folds[0])
    cfg = read_config(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    args = merge_args(cfg, flags, spec.family)
    if whole and args["patience"]:
        raise YolohandError(f"--fold none trains without validation: patience {args['patience']} (early stopping) needs "
                            "one; set patience: 0")
    run_dir = run_folder(runs, name, folds[0])
    if whole:
        run_dir = run_dir.with_name("full")
    last = run_dir / "weights" / "last.pt"
    # A DDP worker re-runs the command after rank 0 has set the run folder up: it must not judge it.
    # Rank 0 checks every input against the run folder before anything is built or deleted.
    replace = False if is_worker() else check_run_place(run_dir, run_inputs(yolo, config, None, args), force, resume)
    if resume and not is_worker():
        read_resumable(last)  # a truncated or foreign last.pt: one line naming it, before Lightning reads it
    lists = ({"train": [data.parent / f"fold{k}_val.txt" for k in folds], "val": []} if whole else
             {s: [data.parent / f"fold{fold}_{s}.txt"] for s in ("train", "val")})
    for s, paths in lists.items():
        for p in paths:
            if not p.is_file():
                raise YolohandError(f"{p}: the fold's {s} list is missing; re-run `yolohand convert`")
    plan = {"args": args, "spec": spec, "fold": fold, "run_dir": run_dir, "last": last if resume else None,
            "replace": replace, "lists": lists, "validate": not whole}
    if args.get("window") and flags.get("imgsz") is None and "imgsz" not in cfg and spec.family == "smp":
        args["imgsz"] = _full_resolution(plan_images(plan, "train"))
    if args.get("window") and int(args["window"]) > int(args["imgsz"]):
        raise YolohandError(f"--window {args['window']}: larger than the plane the windows are cut from (--imgsz "
                            f"{args['imgsz']}); use --imgsz {args['window']} or more, or a smaller window")
    return dict(plan, cache=data.parent.parent / "cache" / f"samples{args['imgsz']}")


def run_plan(plan: dict[str, Any], build: Callable[[dict[str, Any], list[int] | None], tuple], device: str | None = None,
             progress: bool = True) -> TrainResult:
    """Build module and data for ``plan`` with ``build(plan, devices)``, train, return best.pt and its Dice.

    Shared by the semantic families: CPU threads, run folder, channels-last on CUDA, Ctrl-C.
    """
    import torch

    from yolohand.models.shared.engine import make_trainer

    args, run_dir = plan["args"], plan["run_dir"]
    devices, processes = devices_of(device), cpu_processes(device)
    world = len(devices) if devices else processes
    if args["batch"] % world:
        raise YolohandError(f"--batch {args['batch']}: the batch is the total over {world} processes; use a multiple of {world}")
    if world > 1:
        _check_relaunchable(device)
    plan = dict(plan, batch=args["batch"] // world, world=world)  # batch: per process
    previous, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    if devices is None:  # N CPU processes share the cores
        threads = int(args["threads"] or max(1, (os.cpu_count() or 1) // processes))
        torch.set_num_threads(threads)
        if processes > 1:  # Lightning's launcher sets every rank's threads from OMP_NUM_THREADS when it is set
            os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        torch.manual_seed(args["seed"])
        module, train_dl, val_dl = build(plan, devices)  # refusals (fit checks) before the run folder is touched
        if plan["replace"]:
            shutil.rmtree(run_dir)  # a previous run, checked in plan_run (never in a DDP worker)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        if devices is not None and (args["channels_last"] is None or args["channels_last"]):
            module.model = module.model.to(memory_format=torch.channels_last)
        trainer, interrupted = make_trainer(args, run_dir, devices, progress, cpu_processes=processes,
                                            validate=plan.get("validate", True))
        try:
            trainer.fit(module, train_dl, val_dl, ckpt_path=str(plan["last"]) if plan["last"] else None)
            averaged = _finish_average(trainer, module, train_dl, val_dl, run_dir)
        except SystemExit:
            if interrupted.seen:  # Lightning's graceful Ctrl-C: last.pt stays for --resume
                raise KeyboardInterrupt from None
            raise
    finally:
        torch.set_num_threads(previous)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
    return _result(plan, trainer, averaged)


def _finish_average(trainer, module, train_dl, val_dl, run_dir: Path) -> float | None:
    """``swa_epochs``: best.pt becomes the weights' average (:func:`~yolohand.models.shared.engine.finish_average`),
    with one line saying how it compares; returns its Dice (None when not averaging or not validated)."""
    import sys

    from yolohand.models.shared.engine import WeightAverage, finish_average

    averager = next((c for c in trainer.callbacks if isinstance(c, WeightAverage)), None)
    if averager is None or getattr(trainer, "interrupted", False):
        return None
    cb = trainer.checkpoint_callback
    single = cb.best_model_score if cb is not None and trainer.val_dataloaders else None
    dice = finish_average(trainer, module, averager, train_dl, val_dl, run_dir / "weights" / "best.pt")
    if trainer.global_rank == 0 and averager.count:
        span = f"epochs {averager.first}-{averager.first + averager.count - 1}"
        vs = (f": validation Dice {dice:.4f} (best single epoch {float(single):.4f}, kept as weights/best_epoch.pt)"
              if dice is not None and single is not None else " (no validation)")
        print(f"yolohand: best.pt is the average of {span}, BatchNorm re-estimated{vs}", file=sys.stderr)
    return dice


def _check_relaunchable(device: str | None) -> None:
    """Lightning's DDP launcher starts the other processes by re-running this program's command line
    (``sys.argv``): from a notebook, an interactive shell or pytest that would not train. One line instead."""
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0 == "-c" or any(k in argv0 for k in ("ipykernel", "pytest", "jupyter")):
        raise YolohandError(f"--device {device}: several training processes re-run this program's command line, and "
                            f"{argv0 or 'an interactive session'} cannot be re-run; use `yolohand train ... --device "
                            f"{device}` (or a script) from a shell")


def _result(plan: dict[str, Any], trainer, averaged: float | None = None) -> TrainResult:
    best = plan["run_dir"] / "weights" / "best.pt"
    if not best.is_file():
        raise YolohandError(f"{plan['run_dir']}: training ended without weights/best.pt (see the log above)")
    cb = trainer.checkpoint_callback
    score = cb.best_model_score if cb is not None and plan.get("validate", True) else None
    dice = float(averaged if averaged is not None else score) if (averaged is not None or score is not None) else math.nan
    rows = read_rows(plan["run_dir"] / "results.csv")
    best_epoch = int((read_checkpoint(best) or {}).get("yolohand", {}).get("epoch", -1))  # saved with the weights
    return TrainResult(best=best.resolve(), dice=dice, run_dir=plan["run_dir"].resolve(),
                       fold=plan["fold"] if isinstance(plan["fold"], int) else -1,
                       best_epoch=best_epoch, epochs=len(rows))
