"""Crop geometry of the refiner, shared by training and prediction so the two agree (numpy + cv2).

A bone's input is its box grown by ``margin`` of its side on each side (clipped to the image),
cut from the full-resolution image and resized to R x R (``INTER_AREA`` when shrinking,
``INTER_LINEAR`` when growing), with the first stage's soft mask of that bone in the same window
as a second channel. The refined logits are resized back to the window bilinearly, then the
sigmoid gives the bone's probabilities at full resolution.

Boxes are ``(y0, x0, y1, x1)`` integer pixels with exclusive ends.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolohand.models.shared.normalise import normalise_array

__all__ = ["Box", "grow_box", "resize_to", "input_planes", "degrade_prior", "jitter_box"]

Box = tuple[int, int, int, int]


def grow_box(box: Box, margin: float, hw: tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` x its height/width on each side, clipped to an (H, W) image."""
    y0, x0, y1, x1 = box
    dy, dx = int(np.ceil((y1 - y0) * margin)), int(np.ceil((x1 - x0) * margin))
    return max(0, y0 - dy), max(0, x0 - dx), min(hw[0], y1 + dy), min(hw[1], x1 + dx)


def resize_to(plane: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size): area averaging when shrinking (no aliasing), bilinear when growing."""
    shrink = plane.shape[0] >= size and plane.shape[1] >= size
    return cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def input_planes(image: np.ndarray, prior: np.ndarray, size: int) -> np.ndarray:
    """float32 (2, size, size) network input: the window's pixels (normalised as the smp family's)
    and its prior probabilities mapped to [-1, 1]. image uint8 (h, w), prior float32 (h, w)."""
    img = normalise_array(resize_to(image, size))
    pri = resize_to(prior.astype(np.float32), size) * 2.0 - 1.0
    return np.stack([img, pri])


def jitter_box(box: Box, frac: float, rng: np.random.Generator, limit: Box) -> Box:
    """The box as a detector might return it: centre shifted, sides scaled (independently, so the
    aspect changes too) by up to ``frac`` of the side; kept inside ``limit`` and at least 2 px."""
    y0, x0, y1, x1 = box
    cy, cx, h, w = (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0
    cy += rng.uniform(-frac, frac) * h
    cx += rng.uniform(-frac, frac) * w
    h *= 1 + rng.uniform(-frac, frac)
    w *= 1 + rng.uniform(-frac, frac)
    ly0, lx0, ly1, lx1 = limit
    ny0, nx0 = max(ly0, int(round(cy - h / 2))), max(lx0, int(round(cx - w / 2)))
    ny1, nx1 = min(ly1, max(ny0 + 2, int(round(cy + h / 2)))), min(lx1, max(nx0 + 2, int(round(cx + w / 2))))
    return ny0, nx0, ny1, nx1


def degrade_prior(mask: np.ndarray, box_in_window: Box, stride: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (h, w) probabilities that look like a YOLO soft mask of the bone ``mask`` (bool (h, w)).

    YOLO's masks are prototypes at ``stride`` original pixels per cell, upsampled bilinearly and
    cut to the detected box: so the mask is area-averaged to that grid, grown or shrunk by up to
    a cell, blurred, brought back to full size, and zeroed outside ``box_in_window``.
    """
    h, w = mask.shape
    gh, gw = max(2, int(round(h / stride))), max(2, int(round(w / stride)))
    coarse = cv2.resize(mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
    k = int(rng.integers(-1, 2))  # dilate (+1), keep (0) or erode (-1) by one cell
    if k:
        op = cv2.dilate if k > 0 else cv2.erode
        coarse = op(coarse, np.ones((3, 3), np.uint8))
    sigma = float(rng.uniform(0.3, 1.0))
    coarse = cv2.GaussianBlur(coarse, (0, 0), sigma)
    prior = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    prior = np.clip(prior * rng.uniform(0.8, 1.2), 0.0, 1.0)
    y0, x0, y1, x1 = box_in_window
    out = np.zeros_like(prior)
    out[y0:y1, x0:x1] = prior[y0:y1, x0:x1]
    return out
