"""The `yolohand` command line: a thin Typer layer over the library.

Each command lives in its own module under ``yolohand/cli/`` and imports heavy libraries
(torch, ultralytics) inside the function body, so ``yolohand --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import YolohandError

app = typer.Typer(
    name="yolohand",
    help="YOLO toolkit for 29-bone hand X-ray segmentation: synth, convert, train, predict, "
    "ensemble, evaluate, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"yolohand {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """YOLO toolkit for 29-bone hand X-ray segmentation."""


# Command registration: one line per command, in the order `--help` lists them.
from . import synth as _synth  # noqa: E402

app.command("synth", help="Write a synthetic hand X-ray dataset in the competition layout.",
            short_help="Synthetic hand X-rays in the competition layout.")(_synth.synth)
from . import convert as _convert  # noqa: E402
app.command("convert", help="Convert polygon JSONs into YOLO-seg labels and K-fold data YAMLs.",
            short_help="Polygon JSONs -> YOLO-seg labels + K-fold YAMLs.")(_convert.convert)
from . import train as _train  # noqa: E402
app.command("train", help="Train YOLO-seg on a fold (or all folds); best.pt chosen by validation Dice.",
            short_help="Train YOLO-seg per fold; best.pt by validation Dice.")(_train.train)
from . import predict as _predict  # noqa: E402
app.command("predict", help="Predict images into a submission CSV (soft full-resolution masks, 29 rows per image).",
            short_help="Images -> submission CSV (+ probability maps).")(_predict.predict)
from . import evaluate as _evaluate  # noqa: E402
app.command("evaluate", help="Per-class Dice and mDice of a submission CSV or probability maps against ground truth.",
            short_help="Per-class Dice and mDice against ground truth.")(_evaluate.evaluate)
from . import ensemble as _ensemble  # noqa: E402
app.command("ensemble", help="Fuse submission CSVs by voting on runs, or probability maps by averaging.",
            short_help="Fuse CSVs (hard vote) or probability maps (soft).")(_ensemble.ensemble)
from . import show as _show  # noqa: E402
app.command("show", help="Draw ground truth and/or a submission's masks over an X-ray, with a legend.",
            short_help="Masks over an X-ray as a PNG, with a legend.")(_show.show)
from . import compare as _compare  # noqa: E402
app.command("compare", help="Per-class IoU of two submissions and an HTML report of where they disagree.",
            short_help="Per-class IoU of two CSVs + an HTML report.")(_compare.compare)
from . import app_cmd as _app  # noqa: E402  (not cli/app.py: that name would shadow the Typer `app`)
app.command("app", help="Launch the Streamlit app (needs the yolohand[app] extra).",
            short_help="Browser viewer (Streamlit, yolohand[app] extra).")(_app.app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        app(args=argv, standalone_mode=False) if argv is not None else app(standalone_mode=False)
    except YolohandError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        if _is_usage_error(exc):  # missing argument, bad option value...: click's own message
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error. Duck-typed: typer >= 0.16 vendors click (``typer._click``), whose
    exception classes differ from an installed ``click``'s."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)
