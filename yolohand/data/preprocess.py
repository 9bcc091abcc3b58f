"""Image preprocessing stored with a model: CLAHE (train and predict alike) and gamma (training only).

``--clahe CLIP[,TILE]``: contrast-limited adaptive histogram equalisation of the uint8 grayscale
image, ``cv2.createCLAHE(clipLimit=CLIP, tileGridSize=(TILE, TILE))`` (TILE: tiles per side,
default 8, as cv2's). The top teams of the competition measured clip 2.0 at +0.005 mDice and clip
4.0 at -0.006, so the clip matters: it is stored in the checkpoint and applied at prediction
whatever the command line says. Where it is applied, per family (the same place in training and
prediction, so the network sees the same pixels):

- smp: on the image resized to the network's S x S plane (before windows are cut from it);
- refine: on the full-resolution image, before the bone crops are cut;
- YOLO: on the image resized to the long side imgsz, as ultralytics loads it (before letterboxing).

``--gamma LO,HI``: a training augmentation, each sample's pixels raised to a power drawn uniformly
in [LO, HI] (``255 * (x / 255) ** g``), after CLAHE; never applied at prediction (stored in the
checkpoint as a record of the run).

numpy and cv2 only. Meta form (what a checkpoint stores): ``clahe: [clip, tile]`` or None,
``gamma: [lo, hi]`` or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from yolohand.errors import YolohandError

__all__ = ["DEFAULT_TILE", "Clahe", "Gamma", "parse_clahe", "parse_gamma", "apply_clahe", "apply_gamma",
           "apply_to_gray", "clahe_of", "describe", "fit_long_side"]

#: CLAHE tiles per side when only the clip is given (cv2's default grid).
DEFAULT_TILE = 8
#: (clip limit, tiles per side).
Clahe = tuple[float, int]
#: (lowest, highest) gamma of the training augmentation.
Gamma = tuple[float, float]

_OFF = ("", "none", "off", "false", "no", "0")


def parse_clahe(value: Any, flag: str = "--clahe") -> Clahe | None:
    """``"2"`` -> (2.0, 8); ``"2.0,16"`` or ``[2.0, 16]`` -> (2.0, 16); None, ``"none"``, False -> None.

    YolohandError naming ``flag`` for anything else (a clip <= 0, a tile count < 1 or not whole)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    parts: Sequence[Any]
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",")]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    try:
        if not 1 <= len(parts) <= 2:
            raise ValueError
        clip = float(parts[0])
        tile = float(parts[1]) if len(parts) == 2 else float(DEFAULT_TILE)
        if not (np.isfinite(clip) and clip > 0) or tile != int(tile) or tile < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise YolohandError(f"{flag} {value!r}: expected CLIP[,TILE] (a clip limit > 0 and whole tiles per side >= 1, "
                            f"e.g. 2.0 or 2.0,8) or none") from None
    return clip, int(tile)


def parse_gamma(value: Any, flag: str = "--gamma") -> Gamma | None:
    """``"0.7,1.5"`` or ``[0.7, 1.5]`` -> (0.7, 1.5); None or ``"none"`` -> None. 0 < LO <= HI."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    parts = value.replace(" ", "").split(",") if isinstance(value, str) else value
    try:
        lo, hi = (float(v) for v in parts)
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise ValueError
    except (TypeError, ValueError):
        raise YolohandError(f"{flag} {value!r}: expected LO,HI with 0 < LO <= HI (e.g. 0.7,1.5) or none") from None
    return lo, hi


def apply_clahe(image: np.ndarray, clahe: Clahe | None) -> np.ndarray:
    """CLAHE of a uint8 (H, W) image (a new array); ``clahe`` None returns ``image`` itself."""
    if clahe is None:
        return image
    clip, tile = clahe
    return cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tile), int(tile))).apply(np.ascontiguousarray(image))


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """uint8 ``255 * (x / 255) ** gamma`` (a lookup table; gamma 1 returns ``image`` itself)."""
    if gamma == 1:
        return image
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** float(gamma)).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image), lut)


def apply_to_gray(image: np.ndarray, fn) -> np.ndarray:
    """``fn`` (uint8 (H, W) -> uint8 (H, W)) on a gray image stored as (H, W), (H, W, 1) or (H, W, 3)
    with equal channels (the first channel, then repeated); the input's shape is kept."""
    if image.ndim == 2:
        return fn(image)
    out = fn(np.ascontiguousarray(image[..., 0]))
    return np.repeat(out[..., None], image.shape[2], axis=2)


def fit_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """The image resized (``INTER_LINEAR``, aspect kept) so its long side is ``size``, exactly as
    ultralytics' ``BaseDataset.load_image`` does it for training (up or down; ``image`` itself when
    it is that size already)."""
    import math

    h0, w0 = image.shape[:2]
    r = size / max(h0, w0)
    if r == 1:
        return image
    w, h = min(math.ceil(w0 * r), size), min(math.ceil(h0 * r), size)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def clahe_of(meta: Mapping[str, Any] | None) -> Clahe | None:
    """The CLAHE a checkpoint's metadata (or a run's arguments) asks for; absent: None."""
    return parse_clahe((meta or {}).get("clahe"), flag="checkpoint clahe")


def describe(clahe: Clahe | None, gamma: Gamma | None = None) -> str:
    """``"CLAHE clip 2 tiles 8, gamma 0.7-1.5"`` for summaries (``"none"`` when neither)."""
    parts = []
    if clahe is not None:
        parts.append(f"CLAHE clip {clahe[0]:g} tiles {clahe[1]}")
    if gamma is not None:
        parts.append(f"gamma {gamma[0]:g}-{gamma[1]:g}")
    return ", ".join(parts) or "none"
