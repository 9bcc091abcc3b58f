"""`yolohand evaluate`: the competition Dice of a submission CSV or probability-map folder."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    pred: Path = typer.Argument(..., help="Submission CSV, or folder of probability maps (.npz, thresholded at 0.5)."),
    gt: Path = typer.Option(None, "--gt", help="Dataset root in the competition layout [default: configured root].",
                            show_default=False),
    split: str = typer.Option(None, "--split", help="train or test [default: look each image up in train, then test].",
                              show_default=False),
    fold: int = typer.Option(None, "--fold", help="Score only fold k's validation images (folds.json from convert).",
                             show_default=False),
    yolo: Path = typer.Option(None, "--yolo", help="Converted dataset holding folds.json [default: configured yolo].",
                              show_default=False),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here.", show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
) -> None:
    """Per-class Dice and mDice of PRED against the ground-truth annotations."""
    import time

    from yolohand.config import default_path
    from yolohand.core.atomic import atomic_file, check_writable
    from yolohand.results.evaluate import evaluate as run_evaluate
    from yolohand.results.evaluate import format_table, to_json

    t0 = time.perf_counter()
    if json_out is not None:
        check_writable(json_out, force)  # fail before the (long) scoring, not after
    result = run_evaluate(pred, default_path("root", gt), split=split, fold=fold, yolo_dir=yolo)
    typer.echo(format_table(result))
    if json_out is not None:
        with atomic_file(json_out, force) as fh:
            fh.write(to_json(result) + "\n")
    problems = f", {len(result.problems)} annotation problem(s) (see --json)" if result.problems else ""
    typer.echo(
        f"scored {result.n_images} of {result.n_gt_images} images: mDice {result.mean:.4f}"
        f"{problems} in {time.perf_counter() - t0:.1f} s" + (f"; JSON in {json_out}" if json_out else "")
    )
