"""`yolohand import SRC DST`: a user's own smp model (``torch.save(model)`` or its state_dict) as a
yolohand smp checkpoint, verified by predicting one image both ways (:mod:`yolohand.models.smp.importer`).

cli/import_cmd.py, not cli/import.py: ``import`` is a Python keyword (the function is ``import_``).
"""

from __future__ import annotations

from pathlib import Path

import typer


def import_(
    src: Path = typer.Argument(..., help="The user's model: torch.save(model) (needs --trust-pickle) or "
                               "torch.save(model.state_dict()) (needs --model)."),
    dst: Path = typer.Argument(..., help="yolohand smp checkpoint to write (.pt)."),
    imgsz: int = typer.Option(..., "--imgsz", min=32, help="Square input size the model was trained at (a multiple of 32)."),
    model: str = typer.Option(None, "--model", show_default=False,
                              help="smp:ARCH:ENCODER it was built with (needed for a state_dict; a pickled model is "
                                   "recognised)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="Load a whole pickled model (torch.load(weights_only=False) runs code from "
                                           "the file: only for files you trust)."),
    channels: int = typer.Option(None, "--channels", min=1, max=3, show_default=False,
                                 help="Input channels, each the gray image: 1 or 3 [default: the pickled model's, else 3]."),
    mean: str = typer.Option("0", "--mean", metavar="M[,M,M]",
                             help="Input mean in 0..1 units (x/255 - mean) / std; one number or one per channel."),
    std: str = typer.Option("1", "--std", metavar="S[,S,S]", help="Input std in 0..1 units; one number or one per channel."),
    image: Path = typer.Option(None, "--image", show_default=False,
                               help="Image of the round-trip check [default: one synthetic X-ray]."),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="Largest |dp| accepted by the round-trip check."),
    force: bool = typer.Option(False, "--force", help="Replace DST if it is a previous yolohand checkpoint."),
) -> None:
    """Import SRC (a segmentation_models_pytorch model saved by your own scripts) as a yolohand smp checkpoint."""
    from yolohand.cli.options import parse_numbers
    from yolohand.models.shared.checkpoint import parse_model
    from yolohand.models.smp.importer import import_checkpoint

    def level(text: str, flag: str) -> float | list[float]:
        values = parse_numbers(text, flag, "0.485,0.456,0.406") or [float("nan")]  # "": not a number
        return values[0] if len(values) == 1 else values

    result = import_checkpoint(src, dst, spec=parse_model(model) if model else None, imgsz=imgsz, channels=channels, mean=level(mean, "--mean"),
                               std=level(std, "--std"), trust_pickle=trust_pickle, image=image, force=force,
                               tolerance=tolerance)
    for line in result.lines():
        typer.echo(line)
