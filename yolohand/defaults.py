"""Defaults shared by the library and the CLI, in one place (no third-party imports).

The CLI shows these in ``--help`` and the library uses them when an argument is not given, so
the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

#: Default folders, overridable by a ``yolohand.yaml`` in the working directory (yolohand.config).
PATHS: dict[str, str] = {"root": "datasets/handbone", "yolo": "datasets/yolo", "runs": "runs"}

#: results.csv column holding each epoch's validation Dice (every model family writes it).
DICE_KEY = "metrics/dice(M)"

#: Demo checkpoints shipped inside the package (model cards: weights/README.md in the repository).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_WEIGHTS = WEIGHTS_DIR / "yolohand-synth-n.pt"
