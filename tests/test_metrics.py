"""yolohand.core.metrics against the competition formula computed by hand / densely."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolohand.core import rle
from yolohand.core.metrics import SMOOTH, DiceTable, dice_masks, dice_runs, dice_score
from yolohand.results.evaluate import image_dice


def reference_dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = float(np.logical_and(a, b).sum())
    return (2 * inter + 1e-4) / (float(a.sum()) + float(b.sum()) + 1e-4)


def test_smooth():
    assert SMOOTH == 1e-4


def test_dice_score_hand_made():
    assert dice_score(0, 0, 0) == 1.0  # both empty
    assert dice_score(5, 5, 5) == pytest.approx(1.0)
    assert dice_score(0, 0, 100) == pytest.approx(1e-6)  # empty prediction, non-empty truth
    assert dice_score(2, 4, 6) == pytest.approx((4 + 1e-4) / (10 + 1e-4))
    out = dice_score(np.array([0, 2]), np.array([0, 4]), np.array([0, 6]))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, [1.0, (4 + 1e-4) / (10 + 1e-4)])


def test_dice_masks_hand_made():
    pred = np.zeros((29, 4, 4), bool)
    gt = np.zeros((29, 4, 4), bool)
    pred[0, :2] = True  # 8 px
    gt[0, 1:3] = True  # 8 px, 4 shared
    gt[1, 0, 0] = True  # missed entirely
    scores = dice_masks(pred, gt)
    assert scores.shape == (29,) and scores.dtype == np.float64
    assert scores[0] == pytest.approx((8 + 1e-4) / (16 + 1e-4))
    assert scores[1] == pytest.approx(1e-4 / (1 + 1e-4))
    assert (scores[2:] == 1.0).all()
    np.testing.assert_allclose(dice_masks(pred.astype(np.uint8), gt.astype(np.uint8)), scores)


def test_dice_masks_refuses_bad_input():
    with pytest.raises(ValueError):
        dice_masks(np.zeros((29, 4, 4), bool), np.zeros((29, 4, 5), bool))
    with pytest.raises(TypeError, match="threshold"):
        dice_masks(np.zeros((29, 4, 4)), np.zeros((29, 4, 4)))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.2, 0.7]))
def test_dice_runs_and_masks_match_reference(h, w, seed, density):
    rng = np.random.default_rng(seed)
    pred = rng.random((3, h, w)) < density
    gt = rng.random((3, h, w)) < 0.4
    expected = [reference_dice(p, g) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(dice_masks(pred, gt), expected, rtol=1e-12)
    for p, g, e in zip(pred, gt, expected):
        assert dice_runs(rle.mask_to_runs(p), rle.mask_to_runs(g)) == pytest.approx(e, rel=1e-12)


def test_dice_table_means_over_images_then_classes():
    table = DiceTable()
    a = np.ones(29)
    b = np.zeros(29)
    b[0] = 1.0
    table.add("a.png", a)
    table.add("b.png", b)
    assert table.n_images == 2
    expected_per_class = np.full(29, 0.5)
    expected_per_class[0] = 1.0
    np.testing.assert_allclose(table.per_class(), expected_per_class)
    assert table.mean() == pytest.approx(expected_per_class.mean())
    assert table.image_names == ["a.png", "b.png"]
    assert table.scores().shape == (2, 29)


def test_dice_table_checks():
    table = DiceTable()
    table.add("a.png", np.ones(29))
    with pytest.raises(ValueError, match="twice"):
        table.add("a.png", np.ones(29))
    with pytest.raises(ValueError):
        table.add("b.png", np.ones(28))
    with pytest.raises(ValueError, match="no images"):
        DiceTable().mean()


def test_image_dice_hand_made():
    # Class 0: 4 px vs 2 of them; class 1: both empty; class 2: empty prediction vs 3 px.
    pred = [rle.string_to_runs("1 4"), rle.empty_runs(), rle.empty_runs()]
    truth = [rle.string_to_runs("3 2"), rle.empty_runs(), rle.string_to_runs("7 3")]
    out = image_dice(pred, truth, 12)
    assert out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_array_equal(out, [(4 + 1e-4) / (6 + 1e-4), 1.0, 1e-4 / (3 + 1e-4)])
    with pytest.raises(ValueError):
        image_dice(pred, truth[:2])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.05, 0.5, 0.95]))
def test_image_dice_equals_dense_reference_per_class(seed, density):
    rng = np.random.default_rng(seed)
    shape = (7, 9)
    pred, gt = rng.random((2, 29, *shape)) < density
    runs_p = [rle.mask_to_runs(m) for m in pred]
    runs_g = [rle.mask_to_runs(m) for m in gt]
    expected = [reference_dice(p, g) for p, g in zip(pred, gt)]
    got = image_dice(runs_p, runs_g, shape[0] * shape[1])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # Bit for bit the scalar path evaluate used before (one dice_runs per class).
    assert got.tolist() == [dice_runs(p, g) for p, g in zip(runs_p, runs_g)]
    assert image_dice(runs_p, runs_g).tolist() == got.tolist()  # stride found from the runs
