"""Realistic hand-bone masks and submission CSVs for the benchmarks (numpy + cv2 only).

A hand is 29 filled polygons laid out like the real classes (DESIGN.md): five finger rays of
phalanges and metacarpals (thumb 1-3, index 4-7, middle 8-11, ring 12-15, little 16-19, distal
first), eight carpals clustered at the wrist, radius and ulna below. Sizes follow the real data:
radius/ulna about 1.5 % of a 2048x2048 image, pisiform about 0.1 %. Outlines are ellipses with
radial noise (dense pixel contours like the annotations); neighbouring bones overlap a little at
the joints, as in X-rays.

Three "models" predicting the same test set are simulated by :func:`make_submission` with the same
``hand_seed`` and different ``seed``: the hands are the same, each model's outlines are jittered.

Also the pieces every benchmark shares: the competition notebooks' dense RLE codec
(:func:`kaggle_decode`, :func:`kaggle_encode`: "the naive way" the benchmarks time against),
a wall + CPU :class:`Timer`, and the common command-line options (:func:`bench_parser`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from yolohand.core import rle  # noqa: E402
from yolohand.core.classes import NUM_CLASSES  # noqa: E402
from yolohand.core.submission import write_submission  # noqa: E402

#: Height = width of the competition images.
H = W = 2048


# --------------------------------------------------------------------------- shared by the benchmarks


def kaggle_decode(rle: object, shape: tuple[int, int] = (H, W), dtype: type = np.uint8) -> np.ndarray:
    """The competition notebooks' ``rle_decode``: a dense (H, W) array, 1 on the runs (NaN/blank -> 0)."""
    img = np.zeros(shape[0] * shape[1], dtype=dtype)
    if isinstance(rle, str) and rle.strip():
        s = rle.split()
        starts, lengths = (np.asarray(x, dtype=int) for x in (s[0::2], s[1::2]))
        starts -= 1
        for lo, hi in zip(starts, starts + lengths):
            img[lo:hi] = 1
    return img.reshape(shape)


def kaggle_encode(mask: np.ndarray) -> str:
    """The notebooks' ``rle_encode``: the whole flattened mask, padded, diffed, paired."""
    pixels = np.concatenate([[0], np.asarray(mask).flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


class Timer:
    """``with Timer() as t: ...`` then ``t.wall`` / ``t.cpu`` seconds (process CPU: steadier on a shared box)."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def bench_parser(doc: str, images: int = 288, naive_images: int | None = 16) -> argparse.ArgumentParser:
    """Options of the CSV benchmarks: ``--images`` per CSV (288 = the test set) and, when the
    dense baseline is timed on a subset and extrapolated, ``--naive-images``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--images", type=int, default=images, help="images per CSV (29 rows each)")
    if naive_images is not None:
        ap.add_argument("--naive-images", type=int, default=naive_images, help="images the dense loop is timed on")
    return ap

# Half-lengths / half-widths in 2048-pixel units, distal -> proximal (metacarpal last).
_THUMB = [(42, 26), (70, 30), (110, 36)]
_FINGER = [(40, 22), (55, 25), (85, 29), (135, 34)]
#: Finger rays: (first class index, bone sizes, angle from vertical in degrees, base x offset, length scale)
_RAYS = [
    (0, _THUMB, -48, -200, 0.95),
    (3, _FINGER, -16, -110, 1.0),
    (7, _FINGER, -2, -20, 1.08),
    (11, _FINGER, 11, 75, 1.0),
    (15, _FINGER, 24, 160, 0.82),
]
#: Carpals (class 19..26): centre offset from the wrist centre (x, y), half-axes, angle.
_CARPALS = [
    ((-130, -70), (52, 42), 20),   # Trapezium
    ((-70, -95), (42, 34), 0),     # Trapezoid
    ((0, -80), (62, 45), 90),      # Capitate
    ((90, -75), (58, 44), 70),     # Hamate
    ((-110, 30), (70, 42), 40),    # Scaphoid
    ((-5, 40), (50, 42), 0),       # Lunate
    ((95, 25), (48, 38), 10),      # Triquetrum
    ((125, 5), (36, 30), 0),       # Pisiform (overlaps Triquetrum, as in the data)
]
#: Radius, Ulna: centre offset from the wrist centre, half-axes, angle.
_FOREARM = [((-70, 370), (88, 290), 0), ((135, 390), (62, 290), 0)]


def _outline(phases: np.ndarray, center, axes, angle: float) -> np.ndarray:
    """Int32 (N, 2) x,y dense contour: an ellipse with smooth radial noise (pixel coordinates)."""
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    wobble = 1 + 0.04 * np.sin(3 * t + phases[0]) + 0.02 * np.sin(7 * t + phases[1])
    x = axes[0] * np.cos(t) * wobble
    y = axes[1] * np.sin(t) * wobble
    a = math.radians(angle)
    xr = center[0] + x * math.cos(a) - y * math.sin(a)
    yr = center[1] + x * math.sin(a) + y * math.cos(a)
    return np.stack((xr, yr), axis=1).round().astype(np.int32)


def hand_polygons(
    rng: np.random.Generator,
    h: int = 2048,
    w: int = 2048,
    jitter_rng: np.random.Generator | None = None,
    jitter: float = 0.0,
) -> list[np.ndarray]:
    """29 int32 (N, 2) x,y polygons of one hand in class order.

    ``rng`` fixes the hand (pose, size, side); ``jitter_rng`` + ``jitter`` (pixels at 2048) move
    each bone a little, as a model's prediction differs from the truth.
    """
    s = min(h, w) / 2048
    scale = rng.uniform(0.9, 1.1) * s
    side = rng.choice([-1, 1])  # left or right hand
    spin = rng.uniform(-12, 12)
    wrist = np.array([w / 2 + rng.uniform(-80, 80) * s, h * 0.66 + rng.uniform(-60, 60) * s])
    params: list[tuple[tuple[float, float], tuple[float, float], float]] = [None] * NUM_CLASSES  # type: ignore[list-item]

    def place(dx: float, dy: float) -> tuple[float, float]:
        a = math.radians(spin)
        dx *= side
        return (wrist[0] + scale * (dx * math.cos(a) - dy * math.sin(a)),
                wrist[1] + scale * (dx * math.sin(a) + dy * math.cos(a)))

    for first, bones, ray_angle, base_x, length in _RAYS:
        ang = math.radians(ray_angle + rng.uniform(-4, 4))
        dist = 130.0  # metacarpal base sits above the carpals
        for k in reversed(range(len(bones))):  # metacarpal first, outwards
            half_len, half_w = bones[k][0] * length, bones[k][1]
            dist += half_len
            dx = base_x + dist * math.sin(ang)
            dy = -dist * math.cos(ang)
            params[first + k] = (place(dx, dy), (half_w * scale, half_len * scale),
                                 side * math.degrees(ang) + spin)
            dist += half_len - 6  # joints overlap a few pixels
    for i, ((dx, dy), axes, angle) in enumerate(_CARPALS + _FOREARM):
        params[19 + i] = (place(dx, dy), (axes[0] * scale, axes[1] * scale), side * angle + spin)

    polys = []
    for center, axes, angle in params:
        axes = tuple(a * rng.uniform(0.93, 1.07) for a in axes)
        phases = rng.uniform(0, 2 * np.pi, 2)
        if jitter_rng is not None and jitter > 0:
            center = (center[0] + jitter_rng.normal(0, jitter) * s, center[1] + jitter_rng.normal(0, jitter) * s)
            axes = tuple(a * (1 + jitter_rng.normal(0, jitter / 200)) for a in axes)
            angle = angle + jitter_rng.normal(0, jitter / 2)
        polys.append(_outline(phases, center, axes, angle))
    return polys


def make_bone_masks(rng: np.random.Generator, h: int = 2048, w: int = 2048) -> np.ndarray:
    """Bool (29, h, w) masks of one random hand (polygon fills, as the ground truth is made)."""
    masks = np.zeros((NUM_CLASSES, h, w), np.uint8)
    for c, poly in enumerate(hand_polygons(rng, h, w)):
        cv2.fillPoly(masks[c], [poly], 1)
    return masks.view(bool)


def _poly_runs(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """Runs of a filled polygon, drawn in its bounding-box crop only (same pixels as a full fill).

    The crop is the box clipped to the image, so that cv2 clips an overhanging polygon at the
    same lines as a full-image fill would (its clipping changes edge pixels).
    """
    x0, y0 = np.maximum(poly.min(axis=0), 0)
    x1, y1 = np.minimum(poly.max(axis=0), (w - 1, h - 1))
    if x0 > x1 or y0 > y1:
        return rle.empty_runs()
    crop = np.zeros((int(y1 - y0) + 1, int(x1 - x0) + 1), np.uint8)
    cv2.fillPoly(crop, [poly - np.array([x0, y0], np.int32)], 1)
    return rle.crop_to_runs(crop, int(y0), int(x0), (h, w))


def image_names(n_images: int) -> list[str]:
    """Realistic file names (``image<13-digit timestamp>.png``), in sorted order."""
    return [f"image{1661319116107 + 7919 * i}.png" for i in range(n_images)]


def iter_predictions(
    n_images: int = 288, seed: int = 0, jitter: float = 2.0, hand_seed: int = 12345,
    h: int = 2048, w: int = 2048,
) -> Iterator[tuple[str, list[str]]]:
    """Yield (image_name, 29 RLE strings): the hands fixed by ``hand_seed``, jitter by ``seed``."""
    model_rng = np.random.default_rng([seed, 1])
    for i, name in enumerate(image_names(n_images)):
        polys = hand_polygons(np.random.default_rng([hand_seed, i]), h, w, model_rng, jitter)
        yield name, [rle.runs_to_string(_poly_runs(p, h, w)) for p in polys]


def make_submission(
    path: str | os.PathLike, n_images: int = 288, seed: int = 0, jitter: float = 2.0,
    hand_seed: int = 12345, h: int = 2048, w: int = 2048, force: bool = True,
) -> Path:
    """Write a realistic ``n_images`` x 29-row submission CSV to ``path`` and return the path.

    CSVs with the same ``hand_seed`` and different ``seed`` describe the same hands with
    independently jittered outlines (``jitter`` pixels at 2048; 0 gives the "truth"), like
    several models' predictions of one test set.
    """
    write_submission(path, iter_predictions(n_images, seed, jitter, hand_seed, h, w), force=force)
    return Path(path)
