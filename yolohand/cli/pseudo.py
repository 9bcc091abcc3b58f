"""`yolohand pseudo`: test predictions -> polygon JSONs in the competition layout under a new root."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.data.pseudo import DEFAULT_AREA_RATIO, DEFAULT_MIN_COMPONENT, DEFAULT_MIN_CONFIDENCE


def pseudo(
    pred: Path = typer.Argument(..., help="Submission CSV, or folder of probability maps (.npz), of the images."),
    images: Path = typer.Option(None, "--images", help="The predicted images [default: <root>/test/DCM].",
                                show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="New dataset root to write (<out>/train/DCM, "
                             "<out>/train/outputs_json); never inside the inputs.", show_default=False),
    min_confidence: float = typer.Option(
        None, "--min-confidence", min=0.0, max=1.0, show_default=False,
        help=f"Maps: keep an image when the mean over classes of the mean probability inside each mask reaches "
        f"this [default: {DEFAULT_MIN_CONFIDENCE}].",
    ),
    area_ratio: float = typer.Option(DEFAULT_AREA_RATIO, "--area-ratio", min=1.0,
                                     help="Each class's area within this factor of its median over the images."),
    min_component: float = typer.Option(DEFAULT_MIN_COMPONENT, "--min-component", min=0.0, max=1.0,
                                        help="The largest connected piece holds at least this share of a class's mask."),
    thresholds: Path = typer.Option(None, "--thresholds", help="Maps: per-class thresholds JSON [default: 0.5].",
                                    show_default=False),
    with_train: Path = typer.Option(None, "--with-train", show_default=False,
                                    help="A dataset root whose train images and JSONs are linked in too (for one convert)."),
    copy: bool = typer.Option(False, "--copy", help="Copy the images instead of symlinking them."),
    force: bool = typer.Option(False, "--force", help="Replace a previous pseudo-label root."),
) -> None:
    """Turn test predictions that pass a confidence rule into polygon JSONs in the competition layout,
    for `convert` and `train`; the original data is never written."""
    from yolohand.config import default_path
    from yolohand.data.pseudo import pseudo_labels

    per_class = None
    if thresholds is not None:
        from yolohand.results.thresholds import load_thresholds

        per_class = load_thresholds(thresholds)
    src = images if images is not None else default_path("root") / "test" / "DCM"
    summary = pseudo_labels(pred, src, out, min_confidence=min_confidence, area_ratio=area_ratio,
                            min_component=min_component, thresholds=per_class, with_train=with_train, copy=copy,
                            force=force)
    for line in summary.lines():
        typer.echo(line)
