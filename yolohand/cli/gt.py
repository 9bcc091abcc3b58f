"""`yolohand gt OUT.csv`: the ground truth of a split written as a submission CSV.

A command of its own (not ``convert --gt-csv``): it reads either split (convert reads only
train), needs none of convert's work, and its CSV is what ``compare``, ``evaluate`` and the app
take, e.g. ``yolohand compare gt.csv submission.csv``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import Split


def gt(
    out: Path = typer.Argument(..., help="Submission CSV to write (image_name,class,rle; 29 rows per image)."),
    root: Path = typer.Option(None, "--root", help="Dataset root [default: configured root].", show_default=False),
    split: Split = typer.Option(Split.test, "--split", help="Split whose annotations are written."),
    fold: int = typer.Option(None, "--fold", min=0, show_default=False,
                             help="Only fold k's validation images (train split; folds.json from convert)."),
    yolo: Path = typer.Option(None, "--yolo", show_default=False,
                              help="Converted dataset holding folds.json [default: configured yolo]."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is a previous submission CSV."),
) -> None:
    """Write the ground-truth masks of a split as a submission CSV (streamed, competition row order)."""
    from yolohand.config import default_path
    from yolohand.results.evaluate import write_gt_submission

    summary = write_gt_submission(default_path("root", root), out, split=split.value, fold=fold, yolo_dir=yolo,
                                  force=force)
    where = f"{summary.split}" + (f", fold {summary.fold}" if summary.fold is not None else "")
    problems = f"; {len(summary.problems)} annotation problem(s), e.g. {summary.problems[0]}" if summary.problems else ""
    typer.echo(f"wrote the ground truth of {summary.images} images ({where}) to {summary.out}{problems}")
