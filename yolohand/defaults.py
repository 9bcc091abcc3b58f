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
DEMO_REFINER = WEIGHTS_DIR / "yolohand-synth-refine.pt"
DEMO_SMP = WEIGHTS_DIR / "yolohand-synth-smp.pt"

# Prediction (yolohand.models.predict.Settings and `yolohand predict`); measured choices are
# explained where they act (models/yolo/predict.py, models/yolo/postprocess.py, core/crops.py).
CONF = 0.01  # YOLO detection confidence before one-per-class: low, so a bone is rarely missed
IOU = 0.7  # YOLO NMS IoU (per class)
MAX_DET = 300
MERGE = "assign"  # one detection per class jointly + the hand's order (models/yolo/assign.py; top1, union kept)
CONF_WEIGHT = False
MASK_MODE = "soft"
MASK_THRESHOLD = 0.8  # YOLO raw mask probability mapped to 0.5 (ultralytics' training masks are fat)
THRESHOLD = 0.5  # probability -> mask: p >= threshold
MISSING = "skip"  # averaging: a run that missed a class is left out
AGREE_IOU = 0.3  # averaging: a run whose box IoU with the most confident one is lower picked another bone

# Choices of the prediction options (validated once, in yolohand.models.predict.Settings).
MERGES = ("top1", "union", "assign")
MASK_MODES = ("soft", "polygon")
MISSING_RULES = ("zero", "skip")
