"""yolohand.models.yolo.postprocess on hand-made instance tensors: exact expectations and torch references."""

from __future__ import annotations

import numpy as np
import pytest

from yolohand.core import crops as cr
from yolohand.core.classes import NUM_CLASSES
from yolohand.core.probmaps import THRESHOLD_U8
from yolohand.core.rle import decode
from yolohand.models.yolo import postprocess as pp


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.float64(x)))


def _instances(protos, coef, boxes, conf, cls, orig, inp) -> pp.Instances:
    return pp.Instances(
        protos=np.asarray(protos, np.float32),
        coef=np.asarray(coef, np.float32).reshape(len(conf), -1),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        conf=np.asarray(conf, np.float32),
        cls=np.asarray(cls, np.int64),
        letterbox=pp.Letterbox.from_shapes(orig, inp),
    )


def _full(crops, shape) -> np.ndarray:
    """float64 (C, H, W) maps from crops (0 outside): the straightforward reference."""
    out = np.zeros((len(crops), *shape))
    for k, c in enumerate(crops):
        if c is not None:
            out[k, c.y0 : c.y1, c.x0 : c.x1] = c.probs
    return out


# --------------------------------------------------------------------------- letterbox
def test_letterbox_geometry_matches_ultralytics_rules():
    lb = pp.Letterbox.from_shapes((2048, 2048), (1024, 1024))
    assert lb.gain == (0.5, 0.5) and lb.pad == (0, 0) and lb.content == (1024, 1024)
    lb = pp.Letterbox.from_shapes((200, 380), (192, 320))  # rect letterbox: 168 rows + 12 + 12
    assert lb.pad == (12, 0) and lb.content == (168, 320)
    assert lb.gain == pytest.approx((168 / 200, 320 / 380))
    boxes = lb.boxes_to_orig(np.array([[0, 12, 320, 180], [-5, 0, 400, 500]], np.float32))
    np.testing.assert_allclose(boxes[0], [0, 0, 380, 200])
    np.testing.assert_allclose(boxes[1], [0, 0, 380, 200])  # clipped to the image


def test_constant_logit_fills_exactly_the_box_pixels():
    # gain 1, no padding: box x in [10.2, 50), y in [20, 60.7) -> columns 11..49, rows 20..60 (crop_mask rule).
    protos = np.ones((2, 16, 16))
    inst = _instances(protos, [[0.75, 0.25]], [[10.2, 20.0, 50.0, 60.7]], [0.9], [3], (64, 64), (64, 64))
    crop = pp.instance_crop(inst, 0)
    assert (crop.y0, crop.x0, crop.y1, crop.x1) == (20, 11, 61, 50)
    np.testing.assert_allclose(crop.probs, _sigmoid(1.0), rtol=1e-6)
    assert crop.probs.dtype == np.float32


@pytest.mark.parametrize("orig,inp", [((2048, 2048), (1024, 1024)), ((200, 380), (192, 320)), ((380, 200), (320, 192))])
def test_soft_crop_equals_torch_crop_unpadded_then_resize(orig, inp):
    """Reference: crop the proto region of the unpadded image, F.interpolate (bilinear) to the
    original size, sigmoid, zero outside the box. Padding cells hold garbage that must not leak."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    mh, mw = inp[0] // 4, inp[1] // 4
    protos = rng.normal(size=(8, mh, mw)).astype(np.float32)
    lb = pp.Letterbox.from_shapes(orig, inp)
    (top, left), (ch, cw) = lb.pad, lb.content
    assert top % 4 == left % 4 == ch % 4 == cw % 4 == 0  # shapes chosen so the reference crop is exact
    protos[:, : top // 4] = 50.0  # garbage in the padding
    protos[:, (top + ch) // 4 :] = 50.0
    n = 4
    coef = rng.normal(size=(n, 8)).astype(np.float32)
    boxes = np.stack(
        [rng.uniform(0, inp[1] / 2, n), rng.uniform(0, inp[0] / 2, n), rng.uniform(inp[1] / 2, inp[1], n),
         rng.uniform(inp[0] / 2, inp[0], n)], 1)
    inst = _instances(protos, coef, boxes, np.linspace(0.9, 0.2, n), np.arange(n), orig, inp)
    logits = (torch.from_numpy(coef) @ torch.from_numpy(protos).view(8, -1)).view(n, mh, mw)
    logits = logits[:, top // 4 : (top + ch) // 4, left // 4 : (left + cw) // 4]
    ref = torch.sigmoid(F.interpolate(logits[None], orig, mode="bilinear", align_corners=False)[0]).numpy()
    bo = lb.boxes_to_orig(boxes)
    y, x = np.arange(orig[0])[:, None], np.arange(orig[1])[None]
    for i in range(n):
        inside = (x >= bo[i, 0]) & (x < bo[i, 2]) & (y >= bo[i, 1]) & (y < bo[i, 3])
        got = _full([pp.instance_crop(inst, i)], orig)[0]
        np.testing.assert_allclose(got, ref[i] * inside, atol=2e-5)


def test_empty_box_gives_no_crop():
    inst = _instances(np.ones((1, 4, 4)), [[1.0]], [[5.0, 5.0, 5.0, 9.0]], [0.9], [0], (16, 16), (16, 16))
    assert pp.instance_crop(inst, 0) is None
    assert pp.class_crops(inst) == [None] * NUM_CLASSES


# --------------------------------------------------------------------------- per-class selection
def _two_of_a_class() -> pp.Instances:
    # Proto 0 = +1 everywhere, proto 1 = +1 everywhere: logits = coef sum. 32x32 image, gain 1.
    protos = np.ones((2, 8, 8))
    return _instances(
        protos,
        coef=[[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]],
        boxes=[[0, 0, 10, 10], [5, 5, 20, 20], [0, 0, 32, 32]],
        conf=[0.6, 0.8, 0.7],
        cls=[4, 4, 7],
        orig=(32, 32),
        inp=(32, 32),
    )


def test_top1_keeps_the_most_confident_detection():
    crops = pp.class_crops(_two_of_a_class(), merge="top1")
    assert [k for k, c in enumerate(crops) if c is not None] == [4, 7]
    c = crops[4]
    assert (c.y0, c.x0, c.y1, c.x1) == (5, 5, 20, 20)  # conf 0.8 wins over 0.6
    np.testing.assert_allclose(c.probs, _sigmoid(3.0), rtol=1e-6)


def test_union_is_pixelwise_max_over_the_class():
    full = _full(pp.class_crops(_two_of_a_class(), merge="union"), (32, 32))
    want = np.zeros((32, 32))
    want[0:10, 0:10] = _sigmoid(1.0)
    want[5:20, 5:20] = _sigmoid(3.0)  # max(s(1), s(3)) on the overlap
    np.testing.assert_allclose(full[4], want, rtol=1e-6)
    assert full[7].min() == pytest.approx(_sigmoid(2.0), rel=1e-6)


def test_conf_weight_multiplies_by_confidence():
    crops = pp.class_crops(_two_of_a_class(), merge="top1", conf_weight=True)
    np.testing.assert_allclose(crops[4].probs, 0.8 * _sigmoid(3.0), rtol=1e-6)


def test_out_of_range_classes_are_ignored_and_bad_options_raise():
    inst = _instances(np.ones((1, 4, 4)), [[1.0]], [[0, 0, 8, 8]], [0.9], [NUM_CLASSES], (16, 16), (16, 16))
    assert pp.class_crops(inst) == [None] * NUM_CLASSES
    with pytest.raises(ValueError):
        pp.class_crops(inst, merge="best")
    with pytest.raises(ValueError):
        pp.class_crops(inst, mask_mode="hard")


def test_polygon_mode_refills_a_binary_blob():
    # Logit +4 inside rows/cols 8..23 of a 32x32 proto grid (gain 1, stride 1): polygon = that square.
    p = -4.0 * np.ones((1, 32, 32))
    p[0, 8:24, 8:24] = 4.0
    inst = _instances(p, [[1.0]], [[0, 0, 32, 32]], [0.9], [0], (32, 32), (32, 32))
    full = _full(pp.class_crops(inst, mask_mode="polygon"), (32, 32))[0]
    assert set(np.unique(full)) <= {0.0, 1.0}
    want = np.zeros((32, 32))
    want[8:24, 8:24] = 1
    np.testing.assert_array_equal(full, want)


# --------------------------------------------------------------------------- averaging, flip, outputs
def test_average_counts_a_missing_class_as_zero():
    a = [None] * NUM_CLASSES
    b = [None] * NUM_CLASSES
    a[0] = cr.Crop(2, 3, np.full((4, 5), 0.8, np.float32))
    b[0] = cr.Crop(4, 1, np.full((3, 3), 0.4, np.float32))
    a[1] = cr.Crop(0, 0, np.full((2, 2), 0.9, np.float32))
    avg = cr.average_crops([a, b])
    shape = (10, 10)
    np.testing.assert_allclose(_full(avg, shape), (_full(a, shape) + _full(b, shape)) / 2, atol=1e-7)
    assert avg[2] is None
    skip = cr.average_crops([a, b], missing="skip")
    np.testing.assert_allclose(_full(skip, shape)[1], _full(a, shape)[1], atol=1e-7)  # only a found class 1
    np.testing.assert_allclose(_full(skip, shape)[0], _full(avg, shape)[0], atol=1e-7)  # both found class 0
    with pytest.raises(ValueError):
        cr.average_crops([a, b], missing="mean")


def test_box_iou_hand_made():
    a = cr.Crop(0, 0, np.zeros((4, 4), np.float32))
    assert cr.box_iou(a, cr.Crop(2, 2, np.zeros((4, 4), np.float32))) == pytest.approx(4 / 28)
    assert cr.box_iou(a, cr.Crop(0, 4, np.zeros((4, 4), np.float32))) == 0.0  # touching, not overlapping
    assert cr.box_iou(a, cr.Crop(0, 0, np.zeros((4, 4), np.float32))) == 1.0


def test_average_drops_a_run_that_picked_another_bone():
    shape = (20, 20)
    confident = [None] * NUM_CLASSES
    other_bone = [None] * NUM_CLASSES
    same_bone = [None] * NUM_CLASSES
    confident[0] = cr.Crop(0, 0, np.full((6, 6), 0.9, np.float32), conf=0.9)
    other_bone[0] = cr.Crop(10, 10, np.full((6, 6), 0.8, np.float32), conf=0.6)  # disjoint: another bone
    same_bone[0] = cr.Crop(1, 1, np.full((6, 6), 0.7, np.float32), conf=0.5)  # box IoU 25/47 > 0.3
    full = {k: _full(v, shape)[0] for k, v in
            {"confident": confident, "other": other_bone, "same": same_bone}.items()}

    # Plain mean (agree_iou 0): both blobs at half strength, so neither survives threshold 0.5.
    plain = _full(cr.average_crops([confident, other_bone], "skip"), shape)[0]
    np.testing.assert_allclose(plain, (full["confident"] + full["other"]) / 2, atol=1e-7)
    assert not (plain >= 0.5).any()
    # agree_iou: the disagreeing run is a miss; skip -> the confident run alone, zero -> counted as 0.
    skip = cr.average_crops([other_bone, confident], "skip", agree_iou=0.3)
    np.testing.assert_allclose(_full(skip, shape)[0], full["confident"], atol=1e-7)
    assert skip[0].conf == pytest.approx(0.9)
    zero = cr.average_crops([confident, other_bone], "zero", agree_iou=0.3)
    np.testing.assert_allclose(_full(zero, shape)[0], full["confident"] / 2, atol=1e-7)
    # A run that agrees is averaged in; the disagreeing one still left out.
    three = cr.average_crops([confident, other_bone, same_bone], "skip", agree_iou=0.3)
    np.testing.assert_allclose(_full(three, shape)[0], (full["confident"] + full["same"]) / 2, atol=1e-7)


def test_flip_crops_mirrors_the_full_map():
    rng = np.random.default_rng(1)
    crops = [None] * NUM_CLASSES
    crops[5] = cr.Crop(1, 2, rng.random((3, 4)).astype(np.float32))
    np.testing.assert_array_equal(_full(cr.flip_crops(crops, 9), (6, 9)), _full(crops, (6, 9))[:, :, ::-1])


def test_rles_decode_to_thresholded_maps_and_probmap_agrees():
    rng = np.random.default_rng(2)
    shape = (40, 30)
    crops = [None] * NUM_CLASSES
    for k in (0, 3, 28):
        y0, x0 = rng.integers(0, 20), rng.integers(0, 15)
        crops[k] = cr.Crop(int(y0), int(x0), rng.random((int(rng.integers(1, 20)), int(rng.integers(1, 15)))).astype(np.float32))
    crops[3].probs[0, 0] = 0.5  # exactly at the threshold counts as foreground
    rles = cr.crops_to_rles(crops, shape, 0.5)
    assert len(rles) == NUM_CLASSES and rles[1] == ""
    masks = np.stack([decode(r, shape) for r in rles])
    np.testing.assert_array_equal(masks, _full(crops, shape) >= 0.5)
    u8 = cr.crops_to_probmap(crops, shape)
    assert u8.dtype == np.uint8 and u8.shape == (NUM_CLASSES, *shape)
    np.testing.assert_array_equal(u8 >= THRESHOLD_U8, masks)
    assert sum(bool(m.any()) for m in masks) == 3


def test_mask_threshold_shifts_logits():
    # Raw sigmoid t becomes 0.5: probs = sigmoid(logit - log(t / (1 - t))).
    inst = _instances(np.ones((1, 4, 4)), [[1.0]], [[0, 0, 8, 8]], [0.9], [2], (16, 16), (16, 16))
    crop = pp.class_crops(inst, mask_threshold=0.8)[2]
    np.testing.assert_allclose(crop.probs, _sigmoid(1.0 - np.log(4.0)), rtol=1e-5)
    crop = pp.class_crops(inst, mask_threshold=_sigmoid(1.0))[2]
    np.testing.assert_allclose(crop.probs, 0.5, rtol=1e-5)
    with pytest.raises(ValueError):
        pp.class_crops(inst, mask_threshold=1.0)
