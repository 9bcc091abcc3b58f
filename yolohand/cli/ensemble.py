"""`yolohand ensemble`: fuse submission CSVs (hard vote on runs) and probability maps (soft vote)."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import size_option


def ensemble(
    csvs: list[Path] = typer.Argument(None, help="Submission CSVs to fuse (same images, same order).", show_default=False),
    probs: list[Path] = typer.Option(
        None, "--probs", help="Probability-map folder (one .npz per image); repeat for several. Switches to soft voting.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("ensemble.csv"), "--out", "-o", help="Output submission CSV."),
    min_votes: float = typer.Option(
        None, "--min-votes", help="Hard vote: keep a pixel when at least this many (summed weight of) inputs mark it. "
        "Default: strictly more than half the total weight (a tie is dropped).", show_default=False,
    ),
    weights: str = typer.Option(
        None, "--weights", help="Comma-separated weights, one per input: CSVs first, then --probs folders, e.g. 1,2,1.",
        show_default=False,
    ),
    threshold: float = typer.Option(
        None, "--threshold", help="Soft vote: keep pixels whose weighted mean probability is >= this "
        "(ties kept) [default: 0.5].", show_default=False,
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Soft vote: keep only mean > threshold (ties dropped), as the public soft_voting.py does.",
    ),
    size: tuple = size_option(None, "Image size H,W (every image). Default: a soft vote reads each image's size "
                              "from its maps; a hard vote of CSVs assumes 2048,2048."),
    images: Path = typer.Option(
        None, "--images", help="Folder of the images: read each image's size from it (overrides --size).", show_default=False,
    ),
    save_probs: Path = typer.Option(
        None, "--save-probs", help="Soft vote: also write the averaged probability maps to this folder.", show_default=False,
    ),
    thresholds: Path = typer.Option(
        None, "--thresholds", help="Soft vote: per-class thresholds JSON (from `yolohand thresholds`) instead of --threshold.",
        show_default=False,
    ),
    fusion: Path = typer.Option(
        None, "--fusion", help="Class-wise fusion YAML (which source votes for which class, from `yolohand pick` or by "
        "hand); CSV arguments and --probs then replace its sources' paths in order.", show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Replace outputs that are previous yolohand outputs."),
) -> None:
    """Fuse submissions pixel-wise: majority vote of CSVs, or mean of probability maps and CSVs.

    Soft vote rule: a pixel is kept when the weighted mean probability is >= --threshold, so an
    exact tie (mean 0.5, common with an even number of maps) is kept; --strict drops ties
    (mean > threshold), which reproduces the public soft_voting.py.
    """
    from yolohand.cli.options import parse_weights
    from yolohand.results.ensemble import ensemble as run_ensemble

    per_class = None
    if thresholds is not None:
        from yolohand.results.thresholds import load_thresholds

        per_class = load_thresholds(thresholds)
    if fusion is not None:
        from yolohand.errors import YolohandError
        from yolohand.results.fusion import fuse, load_fusion

        for flag, given in (("--weights", weights is not None), ("--min-votes", min_votes is not None)):
            if given:
                raise YolohandError(f"{flag} does not go with --fusion (weights are in the YAML)")
        summary = fuse(load_fusion(fusion), out, list(csvs or []), list(probs or []), threshold=threshold,
                       thresholds=per_class, strict=strict, shape=size, images=images, save_probs=save_probs,
                       force=force)
    else:
        summary = run_ensemble(list(csvs or []), list(probs or []), out, weights=parse_weights(weights),
                               min_votes=min_votes, threshold=threshold, strict=strict, shape=size, images=images,
                               save_probs=save_probs, force=force, thresholds=per_class)
    typer.echo(f"inputs: {', '.join(summary.inputs_list)}")
    typer.echo(summary.line())
