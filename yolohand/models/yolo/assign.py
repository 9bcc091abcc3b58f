"""One bone per class, jointly: detections -> classes by assignment, then the hand's order.

numpy + scipy only (no torch, no ultralytics). Input: the detections of one image after NMS
(boxes in original pixels, and per box its score for every class); output: for each class the
detection whose mask to use, or -1. Used by ``merge="assign"`` in
:func:`yolohand.models.yolo.postprocess.class_crops`.

Why: per-class top-1 looks at each class alone, so one bone's detection can win two classes
(NMS is per class, and one bone often survives as a "finger-8" and a "finger-12" box), and when
a bone is missed a neighbouring finger's bone stands in for it. Three steps:

1. :func:`group_detections`: detections whose boxes overlap by IoU >= 0.6 are one bone, an object
   whose score for a class is the best of its members' (ground-truth boxes of two different bones
   overlap by at most 0.43 on synthetic hands; detection boxes of bones that touch, such as
   Triquetrum/Pisiform or neighbouring metacarpals, reach 0.85, so those pairs need 0.9).
2. :func:`assign_objects`: every class at most one object, every object at most one class,
   maximising the total score (``scipy.optimize.linear_sum_assignment``); scores under
   ``min_score`` never label anything.
3. :func:`improve`: the hand's order scores whole labellings (:func:`violations`): five rays side
   by side (angles around the carpus ordered thumb -> little, or the reverse for the other hand),
   phalanges distal -> proximal along a ray (distance from the carpus), carpals in their rows
   (radial -> ulnar) between the metacarpals and the forearm. Hill climbing over swaps of two
   classes' objects and re-labelling with unused objects maximises
   ``total score - weight * violations``: a swap of two fingertips or a thumb labelled on the
   little finger costs little score and breaks several order constraints, so it is undone.

Measured (benchmarks/quality_assign.py; the shipped demo checkpoint on unseen synthetic images;
identity error = a class mask overlapping another class's truth better than its own):

=============================  ================  ================  ===============
set                            top1              assign, no order  assign (default)
=============================  ================  ================  ===============
60 images 1024 px (seed 11)    0.9071, 24 errors 0.9096, 21        0.9169, 6
20 images 2048 px (seed 5)     0.9217, 4         0.9247, 3         0.9273, 1
20 images 2048 px (seed 7)     0.9090, 6         0.9106, 6         0.9155, 3
=============================  ================  ================  ===============

(mDice, identity errors.) No class lower than with top1 by more than 0.0002; the order weight
(0.5) was chosen on the 1024 px set (0.3 / 0.5 / 1: 7 / 6 / 5 errors; the 2048 px sets do not
change). The true labellings of all 100 images break no constraint. About 6 ms per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from yolohand.core.classes import CLASS_INDEX, NUM_CLASSES

__all__ = [
    "Anatomy", "GROUP_IOU", "MIN_SCORE", "OVERLAP_IOU", "RAYS", "assign", "assign_objects", "box_iou_matrix",
    "constraints", "group_detections", "improve", "labelling_score", "plausible", "touching", "violations",
]

GROUP_IOU = 0.6  # box IoU at which two detections are the same bone
OVERLAP_IOU = 0.9  # the same, for two classes whose bones touch or overlap in projection (see touching())
MIN_SCORE = 0.01  # a class score below this never labels an object (the network's own conf floor)
TOP_CLASSES = 5  # the search re-labels an object only with one of its 5 best classes
#: Finger rays, thumb -> little, each distal -> metacarpal (0-based class indices).
RAYS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14), (15, 16, 17, 18))
#: Level of each finger bone: 0 distal, 1 middle, 2 proximal phalanx, 3 metacarpal (the thumb has no middle).
_LEVEL = {c: lv for ray in RAYS for c, lv in zip(ray, (0, 2, 3) if len(ray) == 3 else (0, 1, 2, 3))}
_FINGERS = np.arange(19)
_CARPALS = np.arange(19, 27)
_FOREARM = np.arange(27, 29)
# Kinds of order constraint: (a, b) means "a before b" along one measure of the hand frame.
ANGLE, RADIUS, LATERAL, AXIAL = 0, 1, 2, 3


@dataclass(frozen=True)
class Anatomy:
    """How much the hand's order counts. ``weight``: score units per fully violated constraint
    (0 turns the anatomy off). A constraint costs ``clip(1 - margin / tau, 0, 1)``: nothing once
    ``a`` is ahead of ``b`` by ``tau`` (``tau_angle`` radians around the carpus, ``tau_len`` x the
    hand's size), fully when they are level or reversed. On synthetic ground truth the smallest
    margins are 4.3 degrees (neighbouring fingertips) and 0.045 (Trapezium -> Trapezoid)."""

    weight: float = 0.5
    tau_angle: float = 0.052  # 3 degrees
    tau_len: float = 0.03


# --------------------------------------------------------------------------- constraints
def _c(*names: str) -> list[int]:
    return [CLASS_INDEX[n] for n in names]


def constraints() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hand's order as (a int64 (K,), b int64 (K,), kind int64 (K,)).

    ANGLE: a's angle around the carpus is before b's (thumb side first, sign flipped for the
    other hand); RADIUS: a is farther from the carpus than b; LATERAL: a is on the thumb side
    of b across the hand axis (sign flipped with the hand); AXIAL: a is more distal than b.
    """
    rows: list[tuple[int, int, int]] = []
    for i, j in combinations(range(len(RAYS)), 2):  # rays side by side, same or adjacent level
        rows += [(a, b, ANGLE) for a in RAYS[i] for b in RAYS[j] if abs(_LEVEL[a] - _LEVEL[b]) <= 1]
    for ray in RAYS:  # distal -> proximal along a ray
        rows += [(a, b, RADIUS) for a, b in zip(ray, ray[1:])]
    distal, proximal = _c("Trapezium", "Trapezoid", "Capitate", "Hamate"), _c("Scaphoid", "Lunate", "Triquetrum")
    radial, ulnar = _c("Trapezium", "Trapezoid", "Scaphoid"), _c("Hamate", "Triquetrum", "Pisiform")
    lateral = {*combinations(distal, 2), *combinations(proximal, 2), *((a, b) for a in radial for b in ulnar)}
    lateral |= {tuple(_c("Lunate", "Pisiform")), tuple(_c("Radius", "Ulna"))}
    rows += [(a, b, LATERAL) for a, b in sorted(lateral)]
    axial = [("Trapezium", "Scaphoid"), ("Trapezoid", "Scaphoid"), ("Capitate", "Lunate"), ("Hamate", "Triquetrum"),
             ("finger-3", "Trapezium"), ("finger-7", "Trapezoid"), ("finger-11", "Capitate"),
             ("finger-15", "Hamate"), ("finger-19", "Hamate"),
             ("Scaphoid", "Radius"), ("Lunate", "Radius"), ("Lunate", "Ulna"), ("Triquetrum", "Ulna")]
    rows += [(*_c(a, b), AXIAL) for a, b in axial]
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


_A, _B, _KIND = constraints()
_SIDED = (_KIND == ANGLE) | (_KIND == LATERAL)  # flip with the hand (left / right)


# --------------------------------------------------------------------------- geometry
def _group_mean(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """float64 (B, 2) mean of the non-NaN centres ``p[:, idx]`` (NaN where all are missing)."""
    sub = p[:, idx]
    ok = ~np.isnan(sub[..., 0])
    n = ok.sum(1)
    total = np.where(ok[..., None], sub, 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[:, None] > 0, total / n[:, None], np.nan)


def violations(centres: np.ndarray, anatomy: Anatomy = Anatomy()) -> np.ndarray:
    """float64 (B,): how badly each labelling breaks the hand's order (0 = consistent).

    centres: float64 (B, C, 2) x, y box centre of the object each class is given (NaN: none).
    The frame: origin the carpals' mean centre, axis from the forearm's mean (else the origin)
    to the fingers' mean, size their distance; these means do not change when labels are
    permuted within a group. Each constraint costs ``clip(1 - margin / tau, 0, 1)`` (nothing
    when a class is missing); the hand's side is the one with fewer violations.
    """
    origin = _group_mean(centres, _CARPALS)
    base = _group_mean(centres, _FOREARM)
    base = np.where(np.isnan(base), origin, base)
    axis = _group_mean(centres, _FINGERS) - base
    size = np.hypot(axis[:, 0], axis[:, 1])
    ok = np.isfinite(size) & (size > 0) & np.isfinite(origin[:, 0])
    size = np.where(ok, size, 1.0)
    vx, vy = (axis[:, 0] / size)[:, None], (axis[:, 1] / size)[:, None]  # unit axis, proximal -> distal
    rel = centres - np.where(ok[:, None], origin, 0.0)[:, None, :]
    axial = rel[..., 0] * vx + rel[..., 1] * vy  # (B, C) towards the fingertips
    lateral = rel[..., 0] * vy - rel[..., 1] * vx  # (B, C) across the hand
    measure = np.stack([np.arctan2(lateral, axial), np.hypot(lateral, axial) / size[:, None],
                        lateral / size[:, None], axial / size[:, None]])  # (4, B, C)
    diff = measure[_KIND, :, _A] - measure[_KIND, :, _B]  # (K, B) a minus b
    diff[(_KIND == ANGLE) | (_KIND == LATERAL)] *= -1.0  # "a before b" = b's value is larger
    tau = np.where(_KIND == ANGLE, anatomy.tau_angle, anatomy.tau_len)[:, None]
    cost = np.zeros(diff.shape)
    per_side = []
    for side in (1.0, -1.0):
        margin = np.where(_SIDED[:, None], side * diff, diff)
        np.clip(1.0 - margin / tau, 0.0, 1.0, out=cost)
        per_side.append(np.nansum(cost, axis=0))
    return np.where(ok, np.minimum(*per_side), 0.0)


# --------------------------------------------------------------------------- objects
def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (N, M) IoU of xyxy boxes a (N, 4) and b (M, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = w.clip(0) * h.clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def touching() -> np.ndarray:
    """bool (29, 29): class pairs whose bones touch or overlap in projection, so that their
    detections' boxes can overlap a lot (detection boxes of Triquetrum and Pisiform, or of two
    neighbouring metacarpals, reach IoU 0.6-0.85 on synthetic hands; fingertips never do)."""
    pairs = [(a, b) for r, q in zip(RAYS[1:], RAYS[2:]) for a, b in ((r[2], q[2]), (r[3], q[3]))]
    pairs += [(r[-1], c) for r, c in zip(RAYS, _c("Trapezium", "Trapezoid", "Capitate", "Hamate", "Hamate"))]
    carpal = [("Trapezium", "Trapezoid"), ("Trapezium", "Scaphoid"), ("Trapezoid", "Capitate"), ("Trapezoid", "Scaphoid"),
              ("Capitate", "Hamate"), ("Capitate", "Scaphoid"), ("Capitate", "Lunate"), ("Hamate", "Lunate"),
              ("Hamate", "Triquetrum"), ("Scaphoid", "Lunate"), ("Lunate", "Triquetrum"), ("Triquetrum", "Pisiform"),
              ("Hamate", "Pisiform"), ("Radius", "Ulna"), ("Scaphoid", "Radius"), ("Lunate", "Radius"),
              ("Lunate", "Ulna"), ("Triquetrum", "Ulna")]
    pairs += [tuple(_c(a, b)) for a, b in carpal]
    out = np.zeros((NUM_CLASSES, NUM_CLASSES), bool)
    a, b = np.array(pairs).T
    out[a, b] = out[b, a] = True
    return out


_TOUCHING = touching()


def _merge_thresholds(n_cls: int, iou: float, overlap_iou: float) -> np.ndarray:
    """float64 (C, C) box IoU at which detections whose best classes are (i, j) are one bone."""
    out = np.full((n_cls, n_cls), float(iou))
    if n_cls == NUM_CLASSES:
        out[_TOUCHING] = overlap_iou
    return out


def group_detections(
    boxes: np.ndarray, scores: np.ndarray, iou: float = GROUP_IOU, overlap_iou: float = OVERLAP_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections that cover the same bone -> one object with a score per class.

    boxes: (N, 4) xyxy; scores: (N, C) per-class scores. Detections are taken by descending
    best score (ties: input order); each joins the object whose first box ("leader") it
    overlaps most if that IoU is >= ``iou`` (``overlap_iou`` when the two best classes are
    :func:`touching` bones), else starts a new object. Returns (object_scores float64 (O, C):
    the best member score per class, source int64 (O, C): the member detection with that
    score, leader int64 (O,): each object's first detection). Objects are in creation order.
    """
    scores = np.asarray(scores, np.float64).reshape(len(boxes), -1)
    order = np.argsort(-scores.max(1, initial=0.0), kind="stable")
    best = scores.argmax(1) if scores.size else np.zeros(len(boxes), np.int64)
    need = _merge_thresholds(scores.shape[1], iou, overlap_iou)
    iou_m = box_iou_matrix(boxes, boxes)
    leaders: list[int] = []
    member_of = np.empty(len(boxes), np.int64)
    for i in order:
        j = int(np.argmax(iou_m[i, leaders])) if leaders else -1
        if j >= 0 and iou_m[i, leaders[j]] >= need[best[i], best[leaders[j]]]:
            member_of[i] = j
        else:
            member_of[i] = len(leaders)
            leaders.append(int(i))
    n_obj, n_cls = len(leaders), scores.shape[1]
    obj_scores = np.full((n_obj, n_cls), -1.0)
    source = np.zeros((n_obj, n_cls), np.int64)
    for i in order:  # descending: on equal scores the earlier detection stays the source
        o = member_of[i]
        better = scores[i] > obj_scores[o]
        obj_scores[o, better], source[o, better] = scores[i, better], i
    return obj_scores, source, np.asarray(leaders, np.int64)


def assign_objects(scores: np.ndarray, min_score: float = MIN_SCORE) -> np.ndarray:
    """int64 (C,): the object of each class (-1: none), maximising the total score.

    scores: (O, C). Each object labels at most one class; a pair scoring under ``min_score``
    is never used. Ties go to the earlier object (a tie-break of 1e-9 per object rank).
    """
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize takes ~1 s to import

    s = np.asarray(scores, np.float64)
    out = np.full(s.shape[1], -1, np.int64)
    if s.size == 0:
        return out
    usable = s >= min_score
    gain = np.where(usable, s, 0.0) - 1e-9 * np.arange(s.shape[0])[:, None] * usable
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = usable[rows, cols]
    out[cols[keep]] = rows[keep]
    return out


# --------------------------------------------------------------------------- the hand's order
def labelling_score(labels: np.ndarray, scores: np.ndarray, centres: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """float64 (B,): total score minus ``anatomy.weight`` x :func:`violations` of each labelling.

    labels: int64 (B, C) object per class (-1: none); scores: (O, C); centres: (O, 2) box centres.
    """
    labels = np.atleast_2d(labels)
    padded = np.vstack([np.asarray(scores, np.float64), np.zeros((1, scores.shape[1]))])
    pts = np.vstack([np.asarray(centres, np.float64), np.full((1, 2), np.nan)])
    idx = np.where(labels < 0, len(padded) - 1, labels)
    total = padded[idx, np.arange(labels.shape[1])].sum(1)
    if anatomy.weight == 0:
        return total
    return total - anatomy.weight * violations(pts[idx], anatomy)


def plausible(scores: np.ndarray, min_score: float = MIN_SCORE, top: int = TOP_CLASSES) -> np.ndarray:
    """bool (O, C): the pairs a move may create: scores >= ``min_score`` among each object's
    ``top`` best classes (keeps the search small when many scores are middling)."""
    s = np.asarray(scores, np.float64)
    ok = s >= min_score
    if s.shape[1] > top:
        kth = -np.partition(-s, top - 1, axis=1)[:, top - 1 : top]
        ok &= s >= kth
    return ok


def _moves(labels: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """int64 (M, C): every labelling one move away from ``labels`` (C,); ``ok`` bool (O, C): :func:`plausible`.

    Swap the objects of two classes (a class takes the other's object only where ``ok``); give
    a class an unused object; or both at once: class ``a`` takes class ``b``'s object and ``b``
    an unused one. Never a move that only empties a class: measured, it removed correct but
    poorly boxed carpals (3 Trapezium in 100 synthetic images) and fixed no identity error.
    """
    n_cls = labels.shape[0]
    out = [np.empty((0, n_cls), np.int64)]
    a, b = np.triu_indices(n_cls, 1)
    la, lb = labels[a], labels[b]
    swap = (la >= 0) | (lb >= 0)
    swap &= (la < 0) | ok[np.maximum(la, 0), b]  # b takes a's object
    swap &= (lb < 0) | ok[np.maximum(lb, 0), a]
    if swap.any():
        sw = np.repeat(labels[None], swap.sum(), 0)
        r = np.arange(len(sw))
        sw[r, a[swap]], sw[r, b[swap]] = lb[swap], la[swap]
        out.append(sw)
    unused = np.setdiff1d(np.arange(ok.shape[0]), labels[labels >= 0])
    o, c = np.nonzero(ok[unused])
    if len(o):
        give = np.repeat(labels[None], len(o), 0)
        give[np.arange(len(o)), c] = unused[o]
        out.append(give)
        out.append(_chains(labels, ok, unused[o], c))
    return np.vstack(out)


def _chains(labels: np.ndarray, ok: np.ndarray, new: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """int64 (M, C): class ``a`` takes class ``cls[k]``'s object, which takes the unused ``new[k]``."""
    rows = []
    for u, b in zip(new, cls):
        if labels[b] < 0:
            continue
        takers = np.flatnonzero(ok[labels[b]])
        takers = takers[takers != b]
        if len(takers):
            m = np.repeat(labels[None], len(takers), 0)
            m[np.arange(len(takers)), takers] = labels[b]
            m[:, b] = u
            rows.append(m)
    return np.vstack(rows) if rows else np.empty((0, labels.shape[0]), np.int64)


def improve(
    labels: np.ndarray, scores: np.ndarray, centres: np.ndarray, anatomy: Anatomy = Anatomy(),
    min_score: float = MIN_SCORE, max_steps: int = 30,
) -> np.ndarray:
    """int64 (C,): ``labels`` after best-improvement hill climbing on :func:`labelling_score`.

    labels: int64 (C,) object per class (-1: none); scores: (O, C); centres: float64 (O, 2).
    Each step applies the best single move (:func:`_moves`) while it raises the score by > 1e-9.
    """
    labels = np.asarray(labels, np.int64).copy()
    if anatomy.weight == 0:
        return labels
    current = labelling_score(labels, scores, centres, anatomy)[0]
    ok = plausible(scores, min_score)
    for _ in range(max_steps):
        cand = _moves(labels, ok)
        if not len(cand):
            break
        value = labelling_score(cand, scores, centres, anatomy)
        best = int(np.argmax(value))
        if value[best] <= current + 1e-9:
            break
        labels, current = cand[best], value[best]
    return labels


def assign(
    boxes: np.ndarray, scores: np.ndarray, anatomy: Anatomy = Anatomy(), iou: float = GROUP_IOU,
    min_score: float = MIN_SCORE, overlap_iou: float = OVERLAP_IOU,
) -> tuple[np.ndarray, np.ndarray]:
    """Which detection gives each class its mask: (detection int64 (C,), -1 for none; score float64 (C,)).

    boxes: (N, 4) xyxy in original pixels; scores: (N, C) per-class scores (C = 29 for the
    anatomy; other C skip it). :func:`group_detections`, :func:`assign_objects`, then
    :func:`improve` with the hand's order.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(len(boxes), -1)
    n_cls = scores.shape[1]
    if len(boxes) == 0:
        return np.full(n_cls, -1, np.int64), np.zeros(n_cls)
    obj_scores, source, leader = group_detections(boxes, scores, iou, overlap_iou)
    labels = assign_objects(obj_scores, min_score)
    if n_cls == NUM_CLASSES:
        b = boxes[leader]
        centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        labels = improve(labels, obj_scores, centres, anatomy, min_score)
    cls = np.arange(n_cls)
    has = labels >= 0
    det = np.where(has, source[np.maximum(labels, 0), cls], -1)
    return det, np.where(has, obj_scores[np.maximum(labels, 0), cls], 0.0)
