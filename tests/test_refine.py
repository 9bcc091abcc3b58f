"""The refine family: crop geometry, the refine stage on a fake network, and a refiner that must
beat its prior on a trivially learnable case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_smp import _write_square_dataset

from yolohand.core import crops as cr
from yolohand.core.classes import NUM_CLASSES
from yolohand.models.refine.geometry import degrade_prior, grow_box, jitter_box
from yolohand.models.refine.predict import refine_crops
from yolohand.models.refine.train import crops_dice


def test_grow_box_clips_to_the_image():
    assert grow_box((10, 20, 30, 60), 0.5, (100, 100)) == (0, 0, 40, 80)
    assert grow_box((10, 20, 30, 60), 0.1, (100, 100)) == (8, 16, 32, 64)
    assert grow_box((90, 90, 100, 100), 1.0, (100, 100)) == (80, 80, 100, 100)


def test_jitter_box_stays_inside_its_limit():
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0, y1, x1 = jitter_box((20, 30, 60, 90), 0.3, rng, (10, 10, 70, 100))
        assert 10 <= y0 < y1 <= 70 and 10 <= x0 < x1 <= 100 and y1 - y0 >= 2 and x1 - x0 >= 2


def test_degraded_prior_is_zero_outside_the_box_and_follows_the_mask():
    rng = np.random.default_rng(1)
    mask = np.zeros((80, 80), bool)
    mask[20:60, 25:55] = True
    prior = degrade_prior(mask, (15, 20, 65, 60), 8.0, rng)
    assert prior.dtype == np.float32 and prior.min() >= 0 and prior.max() <= 1
    assert not prior[:15].any() and not prior[:, 60:].any()
    assert prior[mask].mean() > 0.4 and prior[mask].mean() > 3 * prior[~mask].mean()


class _Oracle(torch.nn.Module):
    """Logits +10 on channel c where the input's prior channel says > 0, -10 elsewhere (29 channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        on = (x[:, 1:2] > 0).float() * 20 - 10
        return on.repeat(1, NUM_CLASSES, 1, 1)


def test_refine_crops_maps_back_into_each_window():
    image = np.zeros((100, 120), np.uint8)
    crops: cr.ClassCrops = [None] * NUM_CLASSES
    probs = np.zeros((20, 30), np.float32)
    probs[5:15, 5:25] = 0.9
    crops[4] = cr.Crop(40, 50, probs, 0.7)
    out = refine_crops(_Oracle().eval(), image, crops, margin=0.5, size=32, device=torch.device("cpu"))
    assert sum(c is not None for c in out) == 1 and out[4].conf == 0.7
    win = out[4]
    assert (win.y0, win.x0, win.y1, win.x1) == (30, 35, 70, 95)  # box grown by half its side
    full = np.zeros((100, 120), bool)
    full[win.y0 : win.y1, win.x0 : win.x1] = win.probs >= 0.5
    ref = np.zeros_like(full)
    ref[45:55, 55:75] = True
    assert np.count_nonzero(full != ref) <= 0.15 * ref.sum()  # resized through 32 px and back


def test_crops_dice_against_a_dense_reference():
    rng = np.random.default_rng(3)
    gt = rng.random((NUM_CLASSES, 30, 40)) > 0.7
    crops: cr.ClassCrops = [None] * NUM_CLASSES
    crops[2] = cr.Crop(5, 6, rng.random((10, 12)).astype(np.float32))
    dense = np.zeros_like(gt)
    dense[2, 5:15, 6:18] = crops[2].probs >= 0.5
    inter, a, b = (dense & gt).sum(axis=(1, 2)), dense.sum(axis=(1, 2)), gt.sum(axis=(1, 2))
    np.testing.assert_allclose(crops_dice(crops, gt), (2 * inter + 1e-4) / (a + b + 1e-4))


@pytest.mark.slow
def test_refiner_learns_to_beat_its_prior(tmp_path, monkeypatch):
    """On the bright-square set a refiner trained for a few steps must beat the degraded priors."""
    from yolohand.data.layout import read_image
    from yolohand.data.samples import label_masks
    from yolohand.models.family import load_refiner
    from yolohand.models.refine.train import _degraded_priors
    from yolohand.models.smp.config import DEFAULTS
    from yolohand.models.smp.data import read_list
    from yolohand.models.train import train_fold

    monkeypatch.chdir(tmp_path)
    root = _write_square_dataset(tmp_path / "ds", n=16, size=96)
    args = dict(imgsz=48, epochs=25, batch=8, lr0=0.01, workers=0, threads=1, seed=0, prior_stride=12.0, val_every=5)
    res = train_fold(0, model="refine:Unet:resnet18", yolo=root, runs=tmp_path / "runs", name="r", device="cpu",
                     progress=False, **args)
    val = read_list(root / "folds" / "fold0_val.txt")
    priors = _degraded_priors(val, dict(DEFAULTS, **args))
    stage = load_refiner(res.best, device="cpu")
    before, after = [], []
    for path, prior in zip(val, priors):
        image, gt = read_image(path), label_masks(path, (96, 96))
        before.append(crops_dice(prior, gt)[0])
        after.append(crops_dice(stage.refine(image, prior), gt)[0])
    assert np.mean(after) > np.mean(before) + 0.05, (np.mean(before), np.mean(after))
    assert res.dice > 0.9


class _Stage:
    """A refiner stand-in that sets every found bone's crop to one value."""

    def __init__(self, value: float) -> None:
        self.value, self.path = value, None

    def refine(self, image, crops):
        return [None if c is None else cr.Crop(c.y0, c.x0, np.full_like(c.probs, self.value), c.conf) for c in crops]


def test_several_refiners_are_averaged_and_a_missed_class_stays_missed():
    from yolohand.models.predict import _refine

    crops: cr.ClassCrops = [None] * NUM_CLASSES
    crops[7] = cr.Crop(3, 4, np.zeros((5, 6), np.float32), 0.9)
    out = _refine(np.zeros((20, 20), np.uint8), crops, [_Stage(0.2), _Stage(0.8)])
    assert out[7] is not None and np.allclose(out[7].probs, 0.5) and (out[7].y0, out[7].x0) == (3, 4)
    assert sum(c is not None for c in out) == 1
