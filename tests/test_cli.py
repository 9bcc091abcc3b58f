"""The command line as a user meets it: help, version, and usage errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yolohand import __version__
from yolohand.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["synth", "convert", "train", "predict", "gt", "evaluate", "ensemble", "thresholds", "pick", "pseudo", "show",
            "compare", "import", "app"]


def _run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command_with_a_line(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed == COMMANDS


def test_version(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"yolohand {__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["synth"], "Missing argument 'out'"),
        (["predict"], "Missing option '--rle'"),
        (["predict", "--rle", "x.csv", "--conf", "abc"], "Invalid value for '--conf'"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_message_not_a_traceback(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_user_error_is_one_line_exit_1(tmp_path, capsys):
    code, _, err = _run(["evaluate", str(tmp_path / "missing.csv")], capsys)
    assert code == 1
    assert err.strip().splitlines() == [f"error: {tmp_path / 'missing.csv'}: not found (expected a submission CSV or a folder of .npz maps)"]


def test_cli_py_runs_the_same_app():
    proc = subprocess.run([sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert all(c in proc.stdout for c in COMMANDS)
