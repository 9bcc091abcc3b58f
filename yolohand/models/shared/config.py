"""Run arguments of the semantic families (smp, refine): defaults, the ``--config`` YAML, flags.

Precedence as for YOLO: :data:`DEFAULTS` < ``--config run.yaml`` < flags. Keys share
ultralytics' names where they mean the same (``epochs``, ``batch``, ``imgsz``, ``lr0``,
``patience``, ``workers``, ``seed``, ``device``, ``fliplr``, ``degrees``, ``scale``); an unknown
key is refused with the closest valid one suggested, a value of the wrong type names the key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from yolohand.errors import YolohandError

__all__ = ["DEFAULTS", "REFINE_DEFAULTS", "LOSSES", "read_config", "merge_args", "amp_on"]

#: Losses of segmentation_models_pytorch (mode="multilabel": 29 independent sigmoid channels);
#: combo = bce_weight * BCE + dice_weight * Dice, the seed team's "Combo" loss.
LOSSES = ("combo", "bce", "dice", "focal", "tversky", "lovasz", "jaccard")

DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    # From random weights, the seed team's batch 8, lr 1e-3 and BCE + Dice 1:1 learned nothing in a
    # CPU budget (README, "smp from scratch"): more, smaller steps, a higher rate, BCE at 1 %.
    "batch": 2,
    "imgsz": 512,
    "lr0": 3e-3,  # Adam
    "optimizer": "adam",  # adam | adamw | sgd
    "weight_decay": 0.0,
    "cos_lr": True,  # cosine decay to lrf * lr0 over the epochs
    "lrf": 0.01,
    "loss": "combo",
    "bce_weight": 0.01,  # the seed team's 1.0 drives every channel to "background" before Dice can act
    "dice_weight": 1.0,
    "patience": 0,  # early stopping on validation Dice after this many epochs without gain (0: off)
    "accumulate": 1,  # gradient accumulation (large images on small GPUs)
    "amp": None,  # None: on for CUDA, off on CPU
    "channels_last": None,  # None: on for CUDA
    "workers": 2,
    "seed": 0,
    "deterministic": False,
    "encoder_weights": None,  # None (random), a local file, or e.g. "imagenet" already in the HF cache
    "pretrained": None,  # a yolohand checkpoint of the same family/arch/encoder to start from (fine-tuning)
    "fliplr": 0.5,  # a mirrored hand is a valid hand; bone names carry no side
    "degrees": 10.0,  # small rotations
    "scale": 0.1,  # +-10 % zoom
    "translate": 0.05,
    "brightness": 0.2,  # X-ray exposure; no hue/saturation: the images are grey
    "contrast": 0.2,
    "threads": None,  # torch CPU threads (None: every core)
    "val_every": 1,
    "bn_batches": 8,  # training batches re-estimating BatchNorm statistics before each validation (0: off)
    # leaderboard techniques (README, "Leaderboard techniques"); stored in the checkpoint's metadata
    "window": None,  # smp: train on random W x W windows of the imgsz plane, predict by sliding windows (None/0: off)
    "stride": None,  # smp: sliding-window stride at prediction (None: window / 2)
    "clahe": None,  # CLAHE [clip, tiles per side] in training and prediction (yolohand.data.preprocess); None: off
    "gamma": None,  # gamma augmentation range [lo, hi] while training; None: off
    "swa_epochs": 0,  # best.pt = the average of the last N epochs' weights, BatchNorm re-estimated (0: off)
    # refiner only (ignored by smp)
    "margin": 0.15,  # box margin, as a fraction of the box side
    "jitter": 0.1,  # box shift/scale jitter while training, fraction of the box side
    "prior_stride": 8.0,  # original pixels per YOLO prototype cell (4 x image side / YOLO imgsz)
    "detector": None,  # a first-stage checkpoint (YOLO best.pt) for the end-to-end validation
    "priors": None,  # a folder of out-of-fold probability maps (predict --save-probs) to train on
    "prior_mix": 0.5,  # with priors: the share of draws using the predicted box and map (0..1)
    "gate_margin": 0.002,  # keep the detector's mask of a class the refiner lowers by more (validation Dice)
}
#: Where the refiner's defaults differ: its samples are bone crops with a prior channel (29 per
#: image), an easy target that learned with the seed's recipe; measured in tests/test_refine.py.
REFINE_DEFAULTS: dict[str, Any] = {"batch": 8, "lr0": 1e-3, "bce_weight": 1.0}

_INT = {"epochs", "batch", "imgsz", "patience", "accumulate", "workers", "seed", "val_every", "bn_batches", "window",
        "stride", "swa_epochs"}
#: Whole numbers that may be 0 (off / none).
_ZERO_OK = {"patience", "workers", "seed", "bn_batches", "window", "swa_epochs"}
_FLOAT = {"lr0", "weight_decay", "lrf", "bce_weight", "dice_weight", "fliplr", "degrees", "scale", "translate",
          "brightness", "contrast", "margin", "jitter", "prior_stride", "prior_mix", "gate_margin"}
_BOOL = {"cos_lr", "deterministic"}
_CHOICES = {"loss": LOSSES, "optimizer": ("adam", "adamw", "sgd")}


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``--config`` YAML; YolohandError naming the file, line or key that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise YolohandError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise YolohandError(f"{path}: expected a mapping of run arguments (key: value)")
    return check_args(data, str(path))


def check_args(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate keys and value types; returns a typed copy."""
    out = {}
    for key, value in args.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise YolohandError(f"{where}: '{key}' is not a run argument of this family{hint}")
        out[key] = _typed(key, value, where)
    return out


def _typed(key: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if key in ("clahe", "gamma"):  # kept as plain lists (YAML- and checkpoint-friendly)
        from yolohand.data.preprocess import parse_clahe, parse_gamma

        parsed = (parse_clahe if key == "clahe" else parse_gamma)(value, flag=f"{where}: {key}")
        return list(parsed) if parsed is not None else None
    try:
        if key in _INT:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            value = int(float(value))
            if value < (0 if key in _ZERO_OK else 1):
                raise ValueError
        elif key in _FLOAT:
            value = float(value)
            if value < 0:
                raise ValueError
        elif key in _BOOL and not isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        kind = f"a whole number >= {0 if key in _ZERO_OK else 1}" if key in _INT else "a number >= 0" if key in _FLOAT else "true or false"
        raise YolohandError(f"{where}: {key}: {value!r} is not {kind}") from None
    if key == "prior_mix" and value > 1:
        raise YolohandError(f"{where}: prior_mix: {value!r} is not a share between 0 and 1")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise YolohandError(f"{where}: {key}: {value!r}: expected one of {', '.join(_CHOICES[key])}")
    return value


def merge_args(config: Mapping[str, Any] | None, flags: Mapping[str, Any], family: str = "smp") -> dict[str, Any]:
    """:data:`DEFAULTS` (with :data:`REFINE_DEFAULTS` for ``family`` refine) < ``config`` < ``flags``
    (None = not given); flags are validated too."""
    merged = dict(DEFAULTS, **(REFINE_DEFAULTS if family == "refine" else {}))
    merged.update(config or {})
    merged.update(check_args({k: v for k, v in flags.items() if v is not None}, "command line"))
    return merged


def amp_on(args: Mapping[str, Any], gpu: bool) -> bool:
    """Whether a run trains in mixed precision: ``amp`` when given (None: on with CUDA), never on the CPU."""
    return gpu and bool(args["amp"] if args["amp"] is not None else True)
