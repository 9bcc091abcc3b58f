"""Polygon clean-up and repair for YOLO-seg labels (shapely 2).

:func:`repair_polygon` turns one annotated outline (int pixel points) into the single ring
written as one label line, or a reason to drop it. Steps:

1. **Lossless clean-up, always (numpy, no shapely):** consecutive repeated points (including an
   explicit closing point) and collinear points (zero cross product with both neighbours, which
   also removes zero-width spikes) are removed until none is left. Dense pixel contours shrink a
   lot; the filled area does not change (a zero-width spike only covers its own line pixels).
2. **Drop** when fewer than 3 distinct points remain or the area is zero (a warning, never an
   error: such an outline is not a bone).
3. **Slow path, only when needed:** shapely runs only for polygons that cheap checks flag: a
   point outside ``[0, W-1] x [0, H-1]`` or ``shapely.is_valid`` False (evaluated vectorised for
   all polygons of an image by the caller, see :func:`validity`). Then

   * invalid (self-intersecting, self-touching) -> ``shapely.make_valid``;
   * outside the image -> ``shapely.clip_by_rect`` to ``[0, W-1] x [0, H-1]`` (pixel centres),
     so normalised coordinates stay within [0, 1] as ultralytics requires;
   * parts: polygon parts with area < :data:`MIN_PART_AREA` px^2 (slivers that make_valid cuts
     off at crossings) are dropped; holes are filled (bones are solid; a hole can only come from
     a looped outline); line/point debris from make_valid is ignored;
   * **several parts -> one instance.** Each bone occurs exactly once per image and the predict
     side keeps one instance per class, so splitting a bone into several instances of its class
     would teach the detector duplicate boxes, and keeping only the largest part would throw away
     ground truth. The parts are joined into one ring by zero-width bridges (there and back along
     the same segment, closest vertices first), the same technique ultralytics uses for COCO
     multi-polygon instances (``merge_multi_segment``). Filled with cv2 this gives the union of the
     parts plus the bridge's line pixels; a self-touching outline (the common case) has bridges of
     length zero.

Every change that alters geometry is reported as an action string: ``made-valid``,
``clipped``, ``merged-parts:N``, ``dropped-parts:N``, ``holes-filled:N``. The lossless clean-up
is only counted (``points_removed``) because nearly every dense contour has collinear points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

#: Parts smaller than this (px^2) left by make_valid or clipping are dropped.
MIN_PART_AREA: float = 1.0


@dataclass
class RepairResult:
    """Outcome for one polygon: ``points`` float64 (M, 2) x, y pixels (M >= 3), or ``dropped``."""

    points: np.ndarray | None
    actions: list[str] = field(default_factory=list)
    dropped: str | None = None
    points_removed: int = 0


def shoelace_area(points: np.ndarray) -> float:
    """Absolute area of a closed ring given as (N, 2) points (no closing duplicate needed)."""
    x = points[:, 0].astype(np.float64)
    y = points[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def simplify_ring(points: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Remove repeated and collinear points of a closed ring until none is left.

    ``points`` (N, 2) int or float. A point is collinear when the sine of the turn at it is at
    most ``tol`` (|cross| <= tol * |d1| * |d2|): 0 means exactly collinear, as for integer
    points; float points (from shapely) are first rounded to 1e-4 px so that near-duplicates
    become duplicates. Returns a new (M, 2) array of the same dtype, M possibly < 3.
    """
    pts = np.asarray(points)
    if pts.dtype.kind == "f":
        pts = np.round(pts, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    while len(pts) >= 2:
        nxt = np.concatenate((pts[1:], pts[:1]))  # cheaper than np.roll for small arrays
        dup = np.all(pts == nxt, axis=1)
        if dup.any():  # duplicates first, so no zero-length edge reaches the cross product
            pts = pts[~dup]
            continue
        if len(pts) < 3:
            break
        d1 = (pts - np.concatenate((pts[-1:], pts[:-1]))).astype(np.float64)
        d2 = (nxt - pts).astype(np.float64)
        cross = np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
        if tol > 0:
            col = cross <= tol * np.hypot(d1[:, 0], d1[:, 1]) * np.hypot(d2[:, 0], d2[:, 1])
        else:
            col = cross == 0
        if not col.any():
            break
        if col.all():  # every point on one line: nothing left
            return pts[:0]
        pts = pts[~col]
    return pts


def validity(rings: list[np.ndarray]) -> np.ndarray:
    """bool (K,): shapely validity of K rings (each (N >= 3, 2)), in one vectorised call."""
    if not rings:
        return np.zeros(0, bool)
    lengths = np.fromiter((len(r) for r in rings), np.int64, len(rings))
    coords = np.concatenate(rings).astype(np.float64)
    index = np.repeat(np.arange(len(rings)), lengths)
    lr = shapely.linearrings(coords, indices=index)
    return shapely.is_valid(shapely.polygons(lr))


def in_bounds(points: np.ndarray, h: int, w: int) -> bool:
    """True when every point lies in ``[0, w-1] x [0, h-1]``."""
    lo, hi = points.min(0), points.max(0)
    return bool(lo[0] >= 0 and lo[1] >= 0 and hi[0] <= w - 1 and hi[1] <= h - 1)


def _parts(geom: shapely.Geometry) -> list[shapely.Polygon]:
    """Polygon parts of any geometry (lines and points from make_valid are ignored)."""
    if isinstance(geom, shapely.Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, (shapely.MultiPolygon, shapely.GeometryCollection)):
        out: list[shapely.Polygon] = []
        for g in geom.geoms:
            out.extend(_parts(g))
        return out
    return []


def bridge_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Join closed rings (each (N_i, 2), no closing duplicate) into one ring via zero-width bridges.

    Rings are chained greedily, each to the not-yet-used ring with the closest vertex; the walk
    enters ring i+1 at that vertex, goes all the way round and returns along the same bridge.
    Returns float64 (M, 2) without a closing duplicate and without consecutive repeats.
    """
    rings = [np.asarray(r, np.float64) for r in rings]
    order = [0]
    links: list[tuple[int, int]] = []  # (exit vertex in chain[i], entry vertex in chain[i+1])
    left = list(range(1, len(rings)))
    while left:
        cur = rings[order[-1]]
        best = None
        for j in left:
            d = ((cur[:, None, :] - rings[j][None, :, :]) ** 2).sum(-1)
            a, b = np.unravel_index(int(np.argmin(d)), d.shape)
            if best is None or d[a, b] < best[0]:
                best = (float(d[a, b]), j, int(a), int(b))
        _, j, a, b = best
        order.append(j)
        links.append((a, b))
        left.remove(j)

    def walk(i: int, entry: int) -> list[np.ndarray]:
        ring = np.roll(rings[order[i]], -entry, axis=0)
        if i == len(order) - 1:
            return [ring, ring[:1]]
        x = (links[i][0] - entry) % len(ring)
        return [ring[: x + 1], *walk(i + 1, links[i][1]), ring[x:], ring[:1]]

    seq = np.concatenate(walk(0, links[0][0] if links else 0))[:-1]
    keep = np.ones(len(seq), bool)
    keep[1:] = np.any(seq[1:] != seq[:-1], axis=1)
    seq = seq[keep]
    if len(seq) > 1 and np.array_equal(seq[0], seq[-1]):
        seq = seq[:-1]
    return seq


def _slow_path(points: np.ndarray, h: int, w: int, valid: bool, result: RepairResult) -> RepairResult:
    if h < 2 or w < 2:  # no pixel-centre rectangle with area: nothing can be clipped into it
        result.dropped = f"the image ({w}x{h} px) is too small to hold a polygon"
        return result
    geom: shapely.Geometry = shapely.Polygon(points.astype(np.float64))
    if not valid:
        geom = shapely.make_valid(geom)
        result.actions.append("made-valid")
    if not in_bounds(points, h, w):
        geom = shapely.clip_by_rect(geom, 0.0, 0.0, float(w - 1), float(h - 1))
        result.actions.append("clipped")
    parts = _parts(geom)
    small = [p for p in parts if p.area < MIN_PART_AREA]
    parts = sorted((p for p in parts if p.area >= MIN_PART_AREA), key=lambda p: -p.area)
    if small and parts:
        result.actions.append(f"dropped-parts:{len(small)}")
    holes = sum(len(p.interiors) for p in parts)
    if holes:
        result.actions.append(f"holes-filled:{holes}")
    rings = []
    for p in parts:
        ring = np.asarray(p.exterior.coords, np.float64)[:-1]
        ring = simplify_ring(ring, tol=1e-9)
        if len(ring) >= 3 and shoelace_area(ring) > 0:
            rings.append(ring)
    if not rings:
        outside = valid and not parts and not in_bounds(points, h, w)
        result.dropped = "outside the image" if outside else "no area left after repair"
        return result
    if len(rings) > 1:
        result.actions.append(f"merged-parts:{len(rings)}")
        result.points = bridge_rings(rings)
    else:
        result.points = rings[0]
    return result


def repair_polygon(
    points: np.ndarray, h: int, w: int, valid: bool | None = None, points_removed: int | None = None
) -> RepairResult:
    """Clean up / repair one polygon of an (h, w) image (see the module docstring).

    ``points`` int (N, 2) x, y pixels. ``valid``: shapely validity of the simplified ring when
    the caller computed it in bulk with :func:`prepare`; then also pass ``points_removed`` and
    ``points`` already simplified (the clean-up is skipped). None: everything is done here.
    """
    if points_removed is None:
        n0 = len(points)
        pts = simplify_ring(np.asarray(points))
        points_removed = n0 - len(pts)
    else:
        pts = np.asarray(points)
    result = RepairResult(None, points_removed=points_removed)
    if len(pts) < 3:
        result.dropped = f"fewer than 3 distinct non-collinear points ({len(pts)})"
        return result
    if valid is None:
        valid = bool(validity([pts])[0])
    if valid and in_bounds(pts, h, w):
        result.points = pts.astype(np.float64)
        return result
    return _slow_path(pts, h, w, valid, result)


def prepare(points_list: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Simplify each polygon and compute validity in bulk for those with >= 3 points and area.

    Returns (simplified rings, validity bool (K,)); rings too small for shapely count as valid
    (repair_polygon drops them anyway).
    """
    simple = [simplify_ring(np.asarray(p)) for p in points_list]
    usable = [i for i, r in enumerate(simple) if len(r) >= 3]
    valid = np.ones(len(simple), bool)
    if usable:
        valid[usable] = validity([simple[i] for i in usable])
    return simple, valid


__all__ = [
    "MIN_PART_AREA", "RepairResult", "shoelace_area", "simplify_ring", "validity", "in_bounds",
    "bridge_rings", "repair_polygon", "prepare",
]
