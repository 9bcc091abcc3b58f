"""K-fold split grouped by patient: both hands of one ID folder always land in the same fold.

Algorithm (:func:`make_folds`):

1. The distinct IDs are sorted, then shuffled with ``numpy.random.default_rng(seed)``, so the
   result depends only on the set of IDs, ``k`` and ``seed`` (not on input order).
2. Each ID carries a weight: the number of times it occurs in ``patient_ids``. Pass one ID per
   image and the folds are balanced in *images* (an ID whose other hand was excluded weighs 1).
3. IDs are taken heaviest first (stable, so ties keep the shuffled order) and each goes to the
   fold with the smallest total weight (ties: fewer IDs, then lower fold index). This greedy
   rule keeps fold totals within one ID's weight of each other; with equal weights it is a
   plain round-robin, so fold sizes in IDs differ by at most one.

Each returned fold is sorted. No torch/ultralytics here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from yolohand.errors import YolohandError


def make_folds(patient_ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split ``patient_ids`` into ``k`` folds of IDs; every distinct ID in exactly one fold.

    ``patient_ids`` may repeat an ID (e.g. one entry per image); repeats are its weight.
    Raises YolohandError when ``k < 2`` or there are fewer distinct IDs than folds.
    """
    if k < 2:
        raise YolohandError(f"--folds must be at least 2 (got {k})")
    weights = Counter(patient_ids)
    ids = sorted(weights)
    if len(ids) < k:
        raise YolohandError(f"cannot make {k} folds from {len(ids)} patient ID(s); use --folds {max(2, len(ids))} or more data")
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    shuffled.sort(key=lambda pid: -weights[pid])  # stable: equal weights keep the seeded order
    folds: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for pid in shuffled:
        j = min(range(k), key=lambda f: (totals[f], len(folds[f]), f))
        folds[j].append(pid)
        totals[j] += weights[pid]
    return [sorted(f) for f in folds]


def fold_of(folds: Sequence[Sequence[str]]) -> dict[str, int]:
    """Map each ID to the index of its fold."""
    return {pid: j for j, fold in enumerate(folds) for pid in fold}


__all__ = [
    "make_folds", "fold_of",
]
