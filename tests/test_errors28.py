"""Issue 28: every failure is one ``error:`` line naming the file, with exit 1, no traceback and
nothing half-written: pathological JSON, full disks, corrupt maps and checkpoints, checkpoint
metadata, ``-o e.csv/``, special files as outputs, bad ``yolohand.yaml`` values, binary fold YAMLs.

Each class is run on the command line as a user would (:func:`yolohand.cli.main`, the console
entry point, in-process for speed; a few in a real subprocess), on tiny synthetic data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def one_error(code: int, err: str, *names: object) -> str:
    """Assert exit 1, exactly one ``error:`` line naming every one of ``names``, no traceback; the line."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert len(errors) == 1, err
    assert all(str(n) in errors[0] for n in names), (errors[0], names)
    assert "Traceback" not in err and "unexpected" not in err, err
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary or half-written files yolohand may have left under ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")) or "probe" in p.name)


def copy_split(root: Path, dest: Path, split: str = "test") -> Path:
    """A writable copy of one split of a synthetic root (the fixtures are shared, read-only)."""
    shutil.copytree(root / split, dest / split)
    return dest


# --------------------------------------------------------------------------- 1. pathological JSON


def deep_json(path: Path, depth: int = 5000) -> None:
    """An annotation file whose points nest ``depth`` levels deep (RecursionError inside json)."""
    points = "[" * depth + "]" * depth
    path.write_text('{"annotations": [{"id": "a", "label": "finger-1", "points": ' + points + "}]}")


def test_deeply_nested_json_is_the_bad_json_line_for_gt_evaluate_show(synth_root, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = copy_split(synth_root, tmp_path / "root")
    assert run_cli(["gt", "good.csv", "--root", root, "--split", "test"])[0] == 0
    bad = sorted((root / "test" / "outputs_json").rglob("*.json"))[0]
    image = root / "test" / "DCM" / bad.parent.name / (bad.stem + ".png")
    deep_json(bad)
    line = one_error(*run_cli(["gt", "g.csv", "--root", root, "--split", "test"])[::2], bad)
    assert line.endswith("not valid JSON (nested too deeply to read)")
    one_error(*run_cli(["evaluate", "good.csv", "--gt", root, "--split", "test"])[::2], bad, "not valid JSON")
    one_error(*run_cli(["show", image, "--gt", "--out", "o.png"])[::2], bad, "not valid JSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "root"]


def test_deeply_nested_json_is_skipped_by_convert(synth_root, tmp_path, run_cli):
    root = copy_split(synth_root, tmp_path / "root", "train")
    bad = sorted((root / "train" / "outputs_json").rglob("*.json"))[0]
    deep_json(bad)
    code, out, err = run_cli(["convert", "--root", root, "--out", tmp_path / "y", "--folds", "2", "--workers", "1"])
    assert code == 0, err
    warnings = [line for line in (out + err).splitlines() if line.startswith("warning:") and str(bad) in line]
    assert len(warnings) == 1 and "not valid JSON (nested too deeply to read)" in warnings[0], err
