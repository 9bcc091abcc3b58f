"""The input normalisation of uint8 X-rays, the same in training and prediction of every
semantic family: ``(u8 / 255 - MEAN) / STD``."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MEAN", "STD", "normalise", "normalise_array"]

#: Input normalisation of uint8 X-rays: (u8 / 255 - MEAN) / STD (train and predict alike).
MEAN, STD = 0.5, 0.25


def normalise(u8: Any) -> Any:
    """float32 torch tensor (..., H, W) network input from a uint8 torch tensor of pixels."""
    return (u8.float() / 255.0 - MEAN) / STD


def normalise_array(u8: np.ndarray) -> np.ndarray:
    """float32 numpy (..., H, W) network input from uint8 (or float 0..255) pixels."""
    return (u8.astype(np.float32) / 255.0 - MEAN) / STD
