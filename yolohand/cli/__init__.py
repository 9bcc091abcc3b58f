"""The `yolohand` command line: a thin Typer layer over the library.

Each command lives in its own module under ``yolohand/cli/`` and imports heavy libraries
(torch, ultralytics) inside the function body, so ``yolohand --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import keyword
import os
import sys

import typer

from yolohand import __version__, interrupts
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
# help); the module's function of the command's name is the command (with a trailing underscore
# when the name is a Python keyword: `import` -> `import_`).
# Each module imports its heavy libraries inside the function, so `--help` stays fast.
_COMMANDS = [
    ("synth", "synth", "Write a synthetic hand X-ray dataset in the competition layout.",
     "Synthetic hand X-rays in the competition layout."),
    ("convert", "convert", "Convert polygon JSONs into YOLO-seg labels and K-fold data YAMLs.",
     "Polygon JSONs -> YOLO-seg labels + K-fold YAMLs."),
    ("train", "train", "Train a model (YOLO-seg, smp:ARCH:ENCODER or refine:ARCH:ENCODER) on a fold (or all folds); "
     "best.pt chosen by validation Dice.",
     "Train YOLO / smp / refiner per fold; best.pt by Dice."),
    ("predict", "predict",
     "Predict images into a submission CSV (soft full-resolution masks, 29 rows per image).",
     "Images -> submission CSV (+ probability maps)."),
    ("gt", "gt", "Write the ground truth of a split as a submission CSV (for compare, evaluate, the app).",
     "Ground truth of a split as a submission CSV."),
    ("evaluate", "evaluate",
     "Per-class Dice and mDice of a submission CSV or probability maps against ground truth.",
     "Per-class Dice and mDice against ground truth."),
    ("ensemble", "ensemble", "Fuse submission CSVs by voting on runs, or probability maps by averaging.",
     "Fuse CSVs (hard vote) or probability maps (soft)."),
    ("thresholds", "thresholds", "Fit one probability threshold per class on out-of-fold maps against ground truth "
     "(grid 0.05..0.95, kept only when the gain beats a margin on both halves); a JSON for predict/ensemble --thresholds.",
     "Per-class thresholds from out-of-fold maps."),
    ("pick", "pick", "Score several models' validation predictions per class against ground truth and pick per class "
     "the best (guarded against overfitting, held-out scores shown); a fusion YAML for ensemble --fusion.",
     "Per-class best model -> a fusion YAML."),
    ("pseudo", "pseudo", "Turn test predictions (CSV or maps) that pass a confidence rule into polygon JSONs in the "
     "competition layout under a new root, for convert and train; the original data is never written.",
     "Test predictions -> pseudo-label JSONs."),
    ("show", "show", "Draw ground truth and/or a submission's masks over an X-ray, with a legend.",
     "Masks over an X-ray as a PNG, with a legend."),
    ("compare", "compare", "Per-class IoU of two submissions and an HTML report of where they disagree.",
     "Per-class IoU of two CSVs + an HTML report."),
    ("import", "import_cmd", "Import your own segmentation_models_pytorch model (torch.save(model) or its state_dict) as "
     "a yolohand smp checkpoint, verified by predicting one image both ways.",
     "Your own smp model -> a yolohand checkpoint."),
    # cli/app_cmd.py, not cli/app.py: that module name would shadow the Typer `app` above.
    ("app", "app_cmd", "Launch the Streamlit app (needs the yolohand[app] extra).",
     "Browser viewer (Streamlit, yolohand[app] extra)."),
]
for _name, _module, _help, _short in _COMMANDS:
    _command = getattr(importlib.import_module(f"{__name__}.{_module}"), _name + "_" * keyword.iskeyword(_name))
    app.command(_name, help=_help, short_help=_short)(_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point and the CLI's one exception boundary.

    Whatever goes wrong ends in one line on stderr and a non-zero exit, never a traceback:
    a user error (YolohandError), a file-system error (OSError, naming the path), memory
    exhaustion, a bad value (ValueError) -> ``error: ...``, exit 1; click's usage errors -> its
    message, exit 2; Ctrl-C -> ``interrupted``, exit 130 (temporary outputs are removed by
    :mod:`yolohand.core.atomic` as the interrupt unwinds). Warnings print as one ``warning:``
    line. ``YOLOHAND_DEBUG=1`` re-raises instead, for the traceback.
    """
    import warnings

    from yolohand.core.paths import command_line

    debug = os.environ.get("YOLOHAND_DEBUG", "") not in ("", "0")
    code = 0
    # command_line: the shell's words, for `-o e.csv/` (typer's Path drops the trailing separator)
    try:
        with warnings.catch_warnings(), command_line(sys.argv[1:] if argv is None else argv):
            warnings.showwarning = _show_warning
            try:
                interrupts.arm()  # a Ctrl-C noted while the command's modules were imported ends here
                code = app(args=argv, standalone_mode=False) if argv is not None else app(standalone_mode=False)
                interrupts.check()  # one a library swallowed (a weakref callback) still ends the command
            except SystemExit:
                raise
            except (KeyboardInterrupt, typer.Abort):
                code = 130
            except Exception as exc:
                if debug and not _is_usage_error(exc):
                    raise
                _fail(exc)
    finally:
        # The program itself (argv None) ignores a later Ctrl-C until it exits: no traceback from the
        # interpreter's shutdown; an in-process caller gets its own SIGINT handler back.
        interrupts.settle(program=argv is None)
    # typer returns an Exit's code in standalone_mode=False (Ctrl-C becomes Exit(130) there).
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:
            _say("interrupted")
        sys.exit(code)


def _close_bars() -> None:
    """Close live tqdm bars (each ends its line), so what follows starts a line of its own."""
    if "tqdm" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.leave = True  # a cleared bar leaves the cursor mid-line: end it with a newline instead
            bar.close()


def _say(line: str) -> None:
    """Print ``line`` to stderr on a line of its own."""
    _close_bars()
    sys.stderr.flush()
    typer.echo(line, err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """warnings.showwarning: one ``warning:`` line, without the source line."""
    text = " ".join(str(message).split())
    live = False
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        live = any(not getattr(bar, "disable", True) for bar in list(getattr(tqdm, "_instances", ())))
        if live and sys.stderr.isatty():  # clear the bar, print, redraw it below
            tqdm.write(f"warning: {text}", file=sys.stderr)
            return
    # Piped: end the bar's line first, so `grep '^warning:'` finds the line.
    typer.echo(("\n" if live else "") + f"warning: {text}", err=True)


def _fail(exc: BaseException) -> None:
    """Print the one line for ``exc`` and exit with its code."""
    if _is_usage_error(exc):  # missing argument, bad option value...: click's own message
        _close_bars()
        exc.show()
        sys.exit(exc.exit_code)
    _say(f"error: {error_line(exc)}")
    sys.exit(1)


def error_line(exc: BaseException) -> str:
    """The text after ``error:`` for an exception reaching the CLI boundary (one line)."""
    if isinstance(exc, YolohandError):
        text = str(exc)
    elif isinstance(exc, OSError):
        where = ": ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        text = f"{where}: {exc.strerror or exc}" if where else f"{exc.strerror or exc}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc or 'MemoryError'}); try smaller inputs, --batch or --workers"
    elif isinstance(exc, ValueError):
        text = str(exc) or type(exc).__name__
    else:
        text = (f"unexpected {type(exc).__name__}: {exc} (a yolohand bug: please report it; "
                "YOLOHAND_DEBUG=1 shows the traceback)")
    return " ".join(text.split())


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error. Duck-typed: typer >= 0.16 vendors click (``typer._click``), whose
    exception classes differ from an installed ``click``'s."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)
