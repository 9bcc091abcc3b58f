"""`yolohand synth OUT`: write a synthetic hand X-ray dataset in the competition layout."""

from __future__ import annotations

from pathlib import Path

import typer

# Mirrors yolohand.data.synth.MIN_SIZE / MAX_SIZE (the library checks them; typer shows them in --help).
_MIN_SIZE, _MAX_SIZE = 64, 8192


def synth(
    out: Path = typer.Argument(..., help="Output folder (gets train/ and test/ like the competition data)."),
    train_ids: int = typer.Option(20, "--train-ids", min=0, help="Number of train IDs (2 images each: left and right hand)."),
    test_ids: int = typer.Option(5, "--test-ids", min=0, help="Number of test IDs (2 images each; ground truth included)."),
    size: int = typer.Option(2048, "--size", min=_MIN_SIZE, max=_MAX_SIZE, help="Image side in pixels (the real data is 2048)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes identical files."),
    workers: int = typer.Option(None, "--workers", min=0, help="Worker processes (default: CPU count)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is a previous synthetic dataset."),
    style: str = typer.Option(
        "xray", "--style",
        help="xray: simulated radiographs with anatomical bone shapes, annotator polygons (default); "
        "xray19: the first phantom (issue 19); flat: the earliest look; both byte for byte.",
    ),
    stats: bool = typer.Option(False, "--stats", help="Afterwards, print how the images compare with the real data's published statistics."),
) -> None:
    """Write synthetic hand X-rays with 29 annotated bones in the competition layout."""
    from yolohand.data.synth import generate_dataset

    summary = generate_dataset(
        out, train_ids=train_ids, test_ids=test_ids, size=size, seed=seed, workers=workers, force=force, style=style
    )
    for line in summary.lines():
        typer.echo(line)
    if stats:
        from yolohand.data.phantom_stats import compare_table, dataset_stats

        for line in compare_table(dataset_stats(out)):
            typer.echo(line)
