"""yolohand.core.rle against independent straightforward implementations written here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from yolohand.core import rle

SETTINGS = settings(max_examples=150, deadline=None)


# ----------------------------------------------------------------------------- references


def naive_encode(mask: np.ndarray) -> str:
    """The textbook way: flatten, pad with zeros, diff, pair up boundaries."""
    flat = np.concatenate([[0], np.asarray(mask).ravel() != 0, [0]]).astype(np.int8)
    bounds = np.flatnonzero(np.diff(flat)) + 1
    bounds[1::2] -= bounds[0::2]
    return " ".join(str(x) for x in bounds)


def naive_decode(text: str, shape: tuple[int, int]) -> np.ndarray:
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    values = [int(x) for x in text.split()]
    for start, length in zip(values[0::2], values[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(shape)


# ----------------------------------------------------------------------------- strategies


@st.composite
def random_masks(draw, max_side: int = 24) -> np.ndarray:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.8, 0.97, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).random((h, w)) < density


@st.composite
def bone_masks(draw) -> np.ndarray:
    """Ellipses and polygons (as cv2 fills them), often overhanging the border."""
    h = draw(st.integers(1, 80))
    w = draw(st.integers(1, 80))
    mask = np.zeros((h, w), np.uint8)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            center = (draw(st.integers(-10, w + 10)), draw(st.integers(-10, h + 10)))
            axes = (draw(st.integers(0, 60)), draw(st.integers(0, 60)))
            angle = draw(st.integers(0, 179))
            cv2.ellipse(mask, center, axes, angle, 0, 360, 1, -1)
        else:
            n = draw(st.integers(3, 8))
            pts = draw(hnp.arrays(np.int32, (n, 2), elements=st.integers(-10, 90)))
            cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


any_mask = st.one_of(random_masks(), bone_masks())


# ----------------------------------------------------------------------------- hand-made cases


def test_design_example():
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[0, 1] = mask[1, 3] = mask[2, 0] = True
    assert rle.encode(mask) == "1 2 8 2"
    assert rle.mask_to_runs(mask).tolist() == [[0, 2], [7, 9]]
    np.testing.assert_array_equal(rle.decode("1 2 8 2", (3, 4)), mask)


def test_empty_and_full():
    assert rle.encode(np.zeros((5, 7), bool)) == ""
    assert rle.encode(np.ones((5, 7), bool)) == "1 35"
    assert rle.mask_to_runs(np.zeros((5, 7), bool)).shape == (0, 2)
    assert rle.mask_to_runs(np.zeros((5, 7), bool)).dtype == np.int64
    for empty in ("", "   ", None, float("nan"), "nan", "NaN"):
        assert not rle.decode(empty, (5, 7)).any()
    assert rle.decode("1 35", (5, 7)).all()


def test_wrapping_run_is_one_run():
    mask = np.zeros((3, 4), bool)
    mask[0, 2:] = True
    mask[1, :] = True
    mask[2, :1] = True
    assert rle.encode(mask) == "3 7"


def test_odd_shapes():
    row = np.array([[1, 1, 0, 1, 0, 0, 1, 1]], np.uint8)
    assert rle.encode(row) == "1 2 4 1 7 2"
    assert rle.encode(row.T) == "1 2 4 1 7 2"
    assert rle.encode(np.ones((1, 1), bool)) == "1 1"


def test_numeric_masks_nonzero_is_set():
    mask = np.array([[0, 255, 7], [0, 0, 1]], np.uint8)
    assert rle.encode(mask) == "2 2 6 1"
    assert rle.encode(mask.astype(np.float32)) == "2 2 6 1"
    assert rle.encode(-mask.astype(np.int16)) == "2 2 6 1"


def test_not_2d_refused():
    with pytest.raises(ValueError, match="2-D"):
        rle.mask_to_runs(np.zeros((2, 3, 4), bool))


def test_touching_runs_are_fused_on_read():
    # A per-row encoder writes "3 2 5 4" for one run wrapping from row 0 to row 1 (width 4).
    assert rle.string_to_runs("3 2 5 4", 12).tolist() == [[2, 8]]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("1 2 3", "odd number of values (3)"),
        ("1 x", "value 2 is not an integer: 'x'"),
        ("1.5 2", "value 1 is not an integer: '1.5'"),
        ("1 2,", "not an integer"),
        ("1e3 2", "not an integer"),
        ("0 2", "run 1: start 0 < 1"),
        ("-4 2", "run 1: start -4 < 1"),
        ("1 0", "run 1 (start 1): length 0 is not positive"),
        ("1 2 5 -1", "run 2 (start 5): length -1 is not positive"),
        ("5 2 1 1", "run 2 (start 1) is out of order"),
        ("1 3 3 2", "run 2 (start 3) overlaps the previous run"),
        ("13 1", "run 1 starts past the image"),
        ("11 3", "run 1 ends past the image"),
        ("99999999999999999999 1", "too large"),
        ("-99999999999999999999 5", "too large"),
        ("1 99999999999999999999", "too large"),
        ("1 2\x00 3 4", "NUL"),
    ],
)
def test_malformed_strings(text, reason):
    with pytest.raises(ValueError) as info:
        rle.string_to_runs(text, size=12)
    assert reason in str(info.value)
    with pytest.raises(ValueError):
        rle.decode(text, (3, 4))


def test_non_string_refused():
    with pytest.raises(ValueError):
        rle.string_to_runs(3.0)


def test_crop_to_runs_hand_made():
    crop = np.ones((2, 2), bool)
    # Crop overhanging the bottom-right corner of a 3x4 image keeps only the inside pixel.
    assert rle.crop_to_runs(crop, 2, 3, (3, 4)).tolist() == [[11, 12]]
    assert rle.crop_to_runs(crop, 5, 0, (3, 4)).shape == (0, 2)
    assert rle.crop_to_runs(crop, -1, -1, (3, 4)).tolist() == [[0, 1]]


def test_vote_float_tie_resolved_exactly():
    """0.1 + 0.2 is 0.30000000000000004 in floats; the vote resolves ties as exact arithmetic."""
    a, b, c = rle.string_to_runs("1 1"), rle.string_to_runs("1 1"), rle.empty_runs()
    weights = [0.1, 0.2, 0.3]
    assert rle.vote([a, b, c], weights).shape == (0, 2)  # 0.3 is not > 0.6 / 2
    assert rle.vote([a, b, c], weights, min_weight=0.3).tolist() == [[0, 1]]


def test_vote_argument_checks():
    r = rle.string_to_runs("1 1")
    with pytest.raises(ValueError):
        rle.vote([r, r], weights=[1.0])
    with pytest.raises(ValueError):
        rle.vote([r, r], weights=[1.0, -1.0])
    with pytest.raises(ValueError):
        rle.vote([r, r], min_weight=0)
    assert rle.vote([]).shape == (0, 2)
    assert rle.vote([rle.empty_runs()] * 3).shape == (0, 2)


# ----------------------------------------------------------------------------- properties


@SETTINGS
@given(any_mask)
def test_encode_matches_naive(mask):
    text = rle.encode(mask)
    assert text == naive_encode(mask)
    assert text == naive_encode(mask.astype(np.uint8) * 255)
    # Memory layouts: Fortran order, strided views, a slice of a wider array.
    assert rle.encode(np.asfortranarray(mask)) == text
    assert rle.encode(mask[:, ::2]) == naive_encode(mask[:, ::2])
    wide = np.zeros((mask.shape[0], mask.shape[1] + 11), bool)
    wide[:, 3 : 3 + mask.shape[1]] = mask
    assert rle.encode(wide[:, 3 : 3 + mask.shape[1]]) == text


@SETTINGS
@given(any_mask)
def test_decode_roundtrip_matches_naive(mask):
    text = naive_encode(mask)
    decoded = rle.decode(text, mask.shape)
    assert decoded.dtype == bool and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)
    np.testing.assert_array_equal(decoded, naive_decode(text, mask.shape))


@SETTINGS
@given(any_mask)
def test_runs_are_canonical_and_roundtrip(mask):
    runs = rle.mask_to_runs(mask)
    assert runs.dtype == np.int64 and runs.ndim == 2 and runs.shape[1] == 2
    assert (runs[:, 1] > runs[:, 0]).all()
    assert (runs[1:, 0] > runs[:-1, 1]).all()  # sorted, disjoint, not touching
    assert rle.area(runs) == mask.sum()
    np.testing.assert_array_equal(rle.runs_to_mask(runs, mask.shape), mask)
    assert rle.string_to_runs(rle.runs_to_string(runs), mask.size).tolist() == runs.tolist()


@SETTINGS
@given(any_mask, st.integers(-30, 30), st.integers(-30, 30), st.integers(1, 40), st.integers(1, 40))
def test_crop_to_runs_equals_pasting(crop, y0, x0, h, w):
    # Paste with margins wide enough for any crop and offset, then cut the image out.
    m = 31 + max(crop.shape)
    canvas = np.zeros((h + 2 * m, w + 2 * m), bool)
    canvas[m + y0 : m + y0 + crop.shape[0], m + x0 : m + x0 + crop.shape[1]] = crop
    image = canvas[m : m + h, m : m + w]
    assert rle.crop_to_runs(crop, y0, x0, (h, w)).tolist() == rle.mask_to_runs(image).tolist()


@st.composite
def mask_stacks(draw):
    h = draw(st.integers(1, 16))
    w = draw(st.integers(1, 16))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.1, 0.5, 0.9]))
    return rng.random((k, h, w)) < density


@SETTINGS
@given(mask_stacks())
def test_intersection_union_match_dense(stack):
    a, b = stack[0], stack[-1]
    ra, rb = rle.mask_to_runs(a), rle.mask_to_runs(b)
    assert rle.intersection_area(ra, rb) == np.count_nonzero(a & b)
    assert rle.intersection_area(rb, ra) == np.count_nonzero(a & b)
    assert rle.area(ra) + rle.area(rb) - rle.intersection_area(ra, rb) == np.count_nonzero(a | b)


@SETTINGS
@given(mask_stacks(), st.data())
def test_vote_matches_dense(stack, data):
    k = stack.shape[0]
    runs = [rle.mask_to_runs(m) for m in stack]
    kind = data.draw(st.sampled_from(["unit", "int", "dyadic"]))
    if kind == "unit":
        weights = None
        w = np.ones(k)
    elif kind == "int":
        w = np.array(data.draw(st.lists(st.integers(0, 4), min_size=k, max_size=k)))
        weights = w.tolist()
    else:  # multiples of 1/4 are exact in floats, so the dense sum is exact too
        w = np.array(data.draw(st.lists(st.integers(0, 12), min_size=k, max_size=k))) / 4
        weights = w.tolist()
    dense = np.tensordot(w, stack.astype(np.float64), axes=1)
    if data.draw(st.booleans()):
        min_weight = data.draw(st.sampled_from([0.25, 0.5, 1, 1.5, 2, 3, 5]))
        expected = dense >= min_weight
    else:
        min_weight = None
        expected = dense > w.sum() / 2
    voted = rle.vote(runs, weights, min_weight)
    assert (voted[1:, 0] > voted[:-1, 1]).all()  # canonical
    np.testing.assert_array_equal(rle.runs_to_mask(voted, stack.shape[1:]), expected)


# ----------------------------------------------------------------------------- boxes, crops, classes


def dense_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1), exclusive ends, from np.nonzero."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def test_boxes_hand_made():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    assert rle.mask_bbox(mask) == (1, 1, 2, 3)
    assert rle.bbox(rle.mask_to_runs(mask), 4) == (1, 1, 2, 3)
    # A run wrapping from row 0 into row 1 covers column 3 and column 0: the box is full width.
    assert rle.bbox(rle.string_to_runs("4 2"), 4) == (0, 0, 2, 4)
    assert rle.bbox(rle.empty_runs(), 4) is None and rle.mask_bbox(np.zeros((2, 2))) is None
    assert rle.union_boxes([None, (1, 2, 3, 4), (0, 3, 2, 9), None]) == (0, 2, 3, 9)
    assert rle.union_boxes([None]) is None and rle.union_boxes([]) is None
    assert rle.runs_crop(rle.mask_to_runs(mask), (0, 1, 2, 3), (3, 4)).tolist() == [[False, False], [True, True]]


@SETTINGS
@given(any_mask, st.data())
def test_bbox_and_crop_match_dense(mask, data):
    h, w = mask.shape
    runs = rle.mask_to_runs(mask)
    assert rle.mask_bbox(mask) == dense_box(mask)
    assert rle.mask_bbox(mask.astype(np.uint8) * 7) == dense_box(mask)
    box = rle.bbox(runs, w)
    if box is None:
        assert dense_box(mask) is None
    else:  # the box holds every pixel; it is the dense box unless a run wraps (then full width)
        y0, x0, y1, x1 = box
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
        assert (y0, y1) == (dense_box(mask)[0], dense_box(mask)[2])
        assert (x0, x1) == (dense_box(mask)[1], dense_box(mask)[3]) or (x0, x1) == (0, w)
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    np.testing.assert_array_equal(rle.runs_crop(runs, (y0, x0, y1, x1), mask.shape), mask[y0:y1, x0:x1])


@SETTINGS
@given(mask_stacks())
def test_union_matches_dense(stack):
    runs = [rle.mask_to_runs(m) for m in stack]
    merged = rle.union(runs)
    assert (merged[1:, 0] > merged[:-1, 1]).all()  # canonical
    np.testing.assert_array_equal(rle.runs_to_mask(merged, stack.shape[1:]), stack.any(axis=0))
    assert rle.union(runs[:1]).tolist() == runs[0].tolist()
    assert rle.union([]).shape == (0, 2)


@SETTINGS
@given(mask_stacks(), mask_stacks())
def test_class_counts_match_dense(a_stack, b_stack):
    h, w = a_stack.shape[1:]
    k = min(len(a_stack), len(b_stack))
    b_stack = np.resize(b_stack, (k, h, w))  # b's masks at a's shape, any content
    a_stack = a_stack[:k]
    ra = [rle.mask_to_runs(m) for m in a_stack]
    rb = [rle.mask_to_runs(m) for m in b_stack]
    inter = (a_stack & b_stack).reshape(k, -1).sum(axis=1)
    assert rle.class_areas(ra).tolist() == a_stack.reshape(k, -1).sum(axis=1).tolist()
    assert rle.class_intersections(ra, rb, h * w).tolist() == inter.tolist()
    assert rle.class_intersections(ra, rb).tolist() == inter.tolist()  # stride from the runs
    stacked, cls = rle.stack_classes(ra, h * w)
    assert (stacked[1:, 0] >= stacked[:-1, 1]).all() and (np.diff(cls) >= 0).all()  # sorted, disjoint
    back = stacked - (cls * h * w)[:, None]
    for c in range(k):
        assert back[cls == c].tolist() == ra[c].tolist()


def test_class_intersections_refuse_mismatched_class_counts():
    with pytest.raises(ValueError, match="classes"):
        rle.class_intersections([rle.empty_runs()] * 2, [rle.empty_runs()])
