"""How a dataset compares with the real competition data's published statistics.

:func:`dataset_stats` streams over any root in the competition layout (ours or another
generator's: only images + polygon JSON are needed) and measures what the phantom must match;
:func:`compare_table` lines the figures up with the real ones and a tolerance per row. The
label ceiling (mean Dice of the polygons against the renderer's exact masks) needs
``<split>/exact_json/`` (written by ``yolohand synth --style xray``) and is skipped without it.
The bent-wrist share is measured from the labels alone: the angle between the radius' axis and
the middle metacarpal's (finger-11), bent when it exceeds :data:`BENT_DEG`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.data.layout import find_split, polygon_crop, read_annotation, read_image
from yolohand.data.synth import EXACT_DIR
from yolohand.errors import YolohandError

BENT_DEG = 11.0  # radius vs middle metacarpal axis: at least this many degrees is a bent wrist

#: (statistic, real figure, tolerance, how to read it). Real figures: DESIGN.md and the issue.
REAL = {
    "pixel_mean": (0.124, 0.03),
    "pixel_std": (0.168, 0.03),
    "bone_share": (0.12, 0.012),
    "multi_label_share": (0.0041, 0.0015),
    "iou_triquetrum_pisiform": (0.45, 0.08),
    "iou_trapezoid_trapezium": (0.19, 0.06),
    "area_finger16": (3900.0, 800.0),
    "area_radius": (75000.0, 15000.0),
    "bent_train": (0.11, 0.08),
    "bent_test": (0.58, 0.15),
    "label_ceiling": (0.98, 0.005),
    # The intensity ladder, finger waist, carpal shapes and radius texture of DESIGN.md 1b: medians
    # (0-1) per image with the labels painted in class order, averaged over images; measured as
    # ../shared/tools/ladder.py measures the held-back real radiographs.
    "background": (0.042, 0.05),
    "tissue": (0.210, 0.05),
    "fingertips": (0.305, 0.05),
    "phalanges": (0.408, 0.05),
    "metacarpals": (0.463, 0.05),
    "carpals": (0.532, 0.05),
    "radius": (0.600, 0.05),
    "ulna": (0.616, 0.05),
    "finger_waist": (0.513, 0.07),
    "carpal_ellipse_iou": (0.796, 0.04),
    "radius_texture": (0.34, 0.08),
}
#: Class groups of the ladder (class indices).
LADDER_GROUPS = {"fingertips": [0, 3, 7, 11, 15], "phalanges": [1, 4, 5, 8, 9, 12, 13, 16, 17],
                 "metacarpals": [2, 6, 10, 14, 18], "carpals": list(range(19, 27)), "radius": [27], "ulna": [28]}
LADDER = ("background", "tissue", *LADDER_GROUPS, "finger_waist", "carpal_ellipse_iou", "radius_texture")


@dataclass
class Accumulator:
    """Running sums over images (memory flat in the number of images)."""

    images: int = 0
    pixels: int = 0
    pix_sum: float = 0.0
    pix_sq: float = 0.0
    bone: int = 0
    multi: int = 0
    iou_tp: list[float] = field(default_factory=list)
    iou_tt: list[float] = field(default_factory=list)
    area_f16: list[float] = field(default_factory=list)
    area_radius: list[float] = field(default_factory=list)
    bent: dict[str, list[bool]] = field(default_factory=lambda: {"train": [], "test": []})
    ceiling: list[np.ndarray] = field(default_factory=list)  # per image float (29,) Dice
    ladder: dict[str, list[float]] = field(default_factory=dict)  # per image figure (keys of LADDER)


def _masks(polys: dict[int, np.ndarray], h: int, w: int) -> list[tuple[np.ndarray, int, int]]:
    return [polygon_crop(polys[c], h, w) if c in polys else (np.zeros((0, 0), bool), 0, 0) for c in range(NUM_CLASSES)]


def _paste(crop: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    full = np.zeros((h, w), bool)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return full


def _iou(a: tuple, b: tuple, h: int, w: int) -> float:
    ma, mb = _paste(*a, h, w), _paste(*b, h, w)
    union = np.count_nonzero(ma | mb)
    return np.count_nonzero(ma & mb) / union if union else 0.0


def _axis_deg(points: np.ndarray) -> float:
    """Direction of a polygon's principal axis, degrees in [0, 180)."""
    p = points.astype(float) - points.mean(0)
    _, vecs = np.linalg.eigh(p.T @ p)
    v = vecs[:, -1]
    return float(np.degrees(np.arctan2(v[1], v[0])) % 180)


def wrist_angle(polys: dict[int, np.ndarray]) -> float:
    """Angle (degrees, 0..90) between the radius' and the middle metacarpal's long axes."""
    diff = abs(_axis_deg(polys[CLASS_INDEX["Radius"]]) - _axis_deg(polys[CLASS_INDEX["finger-11"]]))
    return min(diff, 180 - diff)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return (2 * np.count_nonzero(a & b) + 1e-4) / (np.count_nonzero(a) + np.count_nonzero(b) + 1e-4)


def add_image(acc: Accumulator, image: np.ndarray, polys: dict[int, np.ndarray], split: str,
              exact: dict[int, np.ndarray] | None) -> None:
    """Fold one image (uint8 (H, W)) and its polygons (class index -> int (N, 2)) into ``acc``."""
    h, w = image.shape[:2]
    g = image.astype(np.float64) / 255.0
    acc.images += 1
    acc.pixels += h * w
    acc.pix_sum += float(g.sum())
    acc.pix_sq += float((g * g).sum())
    crops = _masks(polys, h, w)
    count = np.zeros((h, w), np.uint8)
    for crop, y0, x0 in crops:
        count[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] += crop
    acc.bone += int(np.count_nonzero(count))
    acc.multi += int(np.count_nonzero(count >= 2))
    ci = CLASS_INDEX
    acc.iou_tp.append(_iou(crops[ci["Triquetrum"]], crops[ci["Pisiform"]], h, w))
    acc.iou_tt.append(_iou(crops[ci["Trapezoid"]], crops[ci["Trapezium"]], h, w))
    acc.area_f16.append(float(np.count_nonzero(crops[ci["finger-16"]][0])) * (2048 * 2048) / (h * w))
    acc.area_radius.append(float(np.count_nonzero(crops[ci["Radius"]][0])) * (2048 * 2048) / (h * w))
    if ci["Radius"] in polys and ci["finger-11"] in polys:
        acc.bent.setdefault(split, []).append(wrist_angle(polys) >= BENT_DEG)
    for name, value in ladder_figures(g, crops).items():
        if value is not None and np.isfinite(value):
            acc.ladder.setdefault(name, []).append(float(value))
    if exact is not None:
        ex = _masks(exact, h, w)
        acc.ceiling.append(np.array([_dice(_paste(*crops[c], h, w), _paste(*ex[c], h, w)) for c in range(NUM_CLASSES)]))


def _waist(mask: np.ndarray) -> float | None:
    """Narrowest width in the middle 40 % of the long axis / widest in the end thirds (pixel
    counts of 20 bins along the principal axis; the outermost bins left out)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 30:
        return None
    p = np.stack([xs, ys], 1).astype(float)
    p -= p.mean(0)
    t = p @ np.linalg.svd(p, full_matrices=False)[2][0]
    bins = np.clip(((t - t.min()) / max(t.max() - t.min(), 1e-9) * 20).astype(int), 0, 19)
    width = np.bincount(bins, minlength=20).astype(float)
    return float(width[8:12].min() / max(width[1:6].max(), width[14:19].max()))


def _ellipse_iou(mask: np.ndarray) -> float | None:
    """IoU of a shape with the ellipse cv2.fitEllipse fits to its outer contour."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    if len(c) < 6:
        return None
    e = np.zeros(mask.shape, np.uint8)
    cv2.ellipse(e, cv2.fitEllipse(c), 1, -1)
    return float((mask & (e > 0)).sum() / max(1, (mask | (e > 0)).sum()))


def ladder_figures(g: np.ndarray, crops: list[tuple[np.ndarray, int, int]]) -> dict[str, float | None]:
    """The ladder rows of one image: ``g`` float (H, W) in 0-1, ``crops`` its 29 label crops.

    Labels are painted in class order where bones overlap (as the real labels were measured).
    Background: median farther than 80 px (at 2048) from any bone; tissue: within 6 px of one.
    """
    import cv2

    h, w = g.shape
    scale = h / 2048
    painted = np.zeros((h, w), np.uint8)
    for c, (crop, y0, x0) in enumerate(crops):
        view = painted[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
        view[crop] = c + 1
    dist = cv2.distanceTransform((painted == 0).astype(np.uint8), cv2.DIST_L2, 5)
    far, near = g[dist > 80 * scale], g[(dist > 0) & (dist <= 6 * scale)]
    out: dict[str, float | None] = {
        "background": float(np.median(far)) if far.size else None,
        "tissue": float(np.median(near)) if near.size else None,
    }
    for group, idx in LADDER_GROUPS.items():
        inside = np.isin(painted, np.asarray(idx) + 1)
        out[group] = float(np.median(g[inside])) if inside.any() else None
    waists = [_waist(painted == c + 1) for c in range(19) if c not in LADDER_GROUPS["fingertips"]]
    ellipses = [_ellipse_iou(painted == c + 1) for c in (21, 22, 23, 24)]
    out["finger_waist"] = float(np.mean([v for v in waists if v is not None])) if any(v is not None for v in waists) else None
    out["carpal_ellipse_iou"] = (float(np.mean([v for v in ellipses if v is not None]))
                                 if any(v is not None for v in ellipses) else None)
    out["radius_texture"] = _radius_texture(g, painted == 28, dist, scale)
    return out


def _radius_texture(g: np.ndarray, radius: np.ndarray, dist: np.ndarray, scale: float) -> float | None:
    """Std of the intensity inside the radius / its contrast to the tissue within 6 px of it."""
    import cv2

    if radius.sum() < 100:
        return None
    ring = cv2.dilate(radius.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(12 * scale) | 1,) * 2))
    beside = g[(ring > 0) & (dist > 0)]
    inside = g[radius]
    contrast = float(np.median(inside)) - (float(np.median(beside)) if beside.size else 0.0)
    return float(inside.std() / contrast) if contrast > 0.02 else None


def _polys_of(path: Path) -> dict[int, np.ndarray]:
    ann = read_annotation(path)
    return {p.class_index: p.points for p in ann.polygons}


def _exact_of(root: Path, split: str, rel: str) -> dict[int, np.ndarray] | None:
    path = root / split / EXACT_DIR / Path(rel).with_suffix(".json")
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())["exact"]
    return {CLASS_INDEX[name]: np.asarray(pts, np.int32) for name, pts in doc.items()}


def dataset_stats(root: str | os.PathLike, limit: int | None = None, progress: bool = True) -> dict[str, float]:
    """Measure a dataset in the competition layout: statistic name -> value (keys of :data:`REAL`).

    Reads train and (when annotated) test images; ``limit`` caps the images per split.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if not any((root / split / "DCM").is_dir() for split in ("train", "test")):
        raise YolohandError(f"{root}: no train/DCM or test/DCM folder (not a dataset in the competition layout)")
    acc = Accumulator()
    for split in ("train", "test"):
        if not (root / split / "DCM").is_dir():
            continue
        records = [r for r in find_split(root, split, require_json=False).records if r.json_path]
        for rec in tqdm(records[:limit], desc=f"stats {split}", unit="img", disable=not progress):
            image = read_image(rec.image_path)
            if image.ndim == 3:
                image = image[..., 0]
            add_image(acc, image, _polys_of(rec.json_path), split, _exact_of(root, split, rec.rel_path))
    return summarise(acc)


def summarise(acc: Accumulator) -> dict[str, float]:
    """Turn running sums into the statistics of :data:`REAL` (NaN where nothing was measured)."""
    mean = acc.pix_sum / max(acc.pixels, 1)

    def avg(values: list) -> float:
        return float(np.mean(values)) if len(values) else float("nan")

    return {
        "images": float(acc.images),
        "pixel_mean": mean,
        "pixel_std": float(np.sqrt(max(acc.pix_sq / max(acc.pixels, 1) - mean**2, 0))),
        "bone_share": acc.bone / max(acc.pixels, 1),
        "multi_label_share": acc.multi / max(acc.pixels, 1),
        "iou_triquetrum_pisiform": avg(acc.iou_tp),
        "iou_trapezoid_trapezium": avg(acc.iou_tt),
        "area_finger16": avg(acc.area_f16),
        "area_radius": avg(acc.area_radius),
        "bent_train": avg(acc.bent.get("train", [])),
        "bent_test": avg(acc.bent.get("test", [])),
        "label_ceiling": float(np.mean(np.mean(acc.ceiling, axis=0))) if acc.ceiling else float("nan"),
        **{name: avg(acc.ladder.get(name, [])) for name in LADDER},
    }


def compare_table(stats: dict[str, float]) -> list[str]:
    """Markdown rows: statistic | phantom | real | tolerance | ok (areas in px at 2048)."""
    rows = ["| statistic | phantom | real | tolerance | within |", "|---|---|---|---|---|"]
    for name, (real, tol) in REAL.items():
        value = stats.get(name, float("nan"))
        ok = "n/a" if np.isnan(value) else ("yes" if abs(value - real) <= tol else "NO")
        fmt = "{:.0f}" if real >= 100 else "{:.4f}"
        rows.append(f"| {name} | {fmt.format(value)} | {fmt.format(real)} | ±{fmt.format(tol)} | {ok} |")
    return rows


__all__ = ["REAL", "BENT_DEG", "LADDER", "LADDER_GROUPS", "ladder_figures",
            "Accumulator", "add_image", "compare_table", "dataset_stats", "summarise", "wrist_angle", "CLASSES"]
