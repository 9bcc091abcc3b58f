"""`yolohand convert`: competition polygons -> ultralytics YOLO-seg labels and K-fold data YAMLs."""

from __future__ import annotations

from pathlib import Path

import typer


def convert(
    root: Path = typer.Option(None, "--root", help="Competition data root (default: datasets/handbone or yolohand.yaml)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: datasets/yolo or yolohand.yaml)."),
    folds: int = typer.Option(5, "--folds", min=2, help="Number of folds, grouped by patient ID."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fold assignment."),
    imgsz: int = typer.Option(None, "--imgsz", min=32, help="Also cache images resized to this long side (.npy); train with the same imgsz."),
    exclude: list[str] = typer.Option(None, "--exclude", metavar="ID|IMAGE", help="IDs or image names to leave out (repeatable, or comma-separated)."),
    drop_known_bad: bool = typer.Option(False, "--drop-known-bad", help="Leave out the known mislabelled images (ID058, ID089; see docs)."),
    workers: int = typer.Option(None, "--workers", min=0, help="Worker processes (default: CPU count, at most 8)."),
    force: bool = typer.Option(False, "--force", help="Replace the output folder if it is a previous convert output."),
) -> None:
    """Convert the train split into YOLO-seg labels, K-fold lists and data YAMLs."""
    from yolohand.config import default_path
    from yolohand.data.convert import convert_dataset

    report = convert_dataset(
        default_path("root", root),
        default_path("yolo", out),
        folds=folds,
        seed=seed,
        imgsz=imgsz,
        exclude=exclude or (),
        drop_known_bad=drop_known_bad,
        workers=workers,
        force=force,
    )
    for line in report.lines():
        typer.echo(line)
