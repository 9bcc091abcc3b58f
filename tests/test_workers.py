"""Process pools started after OpenCV has used its thread pool must not hang (they did: a forked
child calling cv2.setNumThreads waited forever on the parent's pool threads)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2

from yolohand.data.workers import cv2_single_threaded

ROOT = Path(__file__).resolve().parent.parent


def test_cv2_thread_count_restored():
    before = cv2.getNumThreads()
    with cv2_single_threaded():
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before


def test_synth_and_convert_pools_after_cv2_was_busy(tmp_path):
    script = textwrap.dedent(
        f"""
        import cv2, numpy as np
        threads = cv2.getNumThreads()
        img = np.random.rand(1024, 1024).astype(np.float32)
        for _ in range(3):
            cv2.GaussianBlur(img, (31, 31), 5)  # OpenCV's thread pool is now running
        from yolohand.data.synth import generate_dataset
        from yolohand.data.convert import convert_dataset
        root = {str(tmp_path / "h")!r}
        generate_dataset(root, train_ids=4, test_ids=1, size=128, workers=2, progress=False)
        report = convert_dataset(root, {str(tmp_path / "y")!r}, folds=2, workers=2, progress=False)
        print("ok", cv2.getNumThreads() == threads)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "True"]
