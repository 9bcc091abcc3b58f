"""Sliding windows for the semantic families: tiles of the network's plane, blended with a Gaussian.

``--window W --stride T`` (smp): the image, resized to the checkpoint's S x S plane, is cut into
W x W windows whose top-left corners are 0, T, 2T, ... with the last one flush with the far edge
(:func:`window_starts`), so every pixel is covered and no window leaves the image. Each window's
logits are weighted by a Gaussian centred on the window (sigma W/8, nnU-Net's choice: a window's
borders, where the network sees the least context, count least), summed, and divided by the summed
weights (:func:`sliding_logits`). One window covering the whole plane is the plain forward pass,
exactly. Memory: the (N, 29, S, S) float32 sums (as the plain pass' logits) plus one batch of windows.

torch only; the forward function is the caller's (an nn.Module, or a wrapper running it under autocast).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["SIGMA", "window_starts", "gaussian_weight", "sliding_logits", "check_window"]

#: Gaussian sigma as a fraction of the window side.
SIGMA = 1.0 / 8.0


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` px every ``stride`` px along ``size`` px, the last one
    flush with the end (``[0]`` when the window covers ``size``)."""
    if window >= size:
        return [0]
    n = math.ceil((size - window) / stride) + 1
    return sorted({min(i * stride, size - window) for i in range(n)})


def gaussian_weight(h: int, w: int, device: Any = None, sigma: float = SIGMA):
    """float32 (h, w) Gaussian weight, peak 1 at the centre, sigma = ``sigma`` x each side."""
    import torch

    def axis(n: int):
        x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2
        return torch.exp(-0.5 * (x / max(n * sigma, 1e-6)) ** 2)

    return axis(h)[:, None] * axis(w)[None, :]


def check_window(window: int | None, stride: int | None, what: str = "--window") -> tuple[int | None, int | None]:
    """(window, stride) with the stride defaulted to half the window; window 0/None: (None, None).
    YolohandError for a stride < 1 or larger than the window (it would leave pixels uncovered)."""
    from yolohand.errors import YolohandError

    if not window:
        return None, None
    window = int(window)
    stride = int(stride) if stride else max(1, window // 2)
    if window < 1:
        raise YolohandError(f"{what} {window}: expected a window side >= 1 px (0: no windows)")
    if not 1 <= stride <= window:
        raise YolohandError(f"--stride {stride}: expected 1 to the window side ({window}); a larger stride leaves "
                            "pixels no window covers")
    return window, stride


def sliding_logits(forward: Callable[[Any], Any], x, window: int, stride: int, batch: int = 1):
    """float32 logits (N, K, H, W) of ``x`` (N, C, H, W) from ``forward`` run on windows (module docstring).

    ``batch``: windows per forward pass. A window larger than a side is cut to that side; one window
    covering the whole input returns ``forward(x)`` itself (the identity case, exactly).
    """
    import torch

    n, _, h, w = x.shape
    wy, wx = min(window, h), min(window, w)
    if wy == h and wx == w:
        return forward(x).float()
    ys, xs = window_starts(h, wy, stride), window_starts(w, wx, stride)
    weight = gaussian_weight(wy, wx, x.device)
    norm = torch.zeros((h, w), dtype=torch.float32, device=x.device)
    for y0 in ys:
        for x0 in xs:
            norm[y0 : y0 + wy, x0 : x0 + wx] += weight
    tiles = [(i, y0, x0) for i in range(n) for y0 in ys for x0 in xs]
    out = None
    for start in range(0, len(tiles), max(1, int(batch))):
        chunk = tiles[start : start + max(1, int(batch))]
        logits = forward(torch.stack([x[i, :, y0 : y0 + wy, x0 : x0 + wx] for i, y0, x0 in chunk])).float()
        if out is None:
            out = torch.zeros((n, logits.shape[1], h, w), dtype=torch.float32, device=x.device)
        for (i, y0, x0), lg in zip(chunk, logits):
            out[i, :, y0 : y0 + wy, x0 : x0 + wx] += lg * weight
    return out.div_(norm)
