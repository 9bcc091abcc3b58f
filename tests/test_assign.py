"""yolohand.models.yolo.assign: one bone per class, jointly, with the hand's order.

Hand geometry comes from the synthetic generator's anatomy (yolohand.data.synth.hand_outlines),
an independent description of a hand: its ground-truth labellings must be consistent, and
hand-made detection errors on it must be undone.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.data import synth
from yolohand.models.yolo import assign as A
from yolohand.models.yolo import postprocess as pp

OFF = A.Anatomy(weight=0.0)


def hand_boxes(seed: int = 0, mirror: bool = False, rotate: float = 0.0, bent: bool = False) -> np.ndarray:
    """float64 (29, 4) xyxy boxes of one synthetic hand's bones (class order), in positive pixels."""
    rng = np.random.default_rng(seed)
    patient = synth.sample_patient(rng)
    pose = synth.sample_pose(rng, bent_wrist_p=1.0 if bent else 0.0)
    outlines, _ = synth.hand_outlines(patient, pose)
    a = np.deg2rad(rotate)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    boxes = np.zeros((NUM_CLASSES, 4))
    for name, pts in outlines.items():
        pts = np.minimum(pts, [1e9, 700.0])  # the forearm runs off the image, as in a radiograph
        pts = (pts * [-1.0 if mirror else 1.0, 1.0]) @ rot.T + 1500.0
        boxes[CLASS_INDEX[name]] = [*pts.min(0), *pts.max(0)]
    return boxes


def one_hot(n: int = NUM_CLASSES, score: float = 0.9) -> np.ndarray:
    return np.eye(n) * score


def names(det: np.ndarray, truth: np.ndarray | None = None) -> dict[str, str]:
    """class -> class of the bone its detection is on (detection i sits on bone i here)."""
    return {CLASSES[c]: CLASSES[int(d)] for c, d in enumerate(det) if d >= 0 and d != c}


# --------------------------------------------------------------------------- the hand's order
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), mirror=st.booleans(), rotate=st.floats(-35, 35), bent=st.booleans())
def test_true_hands_break_no_order_constraint(seed, mirror, rotate, bent):
    centres = hand_boxes(seed, mirror, rotate, bent)
    centres = np.stack([(centres[:, 0] + centres[:, 2]) / 2, (centres[:, 1] + centres[:, 3]) / 2], 1)
    # A true hand can sit inside the ramp of a constraint (margin < tau: 8 of 6000 hands, at most
    # 0.12 of one violation), never near one full violation; and nothing it costs changes a label.
    assert A.violations(centres[None])[0] < 0.5
    det, _ = A.assign(hand_boxes(seed, mirror, rotate, bent), one_hot())
    np.testing.assert_array_equal(det, np.arange(NUM_CLASSES))  # nothing to fix, nothing changed


def test_violations_count_a_swap_and_ignore_missing_classes():
    b = hand_boxes(3)
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
    swapped = centres.copy()
    f8, f12 = CLASS_INDEX["finger-8"], CLASS_INDEX["finger-12"]
    swapped[[f8, f12]] = swapped[[f12, f8]]
    missing = centres.copy()
    missing[[f8, f12]] = np.nan
    v = A.violations(np.stack([centres, swapped, missing]))
    assert v[0] == 0.0 and v[2] == 0.0
    assert v[1] >= 2.0  # finger-8 vs 12 fully, and each against the other ray's next bones


# --------------------------------------------------------------------------- hand-made errors
def test_fingertip_swap_is_undone_by_the_order():
    boxes, scores = hand_boxes(1), one_hot()
    f8, f12 = CLASS_INDEX["finger-8"], CLASS_INDEX["finger-12"]
    scores[f8, [f8, f12]] = 0.35, 0.6  # the middle fingertip looks like the ring's ...
    scores[f12, [f8, f12]] = 0.6, 0.35  # ... and the other way round
    plain, _ = A.assign(boxes, scores, OFF)
    assert names(plain) == {"finger-8": "finger-12", "finger-12": "finger-8"}
    det, score = A.assign(boxes, scores)
    np.testing.assert_array_equal(det, np.arange(NUM_CLASSES))
    assert score[f8] == pytest.approx(0.35) and score[f12] == pytest.approx(0.35)


def test_thumb_labelled_on_the_little_finger_of_a_mirrored_hand():
    boxes, scores = hand_boxes(2, mirror=True), one_hot()
    f3, f19 = CLASS_INDEX["finger-3"], CLASS_INDEX["finger-19"]
    scores[f19, [f3, f19]] = 0.7, 0.3  # the little metacarpal called the thumb's
    scores[f3, [f3, f19]] = 0.3, 0.6
    assert names(A.assign(boxes, scores, OFF)[0]) == {"finger-3": "finger-19", "finger-19": "finger-3"}
    np.testing.assert_array_equal(A.assign(boxes, scores)[0], np.arange(NUM_CLASSES))


def test_a_neighbour_does_not_stand_in_for_a_missed_bone():
    # finger-13 is not detected on its bone; the only other candidate is a weak second box on
    # the index finger's middle phalanx (finger-5), which top-1 takes. Grouped with finger-5's
    # box (same bone), it cannot label a second class.
    boxes, scores = hand_boxes(4), one_hot()
    f5, f13 = CLASS_INDEX["finger-5"], CLASS_INDEX["finger-13"]
    scores[f13] = 0.0
    boxes = np.vstack([boxes, boxes[f5] + [2, 0, 2, 0]])
    scores = np.vstack([scores, np.zeros(NUM_CLASSES)])
    scores[-1, f13] = 0.3
    assert A.assign(boxes, scores, OFF, iou=1.01, overlap_iou=1.01)[0][f13] == NUM_CLASSES  # ungrouped
    det, _ = A.assign(boxes, scores)
    assert det[f13] == -1 and det[f5] == f5


def test_one_detection_cannot_win_two_classes():
    # Two classes, two bones: box 0 is best at both classes; box 1 only fits class 1.
    boxes = np.array([[0, 0, 10, 10], [50, 0, 60, 10]], float)
    scores = np.array([[0.9, 0.8], [0.0, 0.3]])
    det, score = A.assign(boxes, scores)
    assert det.tolist() == [0, 1] and score.tolist() == pytest.approx([0.9, 0.3])
    # the same bone seen twice (box IoU 0.82): one object, one class
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 0, 60, 10]], float)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.0, 0.0]])
    assert A.assign(boxes, scores)[0].tolist() == [0, -1]


def test_ties_go_to_the_first_detection_and_low_scores_label_nothing():
    boxes = np.array([[0, 0, 10, 10], [50, 0, 60, 10], [100, 0, 110, 10]], float)
    scores = np.array([[0.5, 0.0, 0.005], [0.5, 0.0, 0.0], [0.0, 0.4, 0.0]])
    det, _ = A.assign(boxes, scores)
    assert det.tolist() == [0, 2, -1]  # class 2's only score is under MIN_SCORE
    scores = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    assert A.assign(boxes, scores)[0].tolist() == [0, 1]
    # inside one object, the first of equally scored members gives the mask
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    assert A.assign(same, np.array([[0.5, 0.1], [0.5, 0.2]]))[0].tolist() == [0, -1]


def test_touching_bones_are_not_merged_but_distant_classes_are():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 13]], float)  # IoU 0.77
    tri, pis = CLASS_INDEX["Triquetrum"], CLASS_INDEX["Pisiform"]
    scores = np.zeros((2, NUM_CLASSES))
    scores[0, tri], scores[1, pis] = 0.8, 0.7
    obj, _, _ = A.group_detections(boxes, scores)
    assert len(obj) == 2
    f8, f12 = CLASS_INDEX["finger-8"], CLASS_INDEX["finger-12"]
    scores = np.zeros((2, NUM_CLASSES))
    scores[0, f8], scores[1, f12] = 0.8, 0.7
    obj, src, leader = A.group_detections(boxes, scores)
    assert len(obj) == 1 and obj[0, f8] == 0.8 and obj[0, f12] == 0.7
    assert src[0, f8] == 0 and src[0, f12] == 1 and leader.tolist() == [0]


# --------------------------------------------------------------------------- properties
def _brute_force(scores: np.ndarray, min_score: float) -> float:
    """Best total of any one-to-one labelling (straightforward enumeration)."""
    n, c = scores.shape
    best = 0.0
    for k in range(min(n, c) + 1):
        for cls in itertools.permutations(range(c), k):
            for det in itertools.permutations(range(n), k):
                s = scores[list(det), list(cls)]
                if (s >= min_score).all():
                    best = max(best, float(s.sum()))
    return best


score_matrices = st.integers(1, 4).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda c: st.lists(st.lists(st.sampled_from([0.0, 0.005, 0.1, 0.3, 0.5, 0.7, 0.9]), min_size=c, max_size=c),
                           min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(rows=score_matrices)
def test_assignment_is_one_to_one_and_optimal(rows):
    scores = np.array(rows)
    n, c = scores.shape
    boxes = np.array([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(n)])  # disjoint: one object each
    det, score = A.assign(boxes, scores, OFF)
    used = det[det >= 0]
    assert len(set(used.tolist())) == len(used)  # each detection labels at most one class
    assert det.shape == (c,)  # each class gets at most one detection
    assert (score[det >= 0] >= A.MIN_SCORE).all()
    np.testing.assert_allclose(score[det >= 0], scores[used, np.flatnonzero(det >= 0)])
    assert score.sum() == pytest.approx(_brute_force(scores, A.MIN_SCORE), abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(rows=score_matrices)
def test_total_is_at_least_greedy_top1(rows):
    scores = np.array(rows)
    boxes = np.array([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(len(scores))])
    _, score = A.assign(boxes, scores, OFF)
    # top-1 as ultralytics + class_crops do it: each box has one class (its best), each class
    # keeps its most confident box; those picks are distinct boxes, so a valid labelling.
    best = scores.argmax(1)
    top1 = sum(scores[best == k, k].max() for k in set(best.tolist()) if scores[best == k, k].max() >= A.MIN_SCORE)
    assert score.sum() >= top1 - 1e-9
    # greedy one-to-one: repeatedly the highest remaining (box, class) pair
    s, greedy = scores.copy(), 0.0
    while s.size and s.max() >= A.MIN_SCORE:
        i, k = np.unravel_index(np.argmax(s), s.shape)
        greedy += s[i, k]
        s[i, :], s[:, k] = -1, -1
    assert score.sum() >= greedy - 1e-9


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), data=st.data())
def test_with_anatomy_still_one_to_one(seed, data):
    rng = np.random.default_rng(seed)
    boxes = hand_boxes(seed)
    boxes = np.vstack([boxes, boxes[rng.integers(0, NUM_CLASSES, 6)] + rng.normal(0, 30, (6, 4))])
    scores = rng.random((len(boxes), NUM_CLASSES)) ** data.draw(st.sampled_from([1, 4, 12]))
    det, score = A.assign(boxes, scores)
    used = det[det >= 0]
    assert len(set(used.tolist())) == len(used)
    assert (score[det >= 0] >= 0).all()


# --------------------------------------------------------------------------- class_crops(merge="assign")
def _instances(boxes, conf, cls, scores=None) -> pp.Instances:
    n = len(conf)
    return pp.Instances(
        protos=np.full((1, 16, 16), 4.0, np.float32), coef=np.ones((n, 1), np.float32),
        boxes=np.asarray(boxes, np.float32), conf=np.asarray(conf, np.float32), cls=np.asarray(cls, np.int64),
        letterbox=pp.Letterbox.from_shapes((64, 64), (64, 64)),
        scores=None if scores is None else np.asarray(scores, np.float32),
    )


def test_class_crops_assign_one_box_one_class():
    # One bone seen as class 0 (0.8) and as class 2 (0.6) by two boxes; class 2's real bone is weaker.
    inst = _instances([[0, 0, 20, 20], [0, 0, 20, 21], [40, 40, 60, 60]], [0.8, 0.6, 0.3], [0, 2, 2])
    top1 = pp.class_crops(inst, "top1", num_classes=3)
    assert (top1[2].y0, top1[2].x0) == (0, 0)  # top-1: the class-0 bone stands in for class 2
    crops = pp.class_crops(inst, "assign", num_classes=3)
    assert crops[1] is None
    assert (crops[0].y0, crops[0].x0, crops[0].conf) == (0, 0, pytest.approx(0.8))
    assert (crops[2].y0, crops[2].x0, crops[2].conf) == (40, 40, pytest.approx(0.3))
    np.testing.assert_array_equal(crops[0].probs, top1[0].probs)  # the same detection's mask


def test_class_crops_assign_uses_the_score_vectors():
    # Box 1's best class is 0, but it also scores 0.5 for class 1: the assignment gives it class 1.
    scores = [[0.9, 0.0], [0.6, 0.5]]
    inst = _instances([[0, 0, 20, 20], [40, 40, 60, 60]], [0.9, 0.6], [0, 0], scores)
    assert pp.class_crops(inst, "top1", num_classes=2)[1] is None
    crops = pp.class_crops(inst, "assign", num_classes=2)
    assert (crops[1].y0, crops[1].conf) == (40, pytest.approx(0.5))
    np.testing.assert_array_equal(pp.class_scores(inst, 2), np.asarray(scores, np.float32))
    inst.scores = None  # without score vectors: each box's confidence for its own class
    np.testing.assert_array_equal(pp.class_scores(inst, 2), np.array([[0.9, 0.0], [0.6, 0.0]], np.float32))


def test_class_crops_rejects_unknown_merge():
    with pytest.raises(ValueError, match="assign"):
        pp.class_crops(_instances([[0, 0, 5, 5]], [0.5], [0]), "best")


@pytest.mark.slow
def test_network_keeps_per_class_scores(synth_root):
    from yolohand.data.layout import find_images, read_image
    from yolohand.defaults import DEMO_WEIGHTS
    from yolohand.models.yolo import predict as YP

    net = YP.load_network(DEMO_WEIGHTS, device="cpu")
    inst = net([read_image(find_images(synth_root / "test" / "DCM")[0].image_path)])[0]
    assert len(inst) > 0 and inst.scores.shape == (len(inst), NUM_CLASSES) and inst.coef.shape[1] == 32
    np.testing.assert_allclose(inst.scores[np.arange(len(inst)), inst.cls], inst.conf, rtol=1e-6)
    np.testing.assert_array_equal(inst.scores.argmax(1), inst.cls)
