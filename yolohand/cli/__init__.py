"""The `yolohand` command line: a thin Typer layer over the library.

Each command lives in its own module under ``yolohand/cli/`` and imports heavy libraries
(torch, ultralytics) inside the function body, so ``yolohand --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from yolohand import __version__
from yolohand.errors import YolohandError

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


# Command registration, in the order `--help` lists them: (name, module under yolohand.cli, help, short
# help); the module's function of the command's name is the command.
# Each module imports its heavy libraries inside the function, so `--help` stays fast.
_COMMANDS = [
    ("synth", "synth", "Write a synthetic hand X-ray dataset in the competition layout.",
     "Synthetic hand X-rays in the competition layout."),
    ("convert", "convert", "Convert polygon JSONs into YOLO-seg labels and K-fold data YAMLs.",
     "Polygon JSONs -> YOLO-seg labels + K-fold YAMLs."),
    ("train", "train", "Train YOLO-seg on a fold (or all folds); best.pt chosen by validation Dice.",
     "Train YOLO-seg per fold; best.pt by validation Dice."),
    ("predict", "predict",
     "Predict images into a submission CSV (soft full-resolution masks, 29 rows per image).",
     "Images -> submission CSV (+ probability maps)."),
    ("evaluate", "evaluate",
     "Per-class Dice and mDice of a submission CSV or probability maps against ground truth.",
     "Per-class Dice and mDice against ground truth."),
    ("ensemble", "ensemble", "Fuse submission CSVs by voting on runs, or probability maps by averaging.",
     "Fuse CSVs (hard vote) or probability maps (soft)."),
    ("show", "show", "Draw ground truth and/or a submission's masks over an X-ray, with a legend.",
     "Masks over an X-ray as a PNG, with a legend."),
    ("compare", "compare", "Per-class IoU of two submissions and an HTML report of where they disagree.",
     "Per-class IoU of two CSVs + an HTML report."),
    # cli/app_cmd.py, not cli/app.py: that module name would shadow the Typer `app` above.
    ("app", "app_cmd", "Launch the Streamlit app (needs the yolohand[app] extra).",
     "Browser viewer (Streamlit, yolohand[app] extra)."),
]
for _name, _module, _help, _short in _COMMANDS:
    _command = getattr(importlib.import_module(f"{__name__}.{_module}"), _name)
    app.command(_name, help=_help, short_help=_short)(_command)


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
