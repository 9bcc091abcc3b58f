"""`yolohand compare A.csv B.csv`: per-class and per-image IoU of two submissions, and an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import size_option


def compare(
    a: Path = typer.Argument(..., help="First submission CSV (A: green where only A has a pixel)."),
    b: Path = typer.Argument(..., help="Second submission CSV (B: red where only B has a pixel)."),
    images: Path = typer.Option(None, "--images", help="Folder searched (recursively) for the X-rays, shown beside the crops."),
    out: Path = typer.Option(Path("compare_report"), "--out", help="Report folder (report.html, iou.png, iou.csv, iou_per_image.csv)."),
    top: int = typer.Option(20, "--top", min=0, help="How many least-agreeing image/class pairs to draw."),
    size: tuple = size_option("2048,2048", "H,W of the images the RLEs refer to."),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Highlight classes whose IoU is below this."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is a previous compare report."),
) -> None:
    """Compare two submissions: per-class IoU (on runs, no rasterising), worst pairs, HTML report."""
    from yolohand.core.classes import CLASSES
    from yolohand.core.paths import REPORT, check_output
    from yolohand.viz.compare import compare_submissions, write_report

    check_output(out, REPORT, [a, b, images], force, flag="--out")  # fail before the work, not after
    cmp = compare_submissions(a, b, size, top=top)
    files = write_report(cmp, out, images, force, threshold)
    per_class = cmp.per_class_iou()
    lowest = ", ".join(f"{CLASSES[i]} {per_class[i]:.3f}" for i in per_class.argsort(kind="stable")[:5])
    typer.echo(f"compared {cmp.n_images} images x {len(CLASSES)} classes in {cmp.seconds:.2f} s: "
               f"mean per-class IoU {cmp.mean_iou():.4f}; lowest: {lowest}")
    typer.echo(f"wrote {files.html} ({files.overlays} overlays), {files.chart.name}, "
               f"{files.per_class_csv.name}, {files.per_image_csv.name}")
