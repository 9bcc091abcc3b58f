"""Per-class thresholds: the fit on hand-made maps (known answer, margin, split-half guard), the
scoring against brute force, the JSON, and the identity of all-0.5 thresholds in predict and ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolohand.core import metrics, rle
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.probmaps import load_probmap, probmap_path, save_probmap
from yolohand.errors import YolohandError
from yolohand.results import thresholds as T

SIZE = 40


def _square(y0: int, x0: int, y1: int, x1: int) -> list[list[int]]:
    """Polygon points of the pixel square rows y0..y1, columns x0..x1 (inclusive), as fillPoly fills it."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_image(root: Path, pid: str, stem: str, polygons: dict[str, list[list[int]]], size: int = SIZE) -> None:
    """One blank image and its annotation JSON (only the classes given) in the competition layout."""
    img = root / "train" / "DCM" / pid / f"{stem}.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(img), np.zeros((size, size), np.uint8))
    doc = {"annotations": [{"id": f"{i}-x", "type": "poly_seg", "attributes": {}, "points": pts, "label": name}
                           for i, (name, pts) in enumerate(polygons.items())]}
    js = root / "train" / "outputs_json" / pid / f"{stem}.json"
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(doc))


def _fill(y0: int, x0: int, y1: int, x1: int, value: int, ring: int | None = None) -> np.ndarray:
    plane = np.zeros((SIZE, SIZE), np.uint8)
    if ring is not None:
        plane[y0 - 1 : y1 + 2, x0 - 1 : x1 + 2] = ring
    plane[y0 : y1 + 1, x0 : x1 + 1] = value
    return plane


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> tuple[Path, Path]:
    """Two patients (one per half), one image each; maps with known best thresholds.

    - finger-1: truth 8x8; map 107 (p 0.42) on the truth, 77 (p 0.30) on a ring around it:
      Dice 1 at t = 0.35 and 0.40 (ring out, truth in), ~0 from 0.45 -> best 0.40 (ties: nearest 0.5);
    - finger-2: truth 30x30; one truth pixel at 115 (p 0.45), the rest 200: gain 0.00056 < margin;
    - finger-3: patient A's map sits at 120 on the truth (t <= 0.45 finds it, 0.5 does not);
      patient B's is 200 with a 120 ring (0.45 adds the ring): + on half A, - on half B;
    - every other class: empty truth, empty map.
    """
    root = tmp_path_factory.mktemp("thr") / "root"
    probs = root.parent / "probs"
    probs.mkdir()
    for pid, stem in (("ID001", "image0000000000001"), ("ID002", "image0000000000002")):
        write_image(root, pid, stem, {"finger-1": _square(5, 5, 12, 12), "finger-2": _square(5, 5, 34, 34),
                                      "finger-3": _square(20, 20, 27, 27)})
        u8 = np.zeros((NUM_CLASSES, SIZE, SIZE), np.uint8)
        u8[0] = _fill(5, 5, 12, 12, 107, ring=77)
        u8[1] = _fill(5, 5, 34, 34, 200)
        u8[1, 5, 5] = 115
        u8[2] = _fill(20, 20, 27, 27, 120) if pid == "ID001" else _fill(20, 20, 27, 27, 200, ring=120)
        save_probmap(probmap_path(probs, stem), u8)
    return root, probs


def test_map_cut_is_the_probmap_rule():
    assert T.map_cut(0.5) == 128 and T.map_cut(0.4) == 102 and T.map_cut(0.45) == 115 and T.map_cut(0.05) == 13
    assert T.prob_thresholds([0.5])[0] == 0.5
    assert len(T.GRID) == 19 and T.GRID[9] == 0.5
    # One map, weight 1: the soft vote keeps u8 >= t * 255, which is u8 >= map_cut(t) for every grid t.
    u8 = np.arange(256)
    for t in T.GRID:
        assert np.array_equal(u8 >= t * 255.0, u8 >= T.map_cut(t))
        pt = T.prob_thresholds([t])[0]
        assert np.array_equal(np.floor(u8 / 255.0 * 255.0 + 0.5) >= T.map_cut(t), u8 / 255.0 >= pt)


def test_cut_dice_equals_brute_force():
    rng = np.random.default_rng(0)
    h, w = 23, 31
    u8 = (rng.random((NUM_CLASSES, h, w)) ** 3 * 255).astype(np.uint8)
    u8[3] = 0  # an empty map
    truth_masks = rng.random((NUM_CLASSES, h, w)) < 0.3
    truth_masks[4] = False  # an empty truth
    truth_masks[3] = False  # both empty
    truth = [rle.mask_to_runs(m) for m in truth_masks]
    cuts = [T.map_cut(t) for t in T.GRID]
    got = T.cut_dice(u8, truth, cuts)
    want = np.stack([metrics.dice_masks(u8 >= cut, truth_masks) for cut in cuts])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_fit_picks_the_known_threshold_and_guards(handmade):
    root, probs = handmade
    fit = T.fit_thresholds([probs], root, split="train", progress=False)
    ch = fit.choice
    assert ch.n_images == 2 and ch.half_images == (1, 1)
    assert fit.thresholds[0] == 0.4  # exact: Dice 1 at 0.35 and 0.40, 0.40 nearer 0.5
    assert ch.scores[T.GRID.index(0.4), 0] == 1.0 and ch.scores[T.GRID.index(0.35), 0] == 1.0
    assert ch.scores[T.GRID.index(0.3), 0] < 1.0 and ch.scores[T.GRID.index(0.5), 0] < 1e-5
    assert ch.heldout_gain[0] > 0.99
    # finger-2: best 0.45 but the gain is below the margin.
    assert fit.thresholds[1] == 0.5 and fit.grid[ch.best[1]] == 0.45
    assert ch.gain[1] == pytest.approx(1 - 2 * 899 / 1799, abs=1e-6) and "margin" in ch.why(1)
    # finger-3: a big gain on half A, a loss on half B: refused by the split-half check.
    assert fit.grid[ch.best[2]] == 0.45 and ch.gain[2] > 0.3
    assert ch.half_gains[0, 2] > 0.9 and ch.half_gains[1, 2] < 0 and fit.thresholds[2] == 0.5
    assert "both halves" in ch.why(2) and ch.heldout_gain[2] < 0
    assert (fit.thresholds[3:] == 0.5).all() and (ch.gain[3:] == 0).all()
    # Without the split-half check finger-3 moves; with a huge margin nothing does.
    loose = T.fit_thresholds([probs], root, split="train", split_half=False, progress=False)
    assert loose.thresholds[2] == 0.45 and loose.thresholds[0] == 0.4
    strict = T.fit_thresholds([probs], root, split="train", margin=2.0, progress=False)
    assert (strict.thresholds == 0.5).all()


def test_json_round_trip_and_bad_files(handmade, tmp_path):
    root, probs = handmade
    fit = T.fit_thresholds([probs], root, progress=False)
    path = T.write_thresholds(fit, tmp_path / "t.json")
    doc = json.loads(path.read_text())
    assert doc["kind"] == T.KIND and doc["fit"]["images"] == 2 and doc["per_class"]["finger-1"]["best"] == 0.4
    np.testing.assert_array_equal(T.load_thresholds(path), fit.thresholds)
    with pytest.raises(YolohandError, match="already exists"):
        T.write_thresholds(fit, path)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"Pisiform": 0.4}))
    want = np.full(NUM_CLASSES, 0.5)
    want[CLASSES.index("Pisiform")] = 0.4
    np.testing.assert_array_equal(T.load_thresholds(plain), want)
    for doc, match in (({"Pisifrom": 0.4}, "unknown class 'Pisifrom'.*Pisiform"), ({"Radius": 1.5}, r"not a number in \(0, 1\]"),
                       ({"thresholds": [0.5]}, "expected"), ({"Radius": True}, "not a number")):
        plain.write_text(json.dumps(doc))
        with pytest.raises(YolohandError, match=match):
            T.load_thresholds(plain)


def test_fit_errors(handmade, tmp_path):
    root, probs = handmade
    with pytest.raises(YolohandError, match="must not overlap"):
        T.fit_thresholds([probs, probs], root, progress=False)
    one = tmp_path / "one"
    one.mkdir()
    (one / "image0000000000001.npz").write_bytes((probs / "image0000000000001.npz").read_bytes())
    with pytest.raises(YolohandError, match="at least two patients"):
        T.fit_thresholds([one], root, progress=False)
    assert T.fit_thresholds([one], root, split_half=False, progress=False).thresholds[0] == 0.4
    save_probmap(one / "image0000000000099.npz", np.zeros((NUM_CLASSES, SIZE, SIZE), np.uint8))
    with pytest.raises(YolohandError, match="image0000000000099"):
        T.fit_thresholds([one], root, progress=False)


def test_cli_thresholds_then_ensemble(handmade, tmp_path, run_cli):
    root, probs = handmade
    out = tmp_path / "thr.json"
    code, stdout, err = run_cli(["thresholds", "--probs", probs, "--gt", root, "-o", out])
    assert code == 0, err
    assert "1 of 29 classes moved off 0.5" in stdout and str(out) in stdout
    assert T.load_thresholds(out)[0] == 0.4
    # ensemble --thresholds: the fitted file finds finger-1 exactly; all 0.5 is byte-identical to plain.
    half = tmp_path / "half.json"
    half.write_text(json.dumps({"thresholds": dict.fromkeys(CLASSES, 0.5)}))
    plain, same, fitted = tmp_path / "plain.csv", tmp_path / "same.csv", tmp_path / "fitted.csv"
    assert run_cli(["ensemble", "--probs", probs, "-o", plain])[0] == 0
    code, stdout, err = run_cli(["ensemble", "--probs", probs, "-o", same, "--thresholds", half])
    assert code == 0, err
    assert "per-class thresholds" in stdout
    assert same.read_bytes() == plain.read_bytes()
    assert run_cli(["ensemble", "--probs", probs, "-o", fitted, "--thresholds", out])[0] == 0
    from yolohand.results.evaluate import evaluate

    assert evaluate(fitted, root, progress=False).per_class[0] == 1.0
    assert evaluate(plain, root, progress=False).per_class[0] < 1e-5
    code, _, err = run_cli(["ensemble", "--probs", probs, "-o", tmp_path / "x.csv", "--thresholds", out,
                            "--threshold", "0.4"])
    assert code == 1 and "give one" in err


def test_predict_thresholds_identity_and_map_agreement(synth_root_flat, tmp_path, run_cli):
    """predict --thresholds: all 0.5 writes the plain CSV byte for byte; other thresholds write
    exactly the saved maps cut at map_cut(t)."""
    from yolohand.defaults import DEMO_WEIGHTS

    src = synth_root_flat / "test" / "DCM"
    base = ["predict", "--weights", DEMO_WEIGHTS, "--source", src, "--device", "cpu"]
    half, mixed = tmp_path / "half.json", tmp_path / "mixed.json"
    half.write_text(json.dumps(dict.fromkeys(CLASSES, 0.5)))
    ts = {name: T.GRID[(3 * i) % len(T.GRID)] for i, name in enumerate(CLASSES)}
    mixed.write_text(json.dumps({"thresholds": ts}))
    plain, same, cut = tmp_path / "plain.csv", tmp_path / "same.csv", tmp_path / "cut.csv"
    assert run_cli([*base, "--rle", plain])[0] == 0
    code, _, err = run_cli([*base, "--rle", same, "--thresholds", half])
    assert code == 0, err
    assert same.read_bytes() == plain.read_bytes()
    code, _, err = run_cli([*base, "--rle", cut, "--thresholds", mixed, "--save-probs", tmp_path / "maps"])
    assert code == 0, err
    from yolohand.core.submission import iter_submission

    cuts = np.array([T.map_cut(ts[n]) for n in CLASSES])[:, None, None]
    n = 0
    for name, runs in iter_submission(cut, (256, 256)):
        u8 = load_probmap(probmap_path(tmp_path / "maps", name))
        masks = np.stack([rle.runs_to_mask(r, u8.shape[1:]) for r in runs])
        np.testing.assert_array_equal(masks, u8 >= cuts)
        n += int(masks.any())
    assert n > 0
    code, _, err = run_cli([*base, "--rle", tmp_path / "x.csv", "--thresholds", mixed, "--threshold", "0.6"])
    assert code == 1 and "give one" in err
