"""Pseudo-labels: polygons that fill back to the predicted masks, the competition JSON and layout,
the confidence rule, convert on the result, and the original data left alone."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from yolohand.core import rle
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.metrics import dice_runs
from yolohand.core.probmaps import probmap_path, save_probmap
from yolohand.data.convert import FIDELITY_BOUND
from yolohand.data.layout import find_split, image_size, read_annotation
from yolohand.data.pseudo import REPORT, mask_polygon, pseudo_labels
from yolohand.errors import YolohandError


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def gt_csv(synth_root, tmp_path_factory) -> Path:
    """The train split's ground truth as a submission CSV: a perfect 'prediction' of 6 images, 3 IDs."""
    from yolohand.results.evaluate import write_gt_submission

    out = tmp_path_factory.mktemp("pseudo") / "gt.csv"
    write_gt_submission(synth_root, out, split="train", progress=False)
    return out


def test_mask_polygon_fills_back_exactly():
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(30):
        m = np.zeros((40, 50), np.uint8)
        pts = rng.integers(2, 38, (6, 2)).astype(np.int32)
        cv2.fillPoly(m, [cv2.convexHull(pts)], 1)
        m[rng.integers(0, 40), rng.integers(0, 50)] = 1  # a stray pixel: not the largest piece
        crop = m.astype(bool)
        poly, big, total = mask_polygon(crop, 7, 3)
        if poly is None:
            continue
        back = np.zeros((60, 70), np.uint8)
        cv2.fillPoly(back, [poly], 1)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        largest = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        assert np.array_equal(back[7:47, 3:53].astype(bool), largest) and big == largest.sum() and total == m.sum()
    assert mask_polygon(np.zeros((3, 3), bool), 0, 0) == (None, 0, 0)


def test_csv_round_trip_layout_and_convert(synth_root, gt_csv, tmp_path, run_cli):
    before = _snapshot(synth_root)
    out = tmp_path / "pseudo"
    code, stdout, err = run_cli(["pseudo", gt_csv, "--images", synth_root / "train" / "DCM", "-o", out])
    assert code == 0, err
    assert "kept 6 of 6 predicted images" in stdout and str(out) in stdout
    idx = find_split(out, "train", require_json=True)
    src = find_split(synth_root, "train", require_json=True)
    assert [r.rel_path for r in idx.records] == [r.rel_path for r in src.records]
    truth = {name: runs for name, runs in _iter(gt_csv)}
    scores = []
    for rec in idx.records:
        assert rec.image_path.resolve() == (synth_root / "train" / "DCM" / rec.rel_path).resolve()
        doc = json.loads(rec.json_path.read_text())
        assert set(doc) == {"annotations", "attributes", "file_id", "filename", "parent_path", "last_modifier_id",
                            "metadata", "last_workers"}
        assert [a["label"] for a in doc["annotations"]] == list(CLASSES)
        assert all(a["type"] == "poly_seg" and a["id"].startswith(f"{i + 1}-") for i, a in enumerate(doc["annotations"]))
        ann = read_annotation(rec.json_path)
        assert ann.problems == []
        runs = ann.to_runs(image_size(rec.image_path))
        scores += [dice_runs(p, t) for p, t in zip(runs, truth[rec.name])]
    assert min(scores) >= FIDELITY_BOUND, min(scores)
    # convert reads the new root like the competition data, at the same fidelity.
    from yolohand.data.convert import convert_dataset

    report = convert_dataset(out, tmp_path / "yolo", folds=2, progress=False, workers=1)
    assert report.fidelity >= FIDELITY_BOUND
    assert _snapshot(synth_root) == before  # nothing written into the original data
    # Same input, same bytes; an existing output needs --force.
    code, _, err = run_cli(["pseudo", gt_csv, "--images", synth_root / "train" / "DCM", "-o", out])
    assert code == 1 and "already exists" in err
    first = {p: p.read_bytes() for p in (out / "train" / "outputs_json").rglob("*.json")}
    assert run_cli(["pseudo", gt_csv, "--images", synth_root / "train" / "DCM", "-o", out, "--force"])[0] == 0
    assert {p: p.read_bytes() for p in (out / "train" / "outputs_json").rglob("*.json")} == first


def _iter(path: Path):
    from yolohand.core.submission import iter_submission

    return iter_submission(path, (256, 256))


def test_rule_rejects_missing_area_and_confidence(synth_root, gt_csv, tmp_path):
    images = synth_root / "train" / "DCM"
    recs = find_split(synth_root, "train", require_json=True).records
    # Maps from the truth: p = 0.95 inside the masks; image 1 unsure (0.6), image 2 without Pisiform,
    # image 3 with its Radius shrunk to a 4x4 block (area far below the median).
    maps = tmp_path / "maps"
    for k, (name, runs) in enumerate(_iter(gt_csv)):
        u8 = np.stack([rle.runs_to_mask(r, (256, 256)) for r in runs]).astype(np.uint8) * 242
        if k == 1:
            u8[u8 > 0] = 153
        if k == 2:
            u8[CLASSES.index("Pisiform")] = 0
        if k == 3:
            radius = u8[CLASSES.index("Radius")]
            ys, xs = np.nonzero(radius)
            radius[:] = 0
            radius[ys[0] : ys[0] + 4, xs[0] : xs[0] + 4] = 242
        save_probmap(probmap_path(maps, name), u8)
    out = tmp_path / "p"
    summary = pseudo_labels(maps, images, out, progress=False)
    assert summary.kept == 3 and summary.predicted == 6
    assert summary.rejected == {"confidence": 1, "missing": 1, "area": 1}
    report = json.loads((out / REPORT).read_text())
    why = {rel: v["reasons"] for rel, v in report["per_image"].items()}
    assert why[recs[1].rel_path] == ["confidence: 0.600 < 0.8"]
    assert why[recs[2].rel_path] == ["missing: Pisiform"]
    assert why[recs[3].rel_path] == ["area: Radius"]
    kept = find_split(out, "train", require_json=True).records
    assert [r.rel_path for r in kept] == [recs[k].rel_path for k in (0, 4, 5)]
    assert not (out / "train" / "DCM" / recs[1].rel_path).exists()
    # Looser rules keep more; --min-confidence needs maps.
    loose = pseudo_labels(maps, images, tmp_path / "q", min_confidence=0.5, area_ratio=1000, progress=False)
    assert loose.kept == 5
    with pytest.raises(YolohandError, match="need probability maps"):
        pseudo_labels(gt_csv, images, tmp_path / "r", min_confidence=0.5, progress=False)


def test_with_train_and_safety(synth_root, gt_csv, tmp_path, run_cli):
    test_images = synth_root / "test" / "DCM"
    from yolohand.results.evaluate import write_gt_submission

    test_csv = tmp_path / "test.csv"
    write_gt_submission(synth_root, test_csv, split="test", progress=False)
    out = tmp_path / "merged"
    summary = pseudo_labels(test_csv, test_images, out, with_train=synth_root, copy=True, progress=False)
    assert summary.kept == 2 and summary.train_linked == 6
    records = find_split(out, "train", require_json=True).records
    assert len(records) == 8 and not any(os.path.islink(r.image_path) for r in records)
    # Never inside (or equal to) an input; a prediction of an unknown image is refused; nothing is written.
    for bad in (synth_root / "test" / "pseudo", synth_root):
        code, _, err = run_cli(["pseudo", test_csv, "--images", test_images, "-o", bad, "--force"])
        assert code == 1 and "input" in err and not (synth_root / "test" / "pseudo").exists()
    code, _, err = run_cli(["pseudo", gt_csv, "--images", test_images, "-o", tmp_path / "x"])
    assert code == 1 and "is not an image under" in err and not (tmp_path / "x").exists()
    with open(gt_csv, newline="") as fh:
        assert next(csv.reader(fh)) == ["image_name", "class", "rle"]
    assert NUM_CLASSES == 29


def test_convert_keeps_pseudo_labels_out_of_validation(synth_root, gt_csv, tmp_path):
    """IDs made only of pseudo-labels train in every fold and validate in none (a fold's Dice
    scores against labels, not against a model); folds.json and the report name them. A root
    with too few labelled IDs folds everything, with a warning."""
    from yolohand.data.convert import convert_dataset
    from yolohand.results.evaluate import write_gt_submission

    test_csv = tmp_path / "test.csv"
    write_gt_submission(synth_root, test_csv, split="test", progress=False)
    merged = tmp_path / "merged"
    pseudo_labels(test_csv, synth_root / "test" / "DCM", merged, with_train=synth_root, progress=False)
    test_ids = sorted(p.name for p in (synth_root / "test" / "DCM").iterdir())
    train_ids = sorted(p.name for p in (synth_root / "train" / "DCM").iterdir())
    report = convert_dataset(merged, tmp_path / "yolo", folds=3, progress=False, workers=1)
    assert report.train_only == test_ids and report.n_train_only_images == 2
    assert sorted(pid for fold in report.folds for pid in fold) == train_ids
    doc = json.loads((tmp_path / "yolo" / "folds.json").read_text())
    assert doc["train_only"] == test_ids and sorted(sum(doc["folds"], [])) == train_ids
    for j in range(3):
        lists = {s: (tmp_path / "yolo" / "folds" / f"fold{j}_{s}.txt").read_text().split() for s in ("train", "val")}
        ids = {s: {Path(p).parent.name for p in v} for s, v in lists.items()}
        assert set(test_ids) <= ids["train"] and not set(test_ids) & ids["val"] and ids["val"]
        assert all(Path(p).is_file() for p in lists["train"] + lists["val"])
    assert any("pseudo-labelled: 2 images (1 IDs)" in line for line in report.lines())
    # Pseudo-labels alone (no labelled ID to validate on): folded like labelled data, with a warning.
    only = tmp_path / "only"
    pseudo_labels(gt_csv, synth_root / "train" / "DCM", only, progress=False)
    report = convert_dataset(only, tmp_path / "y2", folds=3, progress=False, workers=1)
    assert report.train_only == [] and sorted(sum(report.folds, [])) == train_ids
    assert any("folded too" in w for w in report.warnings)


def test_placements_keep_test_and_training_patients_apart():
    from yolohand.data.pseudo import _placements

    rels = ["ID001/a.png", "ID001/b.png", "ID002/c.png", "ID009/d.png", "flat.png"]
    assert _placements(rels, set()) == {r: r for r in rels}
    assert _placements(rels, {"ID001", "ID002", "ID002-pseudo"}) == {
        "ID001/a.png": "ID001-pseudo/a.png", "ID001/b.png": "ID001-pseudo/b.png",
        "ID002/c.png": "ID002-pseudo2/c.png", "ID009/d.png": "ID009/d.png", "flat.png": "flat.png"}


def test_test_id_that_names_a_training_patient(synth_root, tmp_path):
    """Another dataset's test patient ID001 is not the training set's ID001: pseudo writes it as
    ID001-pseudo, and convert keeps it out of every validation fold."""
    from yolohand.data.convert import convert_dataset
    from yolohand.results.evaluate import write_gt_submission

    other = tmp_path / "other"
    for sub in ("DCM", "outputs_json"):
        (src,) = (synth_root / "test" / sub).iterdir()
        shutil.copytree(src, other / "test" / sub / "ID001")
    test_csv = tmp_path / "test.csv"
    write_gt_submission(other, test_csv, split="test", progress=False)
    merged = tmp_path / "merged"
    summary = pseudo_labels(test_csv, other / "test" / "DCM", merged, with_train=synth_root, progress=False)
    assert summary.renamed_ids == ["ID001"] and any("(ID001): written as <ID>-pseudo" in ln for ln in summary.lines())
    assert len(list((merged / "train" / "DCM" / "ID001-pseudo").iterdir())) == 2
    assert len(list((merged / "train" / "DCM" / "ID001").iterdir())) == 2  # the training patient's own two
    doc = json.loads(next((merged / "train" / "outputs_json" / "ID001-pseudo").iterdir()).read_text())
    assert doc["parent_path"] == "/ID001-pseudo" and doc["attributes"]["pseudo_label"] is True
    report = convert_dataset(merged, tmp_path / "yolo", folds=3, progress=False, workers=1)
    assert report.train_only == ["ID001-pseudo"] and not any("mixes" in w for w in report.warnings)
