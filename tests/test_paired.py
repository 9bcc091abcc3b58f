"""Paired bootstrap of two evaluate --json results (yolohand.results.paired): exact delta on a
hand-made case, the interval around it, identity, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yolohand.errors import YolohandError
from yolohand.results.paired import load_per_image, paired_delta, verdict


def _images(values: dict[str, float], classes: int = 29) -> dict[str, list[float]]:
    """Every class of an image at the same Dice."""
    return {name: [v] * classes for name, v in values.items()}


def test_handmade_delta_and_interval():
    # per-image means: base 0.90, 0.80, 0.70, 0.60; other +0.02, +0.04, +0.00, +0.02 -> delta 0.02 exactly
    base = _images({"a.png": 0.90, "b.png": 0.80, "c.png": 0.70, "d.png": 0.60})
    other = _images({"a.png": 0.92, "b.png": 0.84, "c.png": 0.70, "d.png": 0.62})
    r = paired_delta(base, other)
    assert r.n_images == 4
    assert r.base == pytest.approx(0.75) and r.other == pytest.approx(0.77)
    assert r.delta == pytest.approx(0.02, abs=1e-12)
    # the resampled means of 4 differences in {0, .02, .02, .04} lie in [0, 0.04]
    assert 0.0 <= r.low <= r.delta <= r.high <= 0.04
    assert r.low < r.high
    assert r.verdict in ("gain", "noise")
    # deterministic for a seed; the delta does not depend on it
    assert paired_delta(base, other) == r
    assert paired_delta(base, other, seed=1).delta == r.delta


def test_mdice_is_the_per_class_mean():
    rng = np.random.default_rng(3)
    mat = rng.uniform(0.5, 1.0, (7, 29))
    per = {f"im{i}.png": list(row) for i, row in enumerate(mat)}
    r = paired_delta(per, per)
    assert r.base == pytest.approx(mat.mean(axis=0).mean(), abs=1e-12)  # competition mDice


def test_identical_inputs_give_zero_width():
    rng = np.random.default_rng(0)
    per = {f"im{i}.png": list(rng.uniform(0.8, 1.0, 29)) for i in range(10)}
    r = paired_delta(per, dict(per))
    assert r.delta == 0.0 and r.low == 0.0 and r.high == 0.0
    assert r.verdict == "noise"


def test_order_of_images_does_not_matter():
    base = _images({"a.png": 0.9, "b.png": 0.5, "c.png": 0.7})
    other = _images({"c.png": 0.8, "a.png": 0.9, "b.png": 0.6})
    assert paired_delta(base, other) == paired_delta(dict(reversed(list(base.items()))), other)
    assert paired_delta(base, other).delta == pytest.approx(0.2 / 3)


def test_clear_loss():
    base = _images({f"{i}.png": 0.9 + 0.001 * i for i in range(12)})
    other = {k: [x - 0.05 for x in v] for k, v in base.items()}
    r = paired_delta(base, other)
    assert r.delta == pytest.approx(-0.05) and r.high < 0 and r.verdict == "loss"


def test_verdict():
    assert verdict(0.001, 0.003) == "gain"
    assert verdict(-0.003, -0.001) == "loss"
    assert verdict(-0.001, 0.002) == "noise"
    assert verdict(0.0, 0.0) == "noise"


def test_mismatched_images_refused():
    base = _images({"a.png": 0.9, "b.png": 0.8})
    with pytest.raises(YolohandError, match="same images.*only in the base.*b.png.*only in the other.*c.png"):
        paired_delta(base, _images({"a.png": 0.9, "c.png": 0.8}))
    with pytest.raises(YolohandError, match="no images"):
        paired_delta({}, {})


def test_bad_rows_refused():
    with pytest.raises(YolohandError, match="one Dice per class"):
        paired_delta({"a.png": [0.9] * 29, "b.png": [0.9] * 28}, {"a.png": [0.9] * 29, "b.png": [0.9] * 29})
    with pytest.raises(YolohandError, match="base scores 29 classes per image, the other 28"):
        paired_delta(_images({"a.png": 0.9}), _images({"a.png": 0.9}, classes=28))
    with pytest.raises(YolohandError, match="a.png has a non-finite"):
        paired_delta(_images({"a.png": float("nan")}), _images({"a.png": 0.9}))


def test_load_per_image(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"mean_dice": 0.9, "per_image": {"a.png": [0.9] * 29}}))
    assert load_per_image(path) == {"a.png": [0.9] * 29}
    path.write_text(json.dumps({"mean_dice": 0.9}))
    with pytest.raises(YolohandError, match="no per_image"):
        load_per_image(path)
