"""`yolohand show IMAGE`: the X-ray with the 29 masks as translucent fills, contours and a legend."""

from __future__ import annotations

from pathlib import Path

import typer


def show(
    image: str = typer.Argument(..., help="Image path, or a bare image name looked up under ROOT/{train,test}/DCM."),
    gt: bool = typer.Option(False, "--gt", help="Draw the ground truth (the image's annotation JSON)."),
    pred: Path = typer.Option(None, "--pred", help="Draw this image's masks from a submission CSV."),
    out: Path = typer.Option(None, "--out", help="Output PNG (default: <stem>_overlay.png in the working directory)."),
    root: Path = typer.Option(None, "--root", help="Dataset root for bare image names (default: config 'root')."),
    alpha: float = typer.Option(0.35, "--alpha", min=0.0, max=1.0, help="Opacity of the fills."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it is a PNG."),
) -> None:
    """Draw the ground truth and/or a submission's masks over an X-ray, with a legend.

    With both --gt and --pred the two overlays are drawn side by side.
    """
    from yolohand.config import default_path
    from yolohand.core.paths import PNG, check_output, overlap
    from yolohand.errors import YolohandError
    from yolohand.viz.draw import dataset_root, render_show, resolve_image, write_png

    image_path, json_path = resolve_image(image, default_path("root", root))
    if gt and json_path is None:
        raise YolohandError(f"{image_path}: no annotation JSON found (expected under the split's outputs_json/)")
    datasets = [root, dataset_root(image_path)]  # the --root given and the dataset the image belongs to
    if out is None:
        out = Path.cwd() / f"{image_path.stem}_overlay.png"
        hit = overlap(out, datasets)
        if hit is not None:  # run from inside a dataset folder: the default place is in the dataset
            raise YolohandError(f"{out}: the default output (the working directory) lies inside the dataset {Path(hit[0]).resolve()}; "
                                "pass --out with a place outside it")
    check_output(out, PNG, [image_path, json_path, pred, *datasets], force, flag="--out")  # before the work
    result = render_show(image_path, json_path if gt else None, pred, alpha)
    write_png(out, result.picture, force)
    for line in result.lines:
        typer.echo(line)
    h, w = result.picture.shape[:2]
    typer.echo(f"wrote {out} ({w}x{h} px) for {image_path}")
