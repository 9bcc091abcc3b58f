"""A built wheel carries the demo checkpoint: `yolohand predict` without -w works from an install outside the checkout."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.rle import decode

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "yolohand/weights/yolohand-synth-n.pt"

pytestmark = pytest.mark.slow


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a copy of the sources (the checkout's build/ and egg-info stay untouched)."""
    src = tmp / "src"
    shutil.copytree(ROOT / "yolohand", src / "yolohand", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "-w", str(dist), str(src)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list(dist.glob("yolohand-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_installed_wheel_predicts_with_its_packaged_weights(tmp_path, synth_root_512):
    synth_root = synth_root_512  # the default phantom, the look the packaged checkpoint was trained on
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert WEIGHTS in names
        assert zf.getinfo(WEIGHTS).file_size == (ROOT / WEIGHTS).stat().st_size
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / WEIGHTS).is_file()

    elsewhere = tmp_path / "elsewhere"  # no runs/ here, and not the checkout: the packaged weights must be found
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = elsewhere / "sub.csv"
    proc = subprocess.run([sys.executable, "-m", "yolohand", "predict", "--rle", str(out), "--source",
                           str(synth_root / "test" / "DCM"), "--device", "cpu"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights_line = next(line for line in proc.stdout.splitlines() if line.startswith("weights ("))
    assert "shipped demo checkpoint" in weights_line and str(target / WEIGHTS) in weights_line, weights_line

    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_name", "class", "rle"]
    images = sorted(p.name for p in (synth_root / "test" / "DCM").rglob("*.png"))
    body = rows[1:]
    assert len(body) == NUM_CLASSES * len(images)
    assert [r[1] for r in body] == list(CLASSES) * len(images)
    shape = (512, 512)  # synth_root_512's image size
    areas = [int(decode(r[2], shape).sum()) for r in body]
    assert sum(a > 0 for a in areas) >= NUM_CLASSES  # the demo model finds most bones (floor: tests/test_predict.py)
