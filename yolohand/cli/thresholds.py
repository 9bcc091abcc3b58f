"""`yolohand thresholds`: fit one probability threshold per class on out-of-fold maps."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import Split

# Shared with `yolohand pick` (the same fit rule: yolohand.results.choice).
GT = typer.Option(None, "--gt", help="Dataset root with the annotations [default: configured root].", show_default=False)
SPLIT = typer.Option(None, "--split", help="train or test [default: look each image up in train, then test].",
                     show_default=False)
MARGIN = typer.Option(0.002, "--margin", min=0.0, help="Keep the default (threshold 0.5; in pick the best overall "
                      "source) unless another gains more than this mean Dice on the class.")
SPLIT_HALF = typer.Option(True, "--split-half/--no-split-half",
                          help="Also require the gain on each half of the images (split by patient).")


def thresholds(
    probs: list[Path] = typer.Option(
        ..., "--probs", help="Folder of out-of-fold probability maps (.npz); repeat for several (e.g. one per fold).",
        show_default=False,
    ),
    gt: Path = GT,
    split: Split = SPLIT,
    out: Path = typer.Option(Path("thresholds.json"), "--out", "-o", help="Thresholds JSON to write."),
    margin: float = MARGIN,
    split_half: bool = SPLIT_HALF,
    force: bool = typer.Option(False, "--force", help="Replace an existing thresholds JSON."),
) -> None:
    """Fit per-class thresholds (grid 0.05..0.95) on out-of-fold maps against ground truth; write a JSON
    for `predict --thresholds` and `ensemble --thresholds`."""
    from yolohand.config import default_path
    from yolohand.core.paths import JSON, check_output
    from yolohand.results.thresholds import fit_thresholds, format_fit, write_thresholds

    root = default_path("root", gt)
    check_output(out, JSON, [*probs, root], force, flag="--out")  # fail before the scoring, not after
    fit = fit_thresholds(probs, root, split=split.value if split else None, margin=margin, split_half=split_half)
    path = write_thresholds(fit, out, force, inputs=[*probs, root])
    typer.echo(format_fit(fit))
    at_half, fitted = fit.mdice()
    changed = int((fit.thresholds != 0.5).sum())
    held = float(fit.choice.heldout_gain.mean())
    held_text = "n/a (one half is empty)" if held != held else f"{held:+.4f} (fit on one half, scored on the other)"
    typer.echo(
        f"{changed} of {len(fit.thresholds)} classes moved off 0.5 on {fit.choice.n_images} images: "
        f"mDice {at_half:.4f} -> {fitted:.4f} in-sample, held-out gain {held_text} -> {path} in {fit.seconds:.1f} s"
    )
