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

app.command("synth", help="Write a synthetic hand X-ray dataset in the competition layout.")(_synth.synth)
# @convert
# @train
# @predict
# @evaluate
# @ensemble
# @show
# @compare
# @app


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
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
