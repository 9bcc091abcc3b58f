"""The xray-style phantom: projection physics, annotation noise, calibration statistics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from yolohand.core.classes import CLASS_INDEX
from yolohand.data import phantom, phantom_stats
from yolohand.data.annotate import annotator_polygon, resample_closed
from yolohand.data.synth import generate_dataset, plan_jobs


def _look(**kw) -> phantom.XrayLook:
    base = dict(photons=2000.0, heel=(0.0, 0.0), scatter=0.0, blur=0.0, mu_scale=1.0, window=(-0.1, 2.0),
                gamma=1.0, density=1.0, texture=0.0, artifacts={})
    base.update(kw)
    return phantom.XrayLook(**base)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_long_bone_is_brighter_at_its_walls_than_in_its_middle() -> None:
    mask = _rect(40, 200, 0, 40, 0, 200)  # a shaft 40 px across (rows), long along x
    mask[[0, -1], :] = False
    integral, _ = phantom.bone_integral([("finger-7", mask, 0, 0)], 200, 1.0, _look(), np.zeros((200, 200), np.float32))
    profile = integral[:40, 100]
    centre = profile[19:21].mean()
    wall = profile[:19].max()
    assert wall > 1.15 * centre  # the cortical shell shows as two bright lines
    assert profile[0] == 0 and profile[1] < wall  # soft edge: the path through the bone vanishes at the tangent


def test_attenuation_adds_where_bones_overlap() -> None:
    a = _rect(60, 60, 5, 40, 5, 40)
    b = _rect(60, 60, 20, 55, 20, 55)
    tex = np.zeros((60, 60), np.float32)
    both, len_both = phantom.bone_integral([("Trapezium", a, 0, 0), ("Trapezoid", b, 0, 0)], 60, 1.0, _look(), tex)
    only_a, len_a = phantom.bone_integral([("Trapezium", a, 0, 0)], 60, 1.0, _look(), tex)
    only_b, len_b = phantom.bone_integral([("Trapezoid", b, 0, 0)], 60, 1.0, _look(), tex)
    np.testing.assert_allclose(both, only_a + only_b, rtol=1e-6)
    np.testing.assert_allclose(len_both, len_a + len_b, rtol=1e-6)
    assert both[30, 30] > max(only_a[30, 30], only_b[30, 30])


def test_quantum_noise_halves_with_four_times_the_exposure() -> None:
    flat = np.full((256, 256), 0.8, np.float32)
    stds = []
    for photons in (500.0, 2000.0):
        img = phantom.detect(np.random.default_rng(0), flat, _look(photons=photons, window=(0.0, 2.0)), 1.0, None)
        stds.append(float(img[16:-16, 16:-16].std()))
    assert stds[0] / stds[1] == pytest.approx(2.0, rel=0.15)


def test_log_readout_is_the_line_integral() -> None:
    ramp = np.tile(np.linspace(0.0, 1.5, 64, dtype=np.float32), (64, 1))
    img = phantom.detect(np.random.default_rng(0), ramp, _look(photons=1e9, window=(0.0, 2.0)), 1.0, None)
    np.testing.assert_allclose(img[32].astype(float), np.round(ramp[32] / 2.0 * 255), atol=1.0)


def test_resample_closed_normals_point_outwards() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    for pts in (square, square[::-1]):
        q, n = resample_closed(pts, 40)
        assert np.all(np.sum((q - 5.0) * n, axis=1) > 0)
        assert len(q) == 40


def test_annotator_polygon_is_tens_of_points_near_the_edge() -> None:
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    contour = np.round(np.stack([1000 + 60 * np.cos(t), 1000 + 40 * np.sin(t)], 1)).astype(np.int32)
    poly = annotator_polygon(contour, {"Lunate": contour}, "Lunate", 2048, np.random.default_rng(1))
    assert 14 <= len(poly) <= 60
    r = np.hypot((poly[:, 0] - 1000) / 60, (poly[:, 1] - 1000) / 40)
    assert np.all(np.abs(r - 1) < 0.15)  # within a few px of the true edge
    assert not np.array_equal(poly, contour)


def test_same_seed_same_bytes_and_exact_contours_are_written(tmp_path: Path) -> None:
    digests = []
    for name, workers in (("a", 1), ("b", 2)):
        generate_dataset(tmp_path / name, train_ids=1, test_ids=1, size=256, seed=4, workers=workers, progress=False)
        files = sorted(p for p in (tmp_path / name).rglob("*") if p.is_file())
        digests.append([(str(p.relative_to(tmp_path / name)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])
    assert digests[0] == digests[1]
    names = [n for n, _ in digests[0]]
    assert any("/exact_json/" in n for n in names) and "known_bad.json" in names


@pytest.fixture(scope="module")
def xray_2048(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xray") / "handbone"
    generate_dataset(root, train_ids=1, test_ids=0, size=2048, seed=2, workers=1, progress=False)
    return root


def test_label_ceiling_is_in_the_stated_band(xray_2048: Path) -> None:
    stats = phantom_stats.dataset_stats(xray_2048, progress=False)
    assert 0.97 <= stats["label_ceiling"] <= 0.99  # polygons vs exact masks, like real annotations
    assert 0.08 <= stats["bone_share"] <= 0.15
    assert 0.2 <= stats["iou_triquetrum_pisiform"] <= 0.7


def test_the_sesamoid_belongs_to_finger_3_unless_the_annotator_left_it_out(
    xray_2048: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolohand.data.layout import fill_polygon

    job = plan_jobs(Path("/nonexistent"), 1, 0, 2048, 2)[0][0]
    doc = json.loads((xray_2048 / "train" / "exact_json" / job.rel_dir / Path(job.name).with_suffix(".json")).read_text())
    areas = {}
    for rate in (0.0, 1.0):
        monkeypatch.setitem(phantom.RATES, "sesamoid_left_out", rate)
        made = phantom.xray_hand(job)
        areas[rate] = int(fill_polygon(made.polygons["finger-3"], 2048, 2048).sum())
    assert np.array_equal(np.asarray(doc["exact"]["finger-3"]), made.exact["finger-3"])  # the file holds the exact contour
    exact = int(fill_polygon(made.exact["finger-3"], 2048, 2048).sum())
    assert abs(areas[0.0] - exact) < 0.06 * exact  # annotated with the sesamoid: close to the exact mask
    assert exact - areas[1.0] > 300  # left out: at least a sesamoid's area (~r 9 px at 2048 x zoom) smaller


def test_swapped_labels_are_listed_and_dropped_by_convert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(phantom.RATES, "swap", 1.0)
    root = tmp_path / "s"
    generate_dataset(root, train_ids=3, test_ids=0, size=128, seed=1, workers=1, progress=False)
    bad = json.loads((root / "known_bad.json").read_text())["images"]
    assert len(bad) == 6 and all(k.startswith("train/ID") for k in bad)
    from yolohand.data.convert import read_known_bad, select_records
    from yolohand.data.layout import find_split

    records = find_split(root, "train").records
    kept, excluded = select_records(records, (), True, read_known_bad(root))
    assert kept == [] and len(excluded) == 6
    kept, excluded = select_records(records, (), False, {})
    assert len(kept) == 6


def test_wrist_angle_from_the_labels() -> None:
    vertical = np.array([[0, 0], [10, 0], [10, 200], [0, 200]])
    tilted = np.round(vertical @ np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]).T).astype(int)
    polys = {CLASS_INDEX["Radius"]: vertical, CLASS_INDEX["finger-11"]: tilted}
    assert phantom_stats.wrist_angle(polys) == pytest.approx(np.degrees(0.5), abs=1.0)


def test_stats_table_marks_rows_within_tolerance() -> None:
    stats = {name: real for name, (real, _) in phantom_stats.REAL.items()}
    stats["pixel_mean"] = 0.5
    rows = phantom_stats.compare_table(stats)
    assert any(r.startswith("| pixel_mean |") and r.endswith("NO |") for r in rows)
    assert any(r.startswith("| bone_share |") and r.endswith("yes |") for r in rows)


def test_flat_style_has_no_ceiling_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "f", train_ids=1, test_ids=0, size=128, seed=0, workers=1, progress=False, style="flat")
    assert not (tmp_path / "f" / "train" / "exact_json").exists()
    stats = phantom_stats.dataset_stats(tmp_path / "f", progress=False)
    assert np.isnan(stats["label_ceiling"]) and stats["images"] == 2


def test_stats_refuse_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    from yolohand.errors import YolohandError

    with pytest.raises(YolohandError, match="no train/DCM or test/DCM folder"):
        phantom_stats.dataset_stats(tmp_path, progress=False)
