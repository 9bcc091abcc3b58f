"""`yolohand train`: train a YOLO-seg model on one fold or on every fold (best.pt chosen by Dice)."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import as_param, check_device, parse_fold


def train(
    fold: str = typer.Option("0", "--fold", help="Fold to train (its val list is the validation set), 'all', or 'none': "
                             "every training image, no validation, best.pt = the last epoch (smp/refine, after model selection)."),
    model: str = typer.Option(
        None, "--model",
        help="yolo: an ultralytics seg yaml (yolo11n-seg.yaml ... yolo26x-seg.yaml) or a local .pt to fine-tune; "
        "smp:ARCH:ENCODER (e.g. smp:UnetPlusPlus:resnet34); refine:ARCH:ENCODER (per-bone refiner) [default: yolo11n-seg.yaml].",
    ),
    imgsz: int = typer.Option(None, "--imgsz", min=32, help="Network input size [default: the fold YAML's cache size from `convert --imgsz`, else 1024]."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs [default: 100]."),
    batch: int = typer.Option(None, "--batch", min=1, help="Batch size (total over GPUs or CPU processes) [default: YOLO 16, smp 2, refine 8]."),
    device: str = typer.Option(None, "--device", parser=as_param(check_device),
                               help="cpu, 0, or 0,1 for multi-GPU DDP; cpu:N: N CPU processes (DDP over gloo; smp/refine) "
                               "[default: GPU 0 if any, else cpu]."),
    workers: int = typer.Option(None, "--workers", min=0, help="Data-loading workers per GPU (ultralytics uses 0 on CPU) [default: 8]."),
    hours: float = typer.Option(None, "--time", min=0.0, help="Training time budget in hours (overrides --epochs; ultralytics fits the schedule to it)."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads on CPU [default: every core]; fewer can be faster when the cores are busy."),
    name: str = typer.Option("train", "--name", help="Run name: outputs go to <runs>/<name>/fold<k>/."),
    resume: bool = typer.Option(False, "--resume", help="Continue <runs>/<name>/fold<k>/weights/last.pt."),
    config: Path = typer.Option(None, "--config", help="YAML of any ultralytics train arguments (flags override it)."),
    yolo: Path = typer.Option(None, "--yolo", help="Converted dataset folder (default: datasets/yolo or yolohand.yaml)."),
    runs: Path = typer.Option(None, "--runs", help="Runs folder (default: runs or yolohand.yaml)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    window: int = typer.Option(None, "--window", min=0, show_default=False,
                               help="smp: train on random WxW windows of the image (at --imgsz, default: full resolution) "
                               "and validate/predict by sliding windows; stored in the checkpoint."),
    stride: int = typer.Option(None, "--stride", min=1, show_default=False,
                               help="smp: the sliding-window stride stored as predict's default [default: window / 2]."),
    clahe: str = typer.Option(None, "--clahe", metavar="CLIP[,TILE]", show_default=False,
                              help="CLAHE before the network, in training and (from the checkpoint) prediction, e.g. 2.0 "
                              "or 2.0,8 (tiles per side); none: off [default: off]."),
    gamma: str = typer.Option(None, "--gamma", metavar="LO,HI", show_default=False,
                              help="Gamma augmentation range while training, e.g. 0.7,1.5 [default: off]."),
    swa: int = typer.Option(None, "--swa", min=0, show_default=False,
                            help="smp/refine: best.pt = the average of the last N epochs' weights, BatchNorm re-estimated."),
) -> None:
    """Train a model (YOLO, smp or refine family) on <yolo>/folds/fold<k>.yaml; best.pt is the epoch with the best validation Dice."""
    from yolohand.models.shared.devices import is_worker
    from yolohand.models.train import format_results, list_folds, train_fold

    k = parse_fold(fold)
    folds = list_folds(yolo) if k is None else [k]
    kwargs = dict(yolo=yolo, runs=runs, name=name, model=model, config=config, device=device, force=force,
                  resume=resume, imgsz=imgsz, epochs=epochs, batch=batch, workers=workers, time=hours, threads=threads,
                  window=window, stride=stride, clahe=clahe, gamma=gamma, swa_epochs=swa)
    report = not is_worker()  # a DDP worker process trains its shard; rank 0 reports
    results = []
    for i in folds:
        result = train_fold(i, **kwargs)
        results.append(result)
        if report and len(folds) > 1:
            typer.echo(f"fold {i} done: Dice {result.dice:.4f}, {result.best}")
    if not report:
        return
    if len(results) > 1:
        typer.echo("\n" + format_results(results))  # ends with the mean over folds
    elif k == "none":
        r = results[0]
        typer.echo(f"best.pt: {r.best} (every training image, no validation; epoch {r.best_epoch} of {r.epochs})")
    else:
        r = results[0]
        typer.echo(f"best.pt: {r.best} (validation Dice {r.dice:.4f}, epoch {r.best_epoch} of {r.epochs})")
