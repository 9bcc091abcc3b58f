"""`yolohand ensemble`: fuse submission CSVs (hard vote on runs) and probability maps (soft vote)."""

from __future__ import annotations

from pathlib import Path

import typer


def ensemble(
    csvs: list[Path] = typer.Argument(None, help="Submission CSVs to fuse (same images, same order).", show_default=False),
    probs: list[Path] = typer.Option(
        None, "--probs", help="Probability-map folder (one .npz per image); repeat for several. Switches to soft voting.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("ensemble.csv"), "--out", "-o", help="Output submission CSV."),
    min_votes: float = typer.Option(
        None, "--min-votes", help="Hard vote: keep a pixel when at least this many (summed weight of) inputs mark it. "
        "Default: strictly more than half the total weight.", show_default=False,
    ),
    weights: str = typer.Option(
        None, "--weights", help="Comma-separated weights, one per input: CSVs first, then --probs folders, e.g. 1,2,1.",
        show_default=False,
    ),
    threshold: float = typer.Option(0.5, "--threshold", help="Soft vote: keep pixels whose weighted mean probability is >= this."),
    size: str = typer.Option("2048,2048", "--size", help="Image size H,W (every image)."),
    images: Path = typer.Option(
        None, "--images", help="Folder of the images: read each image's size from it (overrides --size).", show_default=False,
    ),
    save_probs: Path = typer.Option(
        None, "--save-probs", help="Soft vote: also write the averaged probability maps to this folder.", show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Fuse submissions pixel-wise: majority vote of CSVs, or mean of probability maps and CSVs."""
    from yolohand.errors import YolohandError
    from yolohand.results.ensemble import hard_vote, parse_size, parse_weights, soft_vote

    csvs, probs = list(csvs or []), list(probs or [])
    shape = parse_size(size)
    w = parse_weights(weights)
    if probs:
        if min_votes is not None:
            raise YolohandError("--min-votes applies to hard voting (CSVs only); with --probs use --threshold")
        summary = soft_vote(csvs, probs, out, weights=w, threshold=threshold, shape=shape, force=force,
                            images=images, save_probs=save_probs)
    else:
        if save_probs is not None:
            raise YolohandError("--save-probs needs at least one --probs folder (soft voting)")
        if threshold != 0.5:
            raise YolohandError("--threshold applies to soft voting (--probs); for CSVs only use --min-votes")
        summary = hard_vote(csvs, out, weights=w, min_votes=min_votes, shape=shape, force=force, images=images)
    typer.echo(f"inputs: {', '.join(summary.inputs_list)}")
    typer.echo(summary.line())
