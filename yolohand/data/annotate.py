"""Annotation noise: the polygon an annotator would draw around a bone, not its exact mask.

Real labels are polygons clicked on the perceived edge: tens of points, each off the true edge
by a pixel or two, the error correlated between neighbouring clicks, and at overlaps the
annotator sometimes cuts or adds a sliver. :func:`annotator_polygon` turns the renderer's exact
pixel contour into such a polygon; the scored ground truth is its fill (as in the competition).
All distances scale with the image: the figures are for a 2048-pixel image.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolohand.data.layout import polygon_crop

POINT_SPACING_PX = 9.0  # mean distance between clicks at 2048 (tens of points per bone)
MIN_POINTS, MAX_POINTS = 14, 140
EDGE_SIGMA_PX = (0.5, 1.3)  # per-image range of the click error along the normal, at 2048
EDGE_BIAS_PX = (-0.4, 0.3)  # per-bone systematic offset (inside < 0 < outside), at 2048
SLIVER_P = 0.35  # chance that an overlapping bone gets a sliver cut or added at the overlap
SLIVER_PX = (2.0, 4.5)  # its depth at 2048


def resample_closed(points: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points equally spaced along a closed polyline, with unit outward-ish normals.

    ``points`` float (M, 2) x, y. Returns (float64 (n, 2) points, float64 (n, 2) normals pointing
    away from the enclosed area whatever the polyline's orientation).
    """
    p = np.asarray(points, float)
    seg = np.diff(np.vstack([p, p[:1]]), axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    t = np.linspace(0.0, arc[-1], n, endpoint=False)
    closed = np.vstack([p, p[:1]])
    q = np.stack([np.interp(t, arc, closed[:, 0]), np.interp(t, arc, closed[:, 1])], axis=1)
    tangent = np.roll(q, -1, axis=0) - np.roll(q, 1, axis=0)
    tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    x, y = q[:, 0], q[:, 1]
    signed_area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return q, normal if signed_area > 0 else -normal


def _overlap_points(q: np.ndarray, others: list[np.ndarray], size: int) -> np.ndarray:
    """bool (n,): which points lie inside any of the other bones' exact fills."""
    inside = np.zeros(len(q), bool)
    qi = np.round(q).astype(int).clip(0, size - 1)
    lo, hi = qi.min(0), qi.max(0)
    for poly in others:
        if (poly.max(0) < lo).any() or (poly.min(0) > hi).any():  # boxes apart: no overlap
            continue
        crop, y0, x0 = polygon_crop(poly, size, size)
        if crop.size == 0:
            continue
        yy, xx = qi[:, 1] - y0, qi[:, 0] - x0
        ok = (yy >= 0) & (yy < crop.shape[0]) & (xx >= 0) & (xx < crop.shape[1])
        inside[ok] |= crop[yy[ok], xx[ok]]
    return inside


def annotator_polygon(
    contour: np.ndarray, exact: dict[str, np.ndarray], name: str, size: int, rng: np.random.Generator
) -> np.ndarray:
    """An annotator's polygon of one bone: int32 (N, 2) x, y, N in tens.

    ``contour``: int32 (M, 2) the exact pixel contour; ``exact``: every bone's exact contour (to
    find overlaps); ``size``: image side. Points on the image border stay on it (the forearm runs
    off the image); every point is kept inside the image.
    """
    scale = size / 2048
    perimeter = float(cv2.arcLength(contour.reshape(-1, 1, 2).astype(np.float32), True))
    n = int(np.clip(perimeter / (POINT_SPACING_PX * scale), MIN_POINTS, MAX_POINTS))
    q, normal = resample_closed(contour, n)
    sigma = rng.uniform(*EDGE_SIGMA_PX) * scale
    noise = rng.normal(0.0, sigma, n)
    noise = 0.25 * np.roll(noise, 1) + 0.5 * noise + 0.25 * np.roll(noise, -1)  # neighbouring clicks agree
    offset = rng.uniform(*EDGE_BIAS_PX) * scale + noise * np.sqrt(8 / 3)  # smoothing keeps sigma
    others = [p for other, p in exact.items() if other != name]
    if rng.random() < SLIVER_P:
        at_overlap = _overlap_points(q, others, size)
        if at_overlap.any():
            offset[at_overlap] += rng.choice([-1.0, 1.0]) * rng.uniform(*SLIVER_PX) * scale
    on_border = (q <= 0.5).any(axis=1) | (q >= size - 1.5).any(axis=1)
    offset[on_border] = 0.0
    pts = np.round(q + normal * offset[:, None]).astype(np.int64).clip(0, size - 1)
    keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)
    pts = pts[keep] if keep.sum() >= 3 else pts
    return pts.astype(np.int32)


__all__ = ["annotator_polygon", "resample_closed", "POINT_SPACING_PX", "EDGE_SIGMA_PX", "SLIVER_P"]
