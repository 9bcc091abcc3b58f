"""Identity errors of one-per-class selection: per-class top-1 vs the joint assignment.

Runs the network once per image (raw instances with per-class scores), then builds the 29 crops
with every variant from the same instances and scores them:

- mDice (``yolohand evaluate`` on a CSV written per variant), the per-class Dice, and each
  class's change against the first variant (top1);
- identity errors: a predicted class mask whose Dice with another class's ground truth is
  higher than with its own (the mask sits on the wrong bone), counted per (predicted -> true)
  pair, and missed classes (empty masks);
- postprocessing seconds per image (the network part is shared and reported once);
- as a check of the anatomy term, how many ground-truth labellings (box centres of the
  annotation polygons) it finds inconsistent: it should be none.

Usage (the README numbers came from this)::

    yolohand synth /tmp/asg1k --train-ids 0 --test-ids 30 --seed 11 --size 1024
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality_assign.py --root /tmp/asg1k --split test \
        [--weights yolohand/weights/yolohand-synth-n.pt] [--limit N] [--cache raw.pkl] [--weight 0.3 ...]

``--cache`` keeps the raw network outputs in a pickle (written once, read on later runs with the
same images) so that several anatomy weights can be compared without rerunning the network.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolohand.core import crops as cr  # noqa: E402
from yolohand.core.classes import CLASSES, NUM_CLASSES  # noqa: E402
from yolohand.data.layout import find_split, polygon_crop, read_annotation, read_image  # noqa: E402
from yolohand.defaults import DEMO_WEIGHTS, MASK_THRESHOLD  # noqa: E402
from yolohand.models.yolo import assign as A  # noqa: E402
from yolohand.models.yolo import postprocess as pp  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    merge: str
    anatomy: A.Anatomy | None = None


def variants(weights: list[float]) -> list[Variant]:
    """top1 (the reference), assignment alone, assignment + the hand's order at each weight."""
    v = [Variant("top1", "top1"), Variant("assign, no anatomy", "assign", A.Anatomy(weight=0.0))]
    return v + [Variant(f"assign, anatomy weight {w:g}", "assign", A.Anatomy(weight=w)) for w in weights]


def gt_crops(ann, shape: tuple[int, int]) -> list[tuple[int, int, np.ndarray]]:
    """Each class's ground truth as (y0, x0, bool (h, w)) in its box (polygons of a class OR-ed)."""
    crops: list[tuple[int, int, np.ndarray]] = [(0, 0, np.zeros((0, 0), bool))] * NUM_CLASSES
    for poly in ann.polygons:
        crop, y0, x0 = polygon_crop(poly.points, *shape)
        prev = crops[poly.class_index]
        if prev[2].size:  # a second polygon of the class: merge on the union box
            yy, xx = min(y0, prev[0]), min(x0, prev[1])
            hh = max(y0 + crop.shape[0], prev[0] + prev[2].shape[0]) - yy
            ww = max(x0 + crop.shape[1], prev[1] + prev[2].shape[1]) - xx
            both = np.zeros((hh, ww), bool)
            both[prev[0] - yy : prev[0] - yy + prev[2].shape[0], prev[1] - xx : prev[1] - xx + prev[2].shape[1]] = prev[2]
            both[y0 - yy : y0 - yy + crop.shape[0], x0 - xx : x0 - xx + crop.shape[1]] |= crop
            crop, y0, x0 = both, yy, xx
        crops[poly.class_index] = (y0, x0, crop)
    return crops


def dice_matrix(crops: cr.ClassCrops, gt: list[tuple[int, int, np.ndarray]], threshold: float = 0.5) -> np.ndarray:
    """float64 (C, C): Dice of predicted class i's mask with ground-truth class j's (:func:`gt_crops`)."""
    area = np.array([g[2].sum() for g in gt], dtype=np.float64)
    out = np.zeros((len(crops), len(gt)))
    for i, c in enumerate(crops):
        if c is None:
            continue
        m = c.probs >= threshold
        for j, (y0, x0, g) in enumerate(gt):
            ya, yb = max(c.y0, y0), min(c.y1, y0 + g.shape[0])
            xa, xb = max(c.x0, x0), min(c.x1, x0 + g.shape[1])
            inter = 0
            if ya < yb and xa < xb:
                inter = np.count_nonzero(m[ya - c.y0 : yb - c.y0, xa - c.x0 : xb - c.x0] & g[ya - y0 : yb - y0, xa - x0 : xb - x0])
            out[i, j] = (2 * inter + 1e-4) / (m.sum() + area[j] + 1e-4)
    return out


def identity_errors(dice: np.ndarray, present: np.ndarray) -> list[tuple[int, int]]:
    """(predicted class, true class) for each non-empty mask that overlaps another class's truth better."""
    errors = []
    for i in np.flatnonzero(present):
        other = dice[i].copy()
        other[i] = -1.0
        j = int(np.argmax(other))
        if other[j] > dice[i, i]:
            errors.append((int(i), j))
    return errors


def gt_violations(ann, anatomy: A.Anatomy) -> float:
    """The anatomy term of the ground-truth labelling (box centres of the polygons)."""
    centres = np.full((NUM_CLASSES, 2), np.nan)
    for poly in ann.polygons:
        lo, hi = poly.points.min(0), poly.points.max(0) + 1
        centres[poly.class_index] = (lo + hi) / 2
    return float(A.violations(centres[None], anatomy)[0])


def raw_instances(records, weights: Path, imgsz: int | None, cache: Path | None) -> tuple[list, float]:
    """[(record name, Instances)] and network seconds per image (from ``cache`` when it matches)."""
    names = [r.name for r in records]
    if cache is not None and cache.is_file():
        stored = pickle.loads(cache.read_bytes())
        if stored["names"] == names and stored["weights"] == str(weights):
            return stored["raw"], stored["seconds"]
    from yolohand.models.yolo import predict as P

    net = P.load_network(weights, imgsz, device="cpu")
    t0 = time.perf_counter()
    raw = [(r.name, net([read_image(r.image_path)])[0]) for r in records]
    seconds = (time.perf_counter() - t0) / max(len(records), 1)
    if cache is not None:
        cache.write_bytes(pickle.dumps(dict(names=names, weights=str(weights), raw=raw, seconds=seconds)))
    return raw, seconds


def score_variant(v: Variant, records, raw, gts, root: Path, split: str, tmp: Path):
    """(EvalResult, Counter of (pred, true) identity errors, missed count, postprocess s/img)."""
    from yolohand.core.submission import SubmissionWriter
    from yolohand.results.evaluate import evaluate

    errors: Counter = Counter()
    missed, t_pp = 0, 0.0
    csv = tmp / f"{abs(hash(v.name))}.csv"
    with SubmissionWriter(csv) as out:
        for rec, (_, inst), gt in zip(records, raw, gts):
            t0 = time.perf_counter()
            crops = pp.class_crops(inst, v.merge, mask_threshold=MASK_THRESHOLD, anatomy=v.anatomy)
            rles = cr.crops_to_rles(crops, inst.letterbox.orig_shape)
            t_pp += time.perf_counter() - t0
            out.write_image(rec.name, rles)
            present = np.array([bool(r) for r in rles])
            missed += int((~present).sum())
            errors.update(identity_errors(dice_matrix(crops, gt), present))
    return evaluate(csv, root, split=split, progress=False), errors, missed, t_pp / max(len(records), 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--weights", type=Path, default=DEMO_WEIGHTS)
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the raw network outputs (reused if it matches)")
    ap.add_argument("--weight", type=float, action="append", default=None, help="anatomy weights to try (repeat)")
    args = ap.parse_args(argv)

    records = find_split(args.root, args.split, require_json=True).records[: args.limit]
    raw, t_net = raw_instances(records, args.weights, args.imgsz, args.cache)
    anns = [read_annotation(r.json_path) for r in records]
    gts = [gt_crops(a, inst.letterbox.orig_shape) for a, (_, inst) in zip(anns, raw)]
    bad_gt = sum(gt_violations(a, A.Anatomy()) > 0 for a in anns)
    A.assign_objects(np.zeros((1, 1)))  # import scipy.optimize (~1 s) before anything is timed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants(args.weight or [A.Anatomy().weight]):
            rows.append((v, *score_variant(v, records, raw, gts, args.root, args.split, Path(tmp))))
    ref = rows[0][1].per_class
    print(f"{len(records)} images of {args.root} ({args.split}), weights {args.weights}; network {t_net:.3f} s/image; "
          f"ground-truth labellings the anatomy term calls inconsistent: {bad_gt} of {len(records)}")
    print()
    print(f"| variant | mDice | identity errors | missed (of {len(records) * NUM_CLASSES}) | worst class change vs top1 "
          "| best class change | postprocess s/img |")
    print("|---|---|---|---|---|---|---|")
    for v, res, errors, missed, secs in rows:
        delta = res.per_class - ref
        lo, hi = int(np.argmin(delta)), int(np.argmax(delta))
        print(f"| {v.name} | {res.mean:.4f} | {sum(errors.values())} | {missed} | {CLASSES[lo]} {delta[lo]:+.4f} "
              f"| {CLASSES[hi]} {delta[hi]:+.4f} | {secs:.4f} |")
    print()
    for v, _, errors, _, _ in rows:
        pairs = ", ".join(f"{CLASSES[p]}->{CLASSES[t]} x{n}" for (p, t), n in errors.most_common())
        print(f"{v.name}: {pairs or 'none'}")


if __name__ == "__main__":
    main()
