"""`yolohand compare A.csv B.csv`: per-class and per-image IoU of two submissions, and an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer


def _parse_size(text: str) -> tuple[int, int]:
    from yolohand.errors import YolohandError

    try:
        h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise YolohandError(f"--size {text!r}: expected H,W (e.g. 2048,2048)") from None
    if h <= 0 or w <= 0:
        raise YolohandError(f"--size {text!r}: sides must be positive")
    return h, w


def compare(
    a: Path = typer.Argument(..., help="First submission CSV (A: green where only A has a pixel)."),
    b: Path = typer.Argument(..., help="Second submission CSV (B: red where only B has a pixel)."),
    images: Path = typer.Option(None, "--images", help="Folder searched (recursively) for the X-rays, shown beside the crops."),
    out: Path = typer.Option(Path("compare_report"), "--out", help="Report folder (report.html, iou.png, iou.csv, iou_per_image.csv)."),
    top: int = typer.Option(20, "--top", min=0, help="How many least-agreeing image/class pairs to draw."),
    size: str = typer.Option("2048,2048", "--size", help="H,W of the images the RLEs refer to."),
    threshold: float = typer.Option(None, "--threshold", help="Highlight classes whose IoU is below this."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Compare two submissions: per-class IoU (on runs, no rasterising), worst pairs, HTML report."""
    from yolohand.core.atomic import check_writable
    from yolohand.core.classes import CLASSES
    from yolohand.viz.compare import compare_submissions, write_report

    shape = _parse_size(size)
    check_writable(out, force)  # fail before the work, not after
    cmp = compare_submissions(a, b, shape, top=top)
    files = write_report(cmp, out, images, force, threshold)
    per_class = cmp.per_class_iou()
    lowest = ", ".join(f"{CLASSES[i]} {per_class[i]:.3f}" for i in per_class.argsort(kind="stable")[:5])
    typer.echo(f"compared {cmp.n_images} images x {len(CLASSES)} classes in {cmp.seconds:.2f} s: "
               f"mean per-class IoU {cmp.mean_iou():.4f}; lowest: {lowest}")
    typer.echo(f"wrote {files.html} ({files.overlays} overlays), {files.chart.name}, "
               f"{files.per_class_csv.name}, {files.per_image_csv.name}")
