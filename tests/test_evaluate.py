"""`evaluate`: exact Dice on hand-made cases, a dense reference on synthetic data, scoping rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.core.probmaps import probmap_path, save_probmap
from yolohand.errors import YolohandError
from yolohand.results.evaluate import evaluate, format_table, gt_runs, to_json

S = 1e-4  # the metric's smoothing term
H, W = 10, 12
SQUARE = [[1, 1], [4, 1], [4, 3], [1, 3]]  # fillPoly: x 1..4, y 1..3 -> 12 pixels


def dice(inter, a, b):
    return (2 * inter + S) / (a + b + S)


def add_image(root: Path, split: str, rel: str, polygons: dict[str, list] | None, shape=(H, W)) -> None:
    """One PNG (and, unless polygons is None, its JSON) in the competition layout."""
    png = root / split / "DCM" / rel
    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png), np.zeros(shape, np.uint8))
    if polygons is None:
        return
    anns = [
        {"id": f"{i}-x", "type": "poly_seg", "attributes": {}, "points": pts, "label": label}
        for i, (label, polys) in enumerate(polygons.items())
        for pts in polys
    ]
    js = (root / split / "outputs_json" / rel).with_suffix(".json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps({"annotations": anns, "metadata": {"width": 3060, "height": 3060}}))


@pytest.fixture
def tiny(tmp_path) -> Path:
    """train: ID001/a.png, ID002/b.png (+ ID003/c.png without JSON); test: ID009/t.png."""
    root = tmp_path / "root"
    add_image(root, "train", "ID001/a.png", {
        "finger-1": [SQUARE],
        "Radius": [[[0, 8], [1, 8], [1, 9], [0, 9]], [[10, 0], [11, 0], [11, 1], [10, 1]]],  # two parts: OR
    })
    add_image(root, "train", "ID002/b.png", {"finger-1": [SQUARE]})
    add_image(root, "train", "ID003/c.png", None)
    add_image(root, "test", "ID009/t.png", {"Ulna": [SQUARE]})
    return root


def write_pred(path: Path, rows: dict[str, dict[str, str]]) -> Path:
    """Submission CSV from {image: {class: rle}} (classes not given are empty)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image_name", "class", "rle"])
        for name, per_class in rows.items():
            for cls in CLASSES:
                w.writerow([name, cls, per_class.get(cls, "")])
    return path


SQUARE_RLE = "14 4 26 4 38 4"   # rows 1..3, x 1..4 in a 12-wide image (1-based starts)
TOP_TWO_RLE = "14 4 26 4"        # rows 1..2 only: 8 of the 12 pixels


def test_gt_runs_fill_and_union(tiny):
    runs, problems = gt_runs(tiny / "train/outputs_json/ID001/a.json", (H, W))
    assert runs[0].tolist() == [[13, 17], [25, 29], [37, 41]]
    assert runs[CLASS_INDEX["Radius"]].tolist() == [[10, 12], [22, 24], [96, 98], [108, 110]]
    assert sum(len(r) for r in runs) == 7
    assert sum("missing" in p for p in problems) == NUM_CLASSES - 2
    assert [p for p in problems if "missing" not in p][0].endswith("class Radius present twice (also annotation 1-x)")


def test_exact_dice_on_hand_made_case(tiny, tmp_path):
    pred = write_pred(tmp_path / "p.csv", {
        "a.png": {"finger-1": TOP_TWO_RLE, "Ulna": "1 5"},   # Radius (8 px) left empty
        "b.png": {"finger-1": SQUARE_RLE},
    })
    res = evaluate(pred, tiny, progress=False)
    expected = np.ones(NUM_CLASSES)
    expected[0] = (dice(8, 8, 12) + 1.0) / 2
    expected[CLASS_INDEX["Radius"]] = (dice(0, 0, 8) + 1.0) / 2
    expected[CLASS_INDEX["Ulna"]] = (dice(0, 5, 0) + 1.0) / 2
    np.testing.assert_allclose(res.per_class, expected, rtol=0, atol=1e-15)
    assert res.mean == pytest.approx(expected.mean(), abs=1e-15)
    assert (res.n_images, res.n_gt_images, res.split, res.fold) == (2, 2, "train", None)
    np.testing.assert_allclose(res.per_image["b.png"], np.ones(NUM_CLASSES))
    assert len(res.problems) == (NUM_CLASSES - 2 + 1) + (NUM_CLASSES - 1)  # absent classes, Radius twice

    table = format_table(res)
    assert "2 of 2 ground-truth images scored" in table
    rows = {line.split()[0]: line for line in table.splitlines()[3:]}
    assert rows["finger-1"].split() == ["finger-1", f"{expected[0]:.4f}"]
    assert len({len(line) for line in rows.values() if not line.startswith("-")}) == 1  # aligned
    assert table.splitlines()[-1].split() == ["mean", f"{expected.mean():.4f}"]
    doc = json.loads(to_json(res))
    assert doc["n_images"] == 2 and doc["per_class"]["Radius"] == pytest.approx(expected[CLASS_INDEX["Radius"]])
    assert doc["mean_dice"] == pytest.approx(expected.mean())


def test_subset_and_test_split(tiny, tmp_path):
    res = evaluate(write_pred(tmp_path / "p.csv", {"b.png": {"finger-1": TOP_TWO_RLE}}), tiny, progress=False)
    assert (res.n_images, res.n_gt_images) == (1, 2)
    assert res.per_class[0] == pytest.approx(dice(8, 8, 12))
    assert "1 of 2 ground-truth images scored" in format_table(res)

    res = evaluate(write_pred(tmp_path / "t.csv", {"t.png": {"Ulna": SQUARE_RLE}}), tiny, progress=False)
    assert (res.split, res.n_images, res.n_gt_images, res.mean) == ("test", 1, 1, 1.0)
    res = evaluate(write_pred(tmp_path / "m.csv", {"a.png": {}, "t.png": {}}), tiny, progress=False)
    assert (res.split, res.n_images, res.n_gt_images) == ("train+test", 2, 3)
    with pytest.raises(YolohandError, match="'t.png' is not in the ground truth"):
        evaluate(tmp_path / "t.csv", tiny, split="train", progress=False)


def test_unknown_or_unannotated_image_is_an_error(tiny, tmp_path):
    pred = write_pred(tmp_path / "p.csv", {"a.png": {}, "zzz.png": {}})
    with pytest.raises(YolohandError, match=r"p.csv: image #2: 'zzz.png' is not in the ground truth .*train: 2, test: 1"):
        evaluate(pred, tiny, progress=False)
    with pytest.raises(YolohandError, match="'c.png' has no annotation JSON"):
        evaluate(write_pred(tmp_path / "c.csv", {"c.png": {}}), tiny, progress=False)
    with pytest.raises(YolohandError, match="not found"):
        evaluate(tmp_path / "missing.csv", tiny, progress=False)
    with pytest.raises(YolohandError, match="no images"):
        evaluate(write_pred(tmp_path / "empty.csv", {}), tiny, progress=False)
    with pytest.raises(YolohandError, match="dataset root not found"):
        evaluate(pred, tmp_path / "nowhere", progress=False)


def test_rle_past_the_image_is_an_error(tiny, tmp_path):
    pred = write_pred(tmp_path / "p.csv", {"a.png": {"Ulna": f"{H * W} 2"}})
    with pytest.raises(YolohandError, match="p.csv"):
        evaluate(pred, tiny, progress=False)


def test_fold(tiny, tmp_path):
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "folds.json").write_text(json.dumps({"folds": [["ID001", "ID003"], ["ID002"]], "seed": 0}))
    pred = write_pred(tmp_path / "p.csv", {"a.png": {}, "b.png": {"finger-1": TOP_TWO_RLE}})
    res = evaluate(pred, tiny, fold=1, yolo_dir=yolo, progress=False)
    assert (res.n_images, res.n_gt_images, res.fold) == (1, 1, 1)
    assert list(res.per_image) == ["b.png"]
    assert "1 of 1 ground-truth images scored (1 predicted images outside the fold skipped)" in format_table(res)
    res = evaluate(pred, tiny, fold=0, yolo_dir=yolo, progress=False)
    assert (res.n_images, res.n_gt_images) == (1, 1) and list(res.per_image) == ["a.png"]
    only_a = write_pred(tmp_path / "a.csv", {"a.png": {}})
    with pytest.raises(YolohandError, match="none of its 1 images are in fold 1"):
        evaluate(only_a, tiny, fold=1, yolo_dir=yolo, progress=False)
    with pytest.raises(YolohandError, match="folds 0..1"):
        evaluate(pred, tiny, fold=2, yolo_dir=yolo, progress=False)
    with pytest.raises(YolohandError, match="folds.json: not found"):
        evaluate(pred, tiny, fold=0, yolo_dir=tmp_path, progress=False)


def test_probability_folder_thresholds_at_128(tiny, tmp_path):
    probs = tmp_path / "probs"
    u8 = np.zeros((NUM_CLASSES, H, W), np.uint8)
    u8[0, 1:4, 1:5] = 128      # p = 0.50 -> predicted: the whole square
    u8[0, 3, 1:5] = 127        # p < 0.5  -> not predicted: leaves the top two rows
    save_probmap(probmap_path(probs, "a.png"), u8)
    res = evaluate(probs, tiny, progress=False)
    assert res.n_images == 1
    assert res.per_class[0] == pytest.approx(dice(8, 8, 12))
    assert res.per_class[CLASS_INDEX["Radius"]] == pytest.approx(dice(0, 0, 8))
    save_probmap(probmap_path(probs, "zzz.png"), u8)
    with pytest.raises(YolohandError, match="zzz.npz: 'zzz.png' is not in the ground truth"):
        evaluate(probs, tiny, progress=False)


def test_matches_dense_reference_on_synthetic_data(synth_root, tmp_path):
    """Runs-based evaluation == dense gt_masks + dice_masks, on a prediction that is a shifted GT."""
    from yolohand.core.metrics import dice_masks
    from yolohand.core.rle import encode
    from yolohand.data.layout import find_split, gt_masks, image_size, read_annotation

    recs = find_split(synth_root, "train").records[:3]
    rows, reference = {}, []
    for k, rec in enumerate(recs):
        h, w = image_size(rec.image_path)
        gt = gt_masks(read_annotation(rec.json_path), h, w)
        pred = np.roll(gt, shift=(k + 1, -k), axis=(1, 2))
        pred[5] = False           # one class missed entirely
        pred[7] |= gt[8]          # one class spilling into its neighbour
        rows[rec.name] = {c: encode(m) for c, m in zip(CLASSES, pred)}
        reference.append(dice_masks(pred, gt))
    res = evaluate(write_pred(tmp_path / "p.csv", rows), synth_root, progress=False)
    np.testing.assert_allclose(res.per_class, np.mean(reference, axis=0), rtol=1e-12)
    assert res.n_images == 3 and res.n_gt_images == len(find_split(synth_root, "train").records)


def test_cli(tiny, tmp_path):
    from yolohand.cli.evaluate import evaluate as cmd

    app = typer.Typer()
    app.command()(cmd)
    pred = write_pred(tmp_path / "p.csv", {"b.png": {"finger-1": SQUARE_RLE}})
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, [str(pred), "--gt", str(tiny), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 of 2 ground-truth images scored" in res.output and "mDice 1.0000" in res.output
    assert json.loads(out.read_text())["mean_dice"] == 1.0
    res = CliRunner().invoke(app, [str(pred), "--gt", str(tiny), "--json", str(out)])
    assert isinstance(res.exception, YolohandError) and "already exists" in str(res.exception)


def test_missing_root_is_one_message(tmp_path):
    pred = write_pred(tmp_path / "p.csv", {"b.png": {}})
    with pytest.raises(YolohandError) as info:
        evaluate(pred, tmp_path / "nothere", progress=False)
    assert str(info.value) == f"{tmp_path / 'nothere'}: dataset root not found (--gt)"
    with pytest.raises(YolohandError, match="--split 'val': expected one of train, test"):
        evaluate(pred, tmp_path / "nothere", split="val", progress=False)


def test_json_output_checked_before_scoring(tiny, tmp_path):
    from yolohand.cli.evaluate import evaluate as cmd

    app = typer.Typer()
    app.command()(cmd)
    pred = write_pred(tmp_path / "p.csv", {"b.png": {"finger-1": SQUARE_RLE}})
    (tmp_path / "dir").mkdir()
    for target, match in [(tmp_path / "dir", "is a folder"), (pred, "is also an input"),
                          (tiny / "r.json", "lies inside the input"), ("/proc/r.json", "cannot write in /proc")]:
        res = CliRunner().invoke(app, [str(pred), "--gt", str(tiny), "--json", str(target), "--force"])
        assert isinstance(res.exception, YolohandError) and match in str(res.exception), res.output
        assert "mDice" not in res.output  # refused before the scoring
    assert pred.read_text().startswith("image_name,class,rle")


# ----------------------------------------------------------------------------- ground truth as a CSV


def test_gt_submission_exact_rows(tiny, tmp_path):
    from yolohand.results.evaluate import write_gt_submission

    summary = write_gt_submission(tiny, tmp_path / "gt.csv", split="train", progress=False)
    assert (summary.images, summary.split) == (2, "train")
    rows = list(csv.reader(open(tmp_path / "gt.csv", newline="")))
    assert rows[0] == ["image_name", "class", "rle"] and len(rows) == 1 + 2 * NUM_CLASSES
    assert [r[0] for r in rows[1::NUM_CLASSES]] == ["a.png", "b.png"]  # sorted by ID folder, c.png has no JSON
    by = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert by[("a.png", "finger-1")] == by[("b.png", "finger-1")] == SQUARE_RLE
    # Radius of a.png: two 2x2 squares, (x 0..1, y 8..9) and (x 10..11, y 0..1), OR-ed.
    assert by[("a.png", "Radius")] == "11 2 23 2 97 2 109 2"
    assert by[("b.png", "Ulna")] == "" and len(summary.problems) > 0


def test_gt_submission_scores_one_against_itself(synth_root, tmp_path):
    from yolohand.results.evaluate import write_gt_submission

    write_gt_submission(synth_root, tmp_path / "gt.csv", split="test", progress=False)
    res = evaluate(tmp_path / "gt.csv", synth_root, split="test", progress=False)
    assert res.mean == 1.0 and res.n_images == res.n_gt_images == 2


def test_gt_command_refuses_bad_places_and_fold_on_test(tiny, tmp_path):
    from yolohand.results.evaluate import write_gt_submission

    with pytest.raises(YolohandError, match="lies inside the input"):
        write_gt_submission(tiny, tiny / "gt.csv", progress=False)
    with pytest.raises(YolohandError, match="use --split train"):
        write_gt_submission(tiny, tmp_path / "gt.csv", split="test", fold=0, progress=False)
    with pytest.raises(YolohandError, match="dataset root not found"):
        write_gt_submission(tmp_path / "nothere", tmp_path / "gt.csv", progress=False)
    assert not (tmp_path / "gt.csv").exists()
