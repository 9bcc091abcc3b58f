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
from typing import Any

from yolohand.errors import YolohandError
from yolohand.models.shared.checkpoint import ModelSpec, read_checkpoint
from yolohand.models.shared.devices import cpu_processes, devices_of, is_worker
from yolohand.models.shared.runs import TrainResult, check_run_place, fold_yaml, read_rows, run_folder, run_inputs

__all__ = ["plan_run", "run_plan"]


def plan_run(fold: int, spec: ModelSpec, yolo=None, runs=None, name: str = "train", config=None,
             force: bool = False, resume: bool = False, **flags: Any) -> dict[str, Any]:
    """Every decision of a run, before any work: arguments, paths, lists. Pure apart from reading files."""
    from yolohand.models.shared.config import merge_args, read_config

    data = fold_yaml(yolo, fold)
    cfg = read_config(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    args = merge_args(cfg, flags, spec.family)
    run_dir = run_folder(runs, name, fold)
    last = run_dir / "weights" / "last.pt"
    # A DDP worker re-runs the command after rank 0 has set the run folder up: it must not judge it.
    # Rank 0 checks every input against the run folder before anything is built or deleted.
    replace = False if is_worker() else check_run_place(run_dir, run_inputs(yolo, config, None, args), force, resume)
    lists = {s: data.parent / f"fold{fold}_{s}.txt" for s in ("train", "val")}
    for s, p in lists.items():
        if not p.is_file():
            raise YolohandError(f"{p}: the fold's {s} list is missing; re-run `yolohand convert`")
    return {"args": args, "spec": spec, "fold": fold, "run_dir": run_dir, "last": last if resume else None, "replace": replace,
            "lists": lists, "cache": data.parent.parent / "cache" / f"samples{args['imgsz']}"}


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
        trainer, interrupted = make_trainer(args, run_dir, devices, progress, cpu_processes=processes)
        try:
            trainer.fit(module, train_dl, val_dl, ckpt_path=str(plan["last"]) if plan["last"] else None)
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
    return _result(plan, trainer)


def _check_relaunchable(device: str | None) -> None:
    """Lightning's DDP launcher starts the other processes by re-running this program's command line
    (``sys.argv``): from a notebook, an interactive shell or pytest that would not train. One line instead."""
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0 == "-c" or any(k in argv0 for k in ("ipykernel", "pytest", "jupyter")):
        raise YolohandError(f"--device {device}: several training processes re-run this program's command line, and "
                            f"{argv0 or 'an interactive session'} cannot be re-run; use `yolohand train ... --device "
                            f"{device}` (or a script) from a shell")


def _result(plan: dict[str, Any], trainer) -> TrainResult:
    best = plan["run_dir"] / "weights" / "best.pt"
    if not best.is_file():
        raise YolohandError(f"{plan['run_dir']}: training ended without weights/best.pt (see the log above)")
    cb = trainer.checkpoint_callback
    score = cb.best_model_score if cb is not None else None
    dice = float(score) if score is not None else math.nan
    rows = read_rows(plan["run_dir"] / "results.csv")
    best_epoch = int((read_checkpoint(best) or {}).get("yolohand", {}).get("epoch", -1))  # saved with the weights
    return TrainResult(best=best.resolve(), dice=dice, run_dir=plan["run_dir"].resolve(), fold=plan["fold"],
                       best_epoch=best_epoch, epochs=len(rows))
