"""Fold properties: grouped by ID, complete, disjoint, balanced, deterministic per seed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolohand.data.folds import fold_of, make_folds
from yolohand.errors import YolohandError


def _ids(n: int, per_id: int = 2) -> list[str]:
    return [f"ID{i:03d}" for i in range(1, n + 1) for _ in range(per_id)]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 2), min_size=2, max_size=60),
    k=st.integers(2, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_fold_properties(counts: list[int], k: int, seed: int) -> None:
    ids = [f"ID{i:03d}" for i, c in enumerate(counts) for _ in range(c)]
    if len(counts) < k:
        with pytest.raises(YolohandError):
            make_folds(ids, k, seed)
        return
    folds = make_folds(ids, k, seed)
    assert len(folds) == k
    flat = [pid for f in folds for pid in f]
    assert len(flat) == len(set(flat))  # no ID in two folds
    assert set(flat) == set(ids)  # union is the whole set
    images = [sum(ids.count(p) for p in f) for f in folds]
    assert max(images) - min(images) <= max(counts)  # within one ID's images
    assert all(f == sorted(f) for f in folds)
    assert make_folds(list(reversed(ids)), k, seed) == folds  # independent of input order


def test_equal_weights_sizes_within_one_id() -> None:
    folds = make_folds(_ids(401), 5, 0)
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == 401


def test_deterministic_per_seed_and_seed_matters() -> None:
    ids = _ids(40)
    assert make_folds(ids, 5, 3) == make_folds(ids, 5, 3)
    assert make_folds(ids, 5, 3) != make_folds(ids, 5, 4)


def test_fold_of_and_errors() -> None:
    folds = make_folds(_ids(6, 1), 3, 0)
    index = fold_of(folds)
    assert all(pid in folds[j] for pid, j in index.items())
    with pytest.raises(YolohandError, match="at least 2"):
        make_folds(_ids(6), 1, 0)
    with pytest.raises(YolohandError, match="cannot make 5 folds from 3"):
        make_folds(_ids(3), 5, 0)
