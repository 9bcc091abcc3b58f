"""The refiner on out-of-fold detector predictions (run arguments ``priors``, ``prior_mix``) and its
per-bone gate (checkpoint metadata ``gate``): the cache keeps a given prediction, training crops use
it, ``prior_mix: 0`` is the plain path draw for draw, and a gated class keeps the detector's crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_refine import _Oracle
from test_smp import _write_square_dataset

from yolohand.core import crops as cr
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.probmaps import probmap_path, save_probmap
from yolohand.data.bone_crops import build_crop_cache, load_windows
from yolohand.models.refine.data import PRED_JITTER, make_item
from yolohand.models.refine.gate import gate_classes, gate_line, gate_of
from yolohand.models.refine.geometry import degrade_prior, grow_box, input_planes, jitter_box, resize_to
from yolohand.models.refine.predict import refine_crops
from yolohand.models.shared.config import DEFAULTS, REFINE_DEFAULTS, check_args

ARGS = dict(DEFAULTS, **REFINE_DEFAULTS, imgsz=24, prior_stride=6.0)


def _images(root: Path) -> list[Path]:
    return sorted(root.glob("images/*/*.png"))


def _write_priors(folder: Path, images: list[Path]) -> np.ndarray:
    """Maps of the square set: image 0's class 0 a soft square shifted by (2, -3) px, the other images
    empty (class 0 missed). Returns image 0's uint8 (29, H, W) maps."""
    from yolohand.data.samples import label_masks

    folder.mkdir()
    first = None
    for i, path in enumerate(images):
        probs = np.zeros((NUM_CLASSES, 96, 96), np.uint8)
        if i == 0:
            gt = np.roll(label_masks(path, (96, 96))[0], (2, -3), axis=(0, 1))
            probs[0][gt] = 200
            probs[0][np.roll(gt, 2, axis=0) & ~gt] = 90  # a soft rim below 0.5: not in the box
            first = probs
        save_probmap(probmap_path(folder, path.name), probs)
    return first


@pytest.fixture
def squares(tmp_path):
    root = _write_square_dataset(tmp_path / "ds", n=4, size=96)
    images = _images(root)
    probs = _write_priors(tmp_path / "oof", images)
    return root, images, probs


def _plain_item(w, args, rng):
    """make_item before priors existed (the reference for draw-for-draw equality)."""
    size, (wy0, wx0, wy1, wx1) = int(args["imgsz"]), w.window
    hw = (wy1 - wy0, wx1 - wx0)
    box = (w.box[0] - wy0, w.box[1] - wx0, w.box[2] - wy0, w.box[3] - wx0)
    jbox = jitter_box(box, float(args["jitter"]), rng, (0, 0, *hw))
    prior = degrade_prior(w.mask, jbox, float(args["prior_stride"]), rng)
    y0, x0, y1, x1 = grow_box(jbox, float(args["margin"]), hw)
    planes = input_planes(w.image[y0:y1, x0:x1], prior[y0:y1, x0:x1], size)
    target = resize_to(w.mask[y0:y1, x0:x1].astype(np.float32), size) >= 0.5
    if rng.random() < float(args["fliplr"]):
        planes, target = planes[:, :, ::-1], target[:, ::-1]
    return planes, target


def test_cache_keeps_the_prediction_and_make_item_uses_it(squares, tmp_path):
    root, images, probs = squares
    files = build_crop_cache(images, tmp_path / "cache-oof", progress=False, priors=tmp_path / "oof")
    w = load_windows(files[0])[0]
    y0, x0, y1, x1 = w.window
    np.testing.assert_array_equal(w.prior, probs[0, y0:y1, x0:x1])  # the map inside the bone's window
    rows, cols = np.flatnonzero((probs[0] >= 128).any(axis=1)), np.flatnonzero((probs[0] >= 128).any(axis=0))
    assert w.pbox == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) != w.box  # from p >= 0.5 only
    assert all(load_windows(f)[0].prior is None and load_windows(f)[0].pbox is None for f in files[1:])  # missed

    args = dict(ARGS, jitter=0.0, fliplr=0.0, prior_mix=1.0, margin=0.2)
    x, y = make_item(w, args, np.random.default_rng(5))
    pbox = (w.pbox[0] - y0, w.pbox[1] - x0, w.pbox[2] - y0, w.pbox[3] - x0)
    cy0, cx0, cy1, cx1 = grow_box(pbox, 0.2, w.image.shape)  # jitter 0: the crop is the predicted box's
    want = input_planes(w.image[cy0:cy1, cx0:cx1], w.prior[cy0:cy1, cx0:cx1].astype(np.float32) / 255, 24)
    np.testing.assert_array_equal(x, want)  # the prior plane is the predicted map, not degraded truth
    assert y.shape == (24, 24) and y.any()
    # with jitter: the predicted box jittered by PRED_JITTER x jitter, the prior still the predicted map
    args = dict(args, jitter=0.2)
    for seed in range(3):
        x, _ = make_item(w, args, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        assert rng.random() < 1.0  # the prior_mix draw
        cy0, cx0, cy1, cx1 = grow_box(jitter_box(pbox, PRED_JITTER * 0.2, rng, (0, 0, *w.image.shape)), 0.2, w.image.shape)
        want = input_planes(w.image[cy0:cy1, cx0:cx1], w.prior[cy0:cy1, cx0:cx1].astype(np.float32) / 255, 24)
        np.testing.assert_array_equal(x, want)

    missed = load_windows(files[1])[0]  # no prediction: degraded ground truth, the plain draws
    for seed in range(3):
        a = make_item(missed, args, np.random.default_rng(seed))
        b = _plain_item(missed, args, np.random.default_rng(seed))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_prior_mix_zero_and_no_priors_are_the_plain_path_exactly(squares, tmp_path):
    root, images, _ = squares
    oof = build_crop_cache(images, tmp_path / "cache-oof", progress=False, priors=tmp_path / "oof")
    plain = build_crop_cache(images, tmp_path / "cache", progress=False)
    args = dict(ARGS, gamma=[0.7, 1.4])
    for f_oof, f_plain in zip(oof, plain):
        w_oof, w_plain = load_windows(f_oof)[0], load_windows(f_plain)[0]
        for seed in range(4):
            ref = _plain_item(w_plain, dict(args, gamma=None), np.random.default_rng(seed))
            cases = [(w_oof, dict(args, prior_mix=0.0)), (w_plain, args), (w_plain, dict(args, prior_mix=1.0))]
            for w, a in cases:
                x, y = make_item(w, a, np.random.default_rng(seed))
                x0, y0 = make_item(w_plain, dict(args, prior_mix=0.0), np.random.default_rng(seed))
                np.testing.assert_array_equal(x, x0)
                np.testing.assert_array_equal(y, y0)
            x, y = make_item(w_oof, dict(args, gamma=None, prior_mix=0.0), np.random.default_rng(seed))
            np.testing.assert_array_equal(x, ref[0])  # and today's code, draw for draw
            np.testing.assert_array_equal(y, ref[1])


def test_priors_folder_errors_and_config_keys(tmp_path, squares):
    from yolohand.errors import YolohandError

    _, images, _ = squares
    with pytest.raises(YolohandError, match="probability-map folder not found"):
        build_crop_cache(images, tmp_path / "c1", progress=False, priors=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(YolohandError, match="no probability map of any training image"):
        build_crop_cache(images, tmp_path / "c2", progress=False, priors=tmp_path / "empty")
    assert check_args({"priors": "oof", "prior_mix": 0.25, "gate_margin": 0.01}, "t") == {
        "priors": "oof", "prior_mix": 0.25, "gate_margin": 0.01}
    with pytest.raises(YolohandError, match="prior_mix"):
        check_args({"prior_mix": 1.5}, "t")


def test_gate_keeps_the_detectors_crop_for_a_gated_class_only():
    image = np.zeros((100, 120), np.uint8)
    crops: cr.ClassCrops = [None] * NUM_CLASSES
    probs = np.zeros((20, 30), np.float32)
    probs[5:15, 5:25] = 0.9
    crops[4] = cr.Crop(40, 50, probs, 0.7)
    crops[7] = cr.Crop(10, 10, np.full((12, 14), 0.6, np.float32), 0.8)
    dev = torch.device("cpu")
    free = refine_crops(_Oracle().eval(), image, crops, margin=0.5, size=32, device=dev)
    gated = refine_crops(_Oracle().eval(), image, crops, margin=0.5, size=32, device=dev, keep=gate_classes(
        {"classes": [4]}))
    assert gated[4] is crops[4]  # the detector's crop, untouched
    assert free[4] is not crops[4] and (free[4].y0, free[4].x0) != (crops[4].y0, crops[4].x0)
    np.testing.assert_array_equal(gated[7].probs, free[7].probs)  # the others refined as without a gate
    assert (gated[7].y0, gated[7].x0) == (free[7].y0, free[7].x0)
    assert sum(c is not None for c in gated) == 2


def test_gate_of_and_its_line():
    det = np.ones((3, NUM_CLASSES))
    ref = np.ones((3, NUM_CLASSES))
    ref[:, 2] = 0.99  # worse by 0.01: gated
    ref[:, 5] = 0.999  # worse by 0.001, inside the margin: refined
    ref[:, 9] = 1.0
    det[:, 9] = 0.9  # better: refined
    gate = gate_of(det, ref, 0.002)
    assert gate["classes"] == [2] and gate["images"] == 3 and len(gate["detector"]) == NUM_CLASSES
    line = gate_line(gate, " r.pt")
    assert "\n" not in line and CLASSES[2] in line and CLASSES[5] not in line and "1 class:" in line
    assert "no class gated" in gate_line(gate_of(det, det, 0.002))
    assert "has no gate" in gate_line(None)
    assert gate_classes(None) == frozenset() and gate_classes(gate) == {2}


def _save_refiner(path: Path, **meta):
    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.network import build_model

    model = build_model("Unet", "resnet18", in_channels=2, quiet=True)
    torch.save({"yolohand": checkpoint_meta("refine", "Unet", "resnet18", 32, channels=2, margin=0.15, **meta),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)


def test_checkpoint_gate_is_applied_and_old_checkpoints_load(tmp_path, capsys):
    from yolohand.models.family import load_refiner

    _save_refiner(tmp_path / "old.pt")  # metadata from before the gate
    _save_refiner(tmp_path / "new.pt", gate={"classes": [3], "margin": 0.002, "images": 4,
                                             "detector": [1.0] * NUM_CLASSES, "refined": [1.0] * NUM_CLASSES})
    old = load_refiner(tmp_path / "old.pt", device="cpu")
    assert old.gate == frozenset() and "gate" not in capsys.readouterr().err
    new = load_refiner(tmp_path / "new.pt", device="cpu")
    err = capsys.readouterr().err.strip().splitlines()
    assert new.gate == {3} and len(err) == 1 and CLASSES[3] in err[0] and "new.pt" in err[0]
    crops: cr.ClassCrops = [None] * NUM_CLASSES
    crops[3] = cr.Crop(20, 30, np.full((30, 30), 0.9, np.float32), 0.9)
    crops[6] = cr.Crop(5, 5, np.full((20, 20), 0.9, np.float32), 0.9)
    image = np.zeros((80, 96), np.uint8)
    out_new, out_old = new.refine(image, crops), old.refine(image, crops)
    assert out_new[3] is crops[3] and out_old[3] is not crops[3] and out_new[6] is not crops[6]


@pytest.mark.slow
def test_training_on_oof_priors_stores_the_gate(squares, tmp_path, monkeypatch, capsys):
    """One tiny epoch behind a perfect stand-in detector: the refiner is worse on class 0, so the
    gate holds class 0; the OOF windows have their own cache folder."""
    from yolohand.data.layout import image_size
    from yolohand.data.samples import label_masks
    from yolohand.models.refine.train import train_fold
    from yolohand.models.shared.checkpoint import parse_model, read_checkpoint

    root, images, _ = squares
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det.pt").write_bytes(b"stand-in")

    def perfect(paths, detector, device):
        out = []
        for p in paths:
            gt = label_masks(p, image_size(p))[0]
            rows, cols = np.flatnonzero(gt.any(axis=1)), np.flatnonzero(gt.any(axis=0))
            crops: cr.ClassCrops = [None] * NUM_CLASSES
            crops[0] = cr.Crop(int(rows[0]), int(cols[0]), gt[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32))
            out.append(crops)
        return out

    res = train_fold(0, spec=parse_model("refine:Unet:resnet18"), yolo=root, runs=tmp_path / "runs", name="r",
                     device="cpu", progress=False, first_stage=perfect, imgsz=32, epochs=1, batch=2, workers=0,
                     threads=1, seed=0, bn_batches=0, detector=str(tmp_path / "det.pt"), priors=str(tmp_path / "oof"),
                     prior_mix=0.5)
    gate = read_checkpoint(res.best)["yolohand"]["gate"]
    assert gate["classes"] == [0] and gate["detector"][0] == pytest.approx(1.0) and gate["refined"][0] < 0.998
    err = capsys.readouterr().err
    assert "training priors: 1 of 2 bones" in err and f"keeps the detector's mask for 1 class: {CLASSES[0]}" in err
    assert [p.name for p in (root / "cache").iterdir() if p.name.startswith("bones-priors-")]
