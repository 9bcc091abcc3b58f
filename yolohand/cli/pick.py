"""`yolohand pick`: per class, the best of several models on validation data -> a fusion YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import Split
from yolohand.cli.thresholds import GT, MARGIN, SPLIT, SPLIT_HALF


def pick(
    csvs: list[Path] = typer.Argument(None, help="Validation submission CSVs of the models (same images).",
                                      show_default=False),
    probs: list[Path] = typer.Option(None, "--probs", help="Validation probability-map folder of a model; repeat.",
                                     show_default=False),
    gt: Path = GT,
    split: Split = SPLIT,
    out: Path = typer.Option(Path("fusion.yaml"), "--out", "-o", help="Fusion YAML to write (for ensemble --fusion)."),
    margin: float = MARGIN,
    split_half: bool = SPLIT_HALF,
    force: bool = typer.Option(False, "--force", help="Replace an existing fusion YAML."),
) -> None:
    """Score each source per class against ground truth, pick per class the best (guarded against
    overfitting), report in-sample and held-out scores, write a fusion YAML for `ensemble --fusion`."""
    from yolohand.config import default_path
    from yolohand.core.paths import FILE, check_output
    from yolohand.results.fusion import fit_sources, format_source_fit, write_fusion

    root = default_path("root", gt)
    csvs, probs = list(csvs or []), list(probs or [])
    check_output(out, FILE, [*csvs, *probs, root], force, flag="--out")  # fail before the scoring
    fit = fit_sources(csvs, probs, root, split=split.value if split else None, margin=margin, split_half=split_half)
    path = write_fusion(fit, out, force)
    typer.echo(format_source_fit(fit))
    s = fit.summary()
    moved = int((fit.choice.chosen != fit.choice.default).sum())
    typer.echo(
        f"{moved} of {len(fit.choice.chosen)} classes picked from another source than the best overall on "
        f"{fit.choice.n_images} images: mDice {s['single_in_sample']:.4f} -> {s['picked_in_sample']:.4f} in-sample, "
        f"{s['single_heldout']:.4f} -> {s['picked_heldout']:.4f} held-out (picked on one half, scored on the other) "
        f"-> {path} in {fit.seconds:.1f} s"
    )
