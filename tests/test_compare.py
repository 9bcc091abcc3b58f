"""Agreement of two submissions (yolohand.viz.compare) against a dense numpy reference, the report,
and the `yolohand compare` command."""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from yolohand.cli import app
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.paths import MARKER
from yolohand.core.rle import class_intersections, encode, intersection_area, mask_to_runs
from yolohand.core.submission import write_submission
from yolohand.data.layout import find_split, gt_masks, image_size, read_annotation
from yolohand.errors import YolohandError
from yolohand.viz.compare import bar_chart_png, compare_submissions, iou, write_report


def _decode(text: str, shape: tuple[int, int]) -> np.ndarray:
    """Straightforward reference decoder of the competition RLE (1-based start, length pairs)."""
    flat = np.zeros(shape[0] * shape[1], bool)
    values = [int(v) for v in text.split()]
    for start, length in zip(values[0::2], values[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(shape)


def _dense_reference(path_a: Path, path_b: Path, shape: tuple[int, int]):
    """Per-class IoU (sum inter / sum union) and per-image IoU (empty vs empty = 1), densely."""
    rows = {}
    for p in (path_a, path_b):
        with open(p, newline="") as fh:
            rows[p] = list(csv.DictReader(fh))
    inter = np.zeros(NUM_CLASSES)
    union = np.zeros(NUM_CLASSES)
    per_image = []
    ra, rb = rows[path_a], rows[path_b]
    for k in range(0, len(ra), NUM_CLASSES):
        image = []
        for c in range(NUM_CLASSES):
            a = _decode(ra[k + c]["rle"], shape)
            b = _decode(rb[k + c]["rle"], shape)
            i, u = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
            inter[c] += i
            union[c] += u
            image.append(i / u if u else 1.0)
        per_image.append(image)
    per_class = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return per_class, np.array(per_image).reshape(-1, NUM_CLASSES)


def _random_masks(rng: np.random.Generator, shape: tuple[int, int]) -> list[np.ndarray]:
    """29 masks: some empty, some random blobs, some full rows (runs wrapping across rows)."""
    out = []
    for _ in range(NUM_CLASSES):
        kind = rng.integers(0, 4)
        if kind == 0:
            m = np.zeros(shape, bool)
        elif kind == 1:
            m = rng.random(shape) < rng.uniform(0.05, 0.6)
        elif kind == 2:
            m = np.zeros(shape, bool)
            y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            m[y0 : y0 + rng.integers(1, 6), x0 : x0 + rng.integers(1, 6)] = True
        else:
            m = np.zeros(shape, bool)
            m[rng.integers(0, shape[0]) :, :] = True
        out.append(m)
    return out


def _write_pair(folder: Path, seed: int, n_images: int, shape: tuple[int, int], same_prob: float = 0.3):
    rng = np.random.default_rng(seed)
    items_a, items_b = [], []
    for i in range(n_images):
        ma = _random_masks(rng, shape)
        mb = [m.copy() if rng.random() < same_prob else n for m, n in zip(ma, _random_masks(rng, shape))]
        items_a.append((f"image{i:03d}.png", [encode(m) for m in ma]))
        items_b.append((f"image{i:03d}.png", [encode(m) for m in mb]))
    pa, pb = folder / "a.csv", folder / "b.csv"
    write_submission(pa, items_a, force=True)
    write_submission(pb, items_b, force=True)
    return pa, pb


# --------------------------------------------------------------------------- numbers


def test_iou_empty_vs_empty_is_one() -> None:
    assert iou(0, 0, 0) == 1.0
    assert iou(0, 5, 0) == 0.0
    assert iou(3, 4, 5) == pytest.approx(3 / 6)
    assert np.array_equal(iou(np.array([0, 2]), np.array([0, 2]), np.array([0, 2])), [1.0, 1.0])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.sampled_from([(5, 7), (8, 8), (3, 13)]))
def test_iou_equals_dense_reference(seed: int, n_images: int, shape: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = _write_pair(Path(tmp), seed, n_images, shape)
        cmp = compare_submissions(pa, pb, shape, top=5, progress=False)
        per_class, per_image = _dense_reference(pa, pb, shape)
    assert cmp.n_images == n_images
    np.testing.assert_allclose(cmp.per_class_iou(), per_class, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cmp.per_image_iou(), per_image, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cmp.image_mean_iou(), per_image.mean(axis=1), atol=1e-12)
    assert cmp.mean_iou() == pytest.approx(per_class.mean())
    # The worst pairs: the `top` lowest IoUs (full agreement never listed), least agreeing first.
    disagreeing = sorted(v for v in per_image.ravel() if v < 1.0)
    assert [d.iou for d in cmp.worst] == pytest.approx(disagreeing[:5])
    for d in cmp.worst:
        assert d.iou == pytest.approx(per_image[d.image_index, d.class_index])
        assert d.image_name == f"image{d.image_index:03d}.png"


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_class_intersections_equal_per_class_intersection_area(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (6, 9)
    ra = [mask_to_runs(m) for m in _random_masks(rng, shape)]
    rb = [mask_to_runs(m) for m in _random_masks(rng, shape)]
    expected = [intersection_area(x, y) for x, y in zip(ra, rb)]
    assert class_intersections(ra, rb, shape[0] * shape[1]).tolist() == expected


def test_worst_pairs_break_ties_by_disagreeing_pixels(tmp_path: Path) -> None:
    shape = (10, 10)
    empty = [""] * NUM_CLASSES
    a, b = list(empty), list(empty)
    small = np.zeros(shape, bool)
    small[0, 0] = True
    big = np.zeros(shape, bool)
    big[2:6, 2:6] = True
    a[3], b[3] = encode(small), ""  # IoU 0, 1 pixel disagreeing
    a[7], b[7] = "", encode(big)  # IoU 0, 16 pixels disagreeing
    write_submission(tmp_path / "a.csv", [("x.png", a)])
    write_submission(tmp_path / "b.csv", [("x.png", b)])
    cmp = compare_submissions(tmp_path / "a.csv", tmp_path / "b.csv", shape, top=1, progress=False)
    assert [(d.class_index, d.iou, d.area_b) for d in cmp.worst] == [(7, 0.0, 16)]
    assert cmp.per_class_iou()[0] == 1.0  # empty in both everywhere


def test_mismatched_files_are_errors(tmp_path: Path) -> None:
    shape = (4, 4)
    rles = [""] * NUM_CLASSES
    write_submission(tmp_path / "a.csv", [("x.png", rles), ("y.png", rles)])
    write_submission(tmp_path / "b.csv", [("x.png", rles), ("z.png", rles)])
    write_submission(tmp_path / "c.csv", [("x.png", rles)])
    with pytest.raises(YolohandError, match=r"b\.csv:31: image 2 is z\.png but .*a\.csv has y\.png"):
        compare_submissions(tmp_path / "a.csv", tmp_path / "b.csv", shape, progress=False)
    with pytest.raises(YolohandError, match=r"c\.csv: ends after 1 images"):
        compare_submissions(tmp_path / "a.csv", tmp_path / "c.csv", shape, progress=False)


# --------------------------------------------------------------------------- report


def test_report_is_self_contained_and_names_every_class(tmp_path: Path) -> None:
    shape = (16, 16)
    pa, pb = _write_pair(tmp_path, 3, 3, shape)
    cmp = compare_submissions(pa, pb, shape, top=4, progress=False)
    files = write_report(cmp, tmp_path / "rep", threshold=0.5)
    page = files.html.read_text()
    for name in CLASSES:
        assert f">{name}</td>" in page, name
    # images embedded: the chart and one picture per worst pair, nothing fetched from outside
    assert page.count("data:image/png;base64,") == 1 + len(cmp.worst)
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", page)
    assert files.overlays == len(cmp.worst) == 4
    chart = cv2.imdecode(np.frombuffer(files.chart.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert chart.shape == (900, 800, 3)
    with open(files.per_class_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class"] for r in rows] == list(CLASSES)
    np.testing.assert_allclose([float(r["iou"]) for r in rows], cmp.per_class_iou(), atol=1e-6)
    with open(files.per_image_csv, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    with pytest.raises(YolohandError, match="already exists"):
        write_report(cmp, tmp_path / "rep")
    write_report(cmp, tmp_path / "rep", force=True)


def test_bar_chart_png_decodes() -> None:
    png = bar_chart_png(np.linspace(0.5, 1.0, NUM_CLASSES), "t", threshold=0.8)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_cli_with_images(synth_root: Path, tmp_path: Path) -> None:
    """Ground truth vs an eroded copy on the synthetic test images, X-rays beside the crops."""
    items_a, items_b = [], []
    for rec in find_split(synth_root, "test").records:
        h, w = image_size(rec.image_path)
        m = gt_masks(read_annotation(rec.json_path), h, w).view(np.uint8)
        items_a.append((rec.name, [encode(x) for x in m]))
        items_b.append((rec.name, [encode(cv2.erode(x, np.ones((3, 3), np.uint8))) for x in m]))
    write_submission(tmp_path / "a.csv", items_a)
    write_submission(tmp_path / "b.csv", items_b)
    out = tmp_path / "report"
    args = ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--images",
            str(synth_root / "test" / "DCM"), "--size", f"{h},{w}", "--out", str(out), "--top", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mean per-class IoU" in result.output and "3 overlays" in result.output
    assert {p.name for p in out.iterdir()} == {"report.html", "iou.png", "iou.csv", "iou_per_image.csv", MARKER}
    assert "left: the X-ray crop" in (out / "report.html").read_text()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    wrong = CliRunner().invoke(app, args[:-4] + ["--size", "512,512", "--out", str(tmp_path / "r2")])
    assert wrong.exit_code != 0 and "pass --size" in str(wrong.exception)


def _two_csvs(tmp_path: Path) -> tuple[Path, Path]:


    empty = [""] * NUM_CLASSES
    full = ["1 4"] + [""] * (NUM_CLASSES - 1)
    write_submission(tmp_path / "a.csv", [("x.png", full)])
    write_submission(tmp_path / "b.csv", [("x.png", empty)])
    return tmp_path / "a.csv", tmp_path / "b.csv"


def test_compare_never_replaces_an_input(tmp_path: Path) -> None:
    a, b = _two_csvs(tmp_path)
    before = a.read_bytes()
    for out, match in [(a, "is also an input"), (tmp_path, "contains the input")]:
        result = CliRunner().invoke(app, ["compare", str(a), str(b), "--size", "2,2", "--out", str(out), "--force"])
        assert result.exit_code != 0 and match in str(result.exception)
    assert a.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_compare_force_replaces_only_a_previous_report(tmp_path: Path) -> None:
    a, b = _two_csvs(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    args = ["compare", str(a), str(b), "--size", "2,2", "--force", "--out"]
    result = CliRunner().invoke(app, [*args, str(mine)])
    assert result.exit_code != 0 and "not a previous yolohand compare report" in str(result.exception)
    assert (mine / "notes.txt").read_text() == "mine"
    assert CliRunner().invoke(app, [*args, str(tmp_path / "r")]).exit_code == 0
    assert CliRunner().invoke(app, [*args, str(tmp_path / "r")]).exit_code == 0  # its own report: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "mine", "r"]


def test_compare_warns_when_images_are_not_found(tmp_path: Path) -> None:
    a, b = _two_csvs(tmp_path)
    other = tmp_path / "other" / "ID001"
    other.mkdir(parents=True)
    cv2.imwrite(str(other / "y.png"), np.zeros((2, 2), np.uint8))
    cmp = compare_submissions(a, b, (2, 2), progress=False)
    with pytest.warns(UserWarning, match="no X-ray named x.png found"):
        files = write_report(cmp, tmp_path / "r", tmp_path / "other")
    assert files.overlays == 1
