"""The input normalisation of uint8 X-rays, the same in training and prediction of every
semantic family: ``(u8 / 255 - mean) / std``.

yolohand's own models use :data:`MEAN`, :data:`STD` (0.5, 0.25). An imported checkpoint
(``yolohand import``, :mod:`yolohand.models.smp.importer`) stores its own ``mean``/``std`` in its
metadata, in 0..1 units: one number, or one per input channel; :func:`meta_normalisation` reads
them back (absent: the defaults, so every older checkpoint predicts as before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["MEAN", "STD", "Level", "normalise", "normalise_array", "meta_normalisation", "describe"]

#: Input normalisation of uint8 X-rays: (u8 / 255 - MEAN) / STD (train and predict alike).
MEAN, STD = 0.5, 0.25

#: A mean or std: one number for every channel, or one per channel (0..1 units).
Level = float | Sequence[float]


def _per_channel(value: Level) -> float | np.ndarray:
    """A number as it is; a sequence as float32 (C, 1, 1), to broadcast over (..., C, H, W)."""
    if isinstance(value, (int, float)):
        return value
    return np.asarray(value, dtype=np.float32).reshape(-1, 1, 1)


def normalise(u8: Any, mean: Level = MEAN, std: Level = STD) -> Any:
    """float32 torch tensor (..., H, W) network input from a uint8 torch tensor of pixels.

    Per-channel ``mean``/``std`` apply to the axis before H, W (..., C, H, W).
    """
    m, s = _per_channel(mean), _per_channel(std)
    if isinstance(m, np.ndarray) or isinstance(s, np.ndarray):
        import torch

        m, s = (torch.as_tensor(v, device=u8.device) if isinstance(v, np.ndarray) else v for v in (m, s))
    return (u8.float() / 255.0 - m) / s


def normalise_array(u8: np.ndarray, mean: Level = MEAN, std: Level = STD) -> np.ndarray:
    """float32 numpy (..., H, W) network input from uint8 (or float 0..255) pixels (per-channel
    values: over (..., C, H, W), as :func:`normalise`)."""
    return ((u8.astype(np.float32) / 255.0 - _per_channel(mean)) / _per_channel(std)).astype(np.float32, copy=False)


def meta_normalisation(meta: Mapping[str, Any]) -> tuple[Level, Level]:
    """(mean, std) of a checkpoint's metadata; absent: (:data:`MEAN`, :data:`STD`)."""
    def level(key: str, default: float) -> Level:
        value = meta.get(key, default)
        return float(value) if isinstance(value, (int, float)) else [float(v) for v in value]

    return level("mean", MEAN), level("std", STD)


def describe(mean: Level, std: Level) -> str:
    """``"(x/255 - 0.5) / 0.25"`` for messages and summaries."""
    def text(v: Level) -> str:
        return f"{v:g}" if isinstance(v, (int, float)) else "(" + ",".join(f"{x:g}" for x in v) + ")"

    return f"(x/255 - {text(mean)}) / {text(std)}"
