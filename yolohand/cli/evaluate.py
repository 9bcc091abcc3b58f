"""`yolohand evaluate`: the competition Dice of a submission CSV or probability-map folder."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import Split


def evaluate(
    pred: Path = typer.Argument(..., help="Submission CSV, or folder of probability maps (.npz, thresholded at 0.5)."),
    gt: Path = typer.Option(None, "--gt", help="Dataset root in the competition layout [default: configured root].",
                            show_default=False),
    split: Split = typer.Option(None, "--split", help="train or test [default: look each image up in train, then test].",
                                show_default=False),
    fold: int = typer.Option(None, "--fold", min=0, help="Score only fold k's validation images (folds.json from convert).",
                             show_default=False),
    yolo: Path = typer.Option(None, "--yolo", help="Converted dataset holding folds.json [default: configured yolo].",
                              show_default=False),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here.", show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file (a previous result)."),
) -> None:
    """Per-class Dice and mDice of PRED against the ground-truth annotations."""
    import time

    from yolohand.config import default_path
    from yolohand.core.atomic import atomic_file
    from yolohand.core.paths import JSON, check_output
    from yolohand.results.evaluate import evaluate as run_evaluate
    from yolohand.results.evaluate import format_table, to_json

    t0 = time.perf_counter()
    root = default_path("root", gt)
    if json_out is not None:  # fail before the (long) scoring, not after
        check_output(json_out, JSON, [pred, root], force, flag="--json")
    result = run_evaluate(pred, root, split=split.value if split else None, fold=fold, yolo_dir=yolo)
    typer.echo(format_table(result))
    if json_out is not None:
        with atomic_file(json_out, force, kind=JSON) as fh:
            fh.write(to_json(result) + "\n")
    problems = f", {len(result.problems)} annotation problem(s) (see --json)" if result.problems else ""
    typer.echo(
        f"scored {result.n_images} of {result.n_gt_images} images: mDice {result.mean:.4f}"
        f"{problems} in {time.perf_counter() - t0:.1f} s" + (f"; JSON in {json_out}" if json_out else "")
    )
