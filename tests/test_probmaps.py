"""Probability-map files: exact rounding, the 0.5 <-> 128 threshold, validation on load."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from yolohand.core.classes import CLASSES
from yolohand.core.probmaps import (
    THRESHOLD_U8,
    iter_probmap_folder,
    load_probmap,
    probmap_path,
    save_probmap,
    to_uint8,
)
from yolohand.errors import YolohandError

SHAPE = (29, 6, 7)


def test_roundtrip_float_is_round_half_up(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.random(SHAPE)
    probs[0, 0, :4] = [0.0, 1.0, 0.5, 127.5 / 255]
    path = tmp_path / "image1.npz"
    save_probmap(path, probs)
    u8 = load_probmap(path)
    assert u8.dtype == np.uint8 and u8.shape == SHAPE
    np.testing.assert_array_equal(u8, np.floor(probs * 255 + 0.5).astype(np.uint8))
    assert list(u8[0, 0, :4]) == [0, 255, 128, 128]
    assert os.listdir(tmp_path) == ["image1.npz"]  # no temp file, no doubled ".npz.npz"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_half_is_u8_128(dtype):
    # p >= 0.5 exactly when round(p * 255) >= 128, including the values next to 0.5.
    below = np.nextafter(dtype(0.5), dtype(0))
    above = np.nextafter(dtype(0.5), dtype(1))
    p = np.concatenate([np.array([below, 0.5, above, 0, 1], dtype=dtype),
                        np.random.default_rng(1).random(5000).astype(dtype)])
    u8 = to_uint8(p.reshape(1, 1, -1))
    np.testing.assert_array_equal(u8.ravel() >= THRESHOLD_U8, p >= 0.5)


def test_uint8_and_bool_inputs(tmp_path):
    u8 = np.random.default_rng(2).integers(0, 256, SHAPE, dtype=np.uint8)
    save_probmap(tmp_path / "a.npz", u8)
    np.testing.assert_array_equal(load_probmap(tmp_path / "a.npz"), u8)
    save_probmap(tmp_path / "b.npz", u8 > 100)
    np.testing.assert_array_equal(load_probmap(tmp_path / "b.npz"), (u8 > 100) * 255)


@pytest.mark.parametrize(
    "probs, match",
    [
        (np.full(SHAPE, 1.5), r"\[0, 1\]"),
        (np.full(SHAPE, -0.1), r"\[0, 1\]"),
        (np.full(SHAPE, np.nan), "NaN"),
        (np.zeros((28, 4, 4)), r"shape \(29, H, W\)"),
        (np.zeros((4, 4)), r"shape \(29, H, W\)"),
        (np.zeros(SHAPE, dtype=np.int32), "dtype"),
    ],
)
def test_save_refuses_bad_input_and_writes_nothing(tmp_path, probs, match):
    path = tmp_path / "x.npz"
    with pytest.raises(YolohandError, match=match) as err:
        save_probmap(path, probs)
    assert str(path) in str(err.value)
    assert os.listdir(tmp_path) == []


def _write_raw(path, **arrays):
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


NAMES = np.array(CLASSES)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"classes": NAMES}, "no 'probs' array"),
        ({"probs": np.zeros(SHAPE, np.uint8)}, "no 'classes' array"),
        ({"probs": np.zeros((28, 3, 3), np.uint8), "classes": NAMES}, r"shape \(29, H, W\)"),
        ({"probs": np.zeros(SHAPE, np.float32), "classes": NAMES}, "must be uint8"),
        ({"probs": np.zeros(SHAPE, np.uint8), "classes": NAMES[::-1]}, "index 0: file has 'Ulna'"),
        ({"probs": np.zeros(SHAPE, np.uint8), "classes": NAMES[:28]}, "index 28: file has '<end>'"),
    ],
)
def test_load_validates(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    _write_raw(path, **arrays)
    with pytest.raises(YolohandError, match=match) as err:
        load_probmap(path)
    assert str(err.value).startswith(str(path))


def test_load_missing_corrupt_and_wrong_size(tmp_path):
    with pytest.raises(YolohandError, match="not found"):
        load_probmap(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(YolohandError, match="junk.npz: not a readable"):
        load_probmap(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "trunc.npz", "w") as z:
        z.writestr("probs.npy", b"\x93NUMPY garbage")
    with pytest.raises(YolohandError, match="trunc.npz"):
        load_probmap(tmp_path / "trunc.npz")
    save_probmap(tmp_path / "ok.npz", np.zeros(SHAPE))
    with pytest.raises(YolohandError, match="maps are 6x7 but the image is 8x8"):
        load_probmap(tmp_path / "ok.npz", shape=(8, 8))


def test_paths_and_folder_listing(tmp_path):
    assert probmap_path(tmp_path, "ID001/image1661130828152_R.png") == tmp_path / "image1661130828152_R.npz"
    assert probmap_path("p", "image1.png").name == "image1.npz"
    for stem in ("b", "a", "c"):
        save_probmap(probmap_path(tmp_path, f"{stem}.png"), np.zeros(SHAPE))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".a.npz.123.tmp").write_text("x")
    (tmp_path / "sub.npz").mkdir()
    assert iter_probmap_folder(tmp_path) == [(f"{s}.png", tmp_path / f"{s}.npz") for s in "abc"]
    with pytest.raises(YolohandError, match="not found"):
        iter_probmap_folder(tmp_path / "missing")
