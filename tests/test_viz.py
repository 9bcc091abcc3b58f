"""Overlays and comparison pictures (yolohand.viz.draw) and the `yolohand show` command."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from yolohand.cli import app
from yolohand.core.classes import COLORS, NUM_CLASSES
from yolohand.core.rle import encode, mask_to_runs
from yolohand.core.rle import runs_to_string as rle_to_text
from yolohand.core.submission import write_submission
from yolohand.data.layout import find_split, gt_masks, image_size, read_annotation
from yolohand.viz import draw as viz

GREEN, RED, WHITE, BLACK = (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0)


def _dense_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _read_png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _has_colour(img: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((img == np.array(colour, np.uint8)).all(axis=-1).any())


# --------------------------------------------------------------------------- comparison colours


def test_compare_colours_hand_made() -> None:
    a = np.array([[1, 1, 0, 0],
                  [0, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0],
                  [0, 1, 0, 0]], bool)
    out = viz.compare_colors(a, b)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 3)
    assert tuple(out[0, 0]) == GREEN  # only A
    assert tuple(out[0, 1]) == WHITE  # both
    assert tuple(out[0, 2]) == RED  # only B
    assert tuple(out[0, 3]) == BLACK  # neither
    assert tuple(out[1, 1]) == WHITE
    assert tuple(out[1, 0]) == BLACK


def test_compare_panel_puts_the_xray_beside_and_enlarges_exactly() -> None:
    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    a[1, 1] = True
    b[1, 1] = b[2, 3] = True
    a[0, 4] = True
    xray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    panel = viz.compare_panel(a, b, xray, gap=2, min_side=12)  # factor 3
    assert panel.shape == (12, 2 * 15 + 2, 3)
    left, right = panel[:, :15], panel[:, 17:]
    assert (left[..., 0] == np.repeat(np.repeat(xray, 3, 0), 3, 1)).all()
    assert (right == np.repeat(np.repeat(viz.compare_colors(a, b), 3, 0), 3, 1)).all()
    assert tuple(right[3 * 1 + 1, 3 * 1 + 1]) == WHITE
    assert tuple(right[3 * 2, 3 * 3]) == RED
    assert tuple(right[0, 3 * 4]) == GREEN
    alone = viz.compare_panel(a, b)
    assert alone.shape == (4, 5, 3)


def test_compare_runs_panel_crops_to_the_union_box() -> None:
    shape = (40, 50)
    a = np.zeros(shape, bool)
    b = np.zeros(shape, bool)
    a[10:20, 5:15] = True
    b[12:25, 10:30] = True
    image = np.full(shape, 77, np.uint8)
    panel = viz.compare_runs_panel(mask_to_runs(a), mask_to_runs(b), shape, image, pad=2)
    y0, x0, y1, x1 = 8, 3, 27, 32
    assert viz.union_box(mask_to_runs(a), mask_to_runs(b), shape, pad=2) == (y0, x0, y1, x1)
    w = x1 - x0
    assert panel.shape == (y1 - y0, 2 * w + 4, 3)
    expected = viz.compare_colors(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
    assert (panel[:, w + 4 :] == expected).all()
    assert (panel[:, :w] == 77).all()
    empty = np.zeros((0, 2), np.int64)
    assert viz.compare_runs_panel(empty, empty, shape) is None


# --------------------------------------------------------------------------- runs -> crops


masks_st = arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12)))


@settings(max_examples=150, deadline=None)
@given(masks_st)
def test_runs_crops_match_the_dense_mask(mask: np.ndarray) -> None:
    runs = mask_to_runs(mask)
    crop = viz.runs_to_crop(runs, mask.shape)
    ref = _dense_crop(mask)
    if ref is None:
        assert crop is None
        return
    # The same pixels at the same place (the runs' box is full width when a run wraps a row).
    assert np.array_equal(_paste(crop, mask.shape), mask)
    assert crop.y0 == ref.y0 and crop.mask.shape[0] == ref.mask.shape[0]


def _dense_crop(mask: np.ndarray) -> viz.MaskCrop | None:
    box = _dense_bbox(mask)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    return viz.MaskCrop(mask[y0:y1, x0:x1], y0, x0)


def _paste(crop: viz.MaskCrop | None, shape: tuple[int, int]) -> np.ndarray:
    full = np.zeros(shape, bool)
    if crop is not None:
        full[crop.y0 : crop.y0 + crop.mask.shape[0], crop.x0 : crop.x0 + crop.mask.shape[1]] = crop.mask
    return full


def _dense_truth(ann, h: int, w: int) -> np.ndarray:
    """The reference ground truth: cv2.fillPoly of each polygon on a full canvas, OR-ed per class."""
    out = np.zeros((NUM_CLASSES, h, w), np.uint8)
    for poly in ann.polygons:
        canvas = np.zeros((h, w), np.uint8)
        cv2.fillPoly(canvas, [np.asarray(poly.points, np.int32).reshape(-1, 1, 2)], 1)
        out[poly.class_index] |= canvas
    return out.view(bool)


def test_ground_truth_runs_and_layers_equal_full_canvas_fills(synth_root: Path) -> None:
    rec = find_split(synth_root, "train").records[0]
    h, w = image_size(rec.image_path)
    ann = read_annotation(rec.json_path)
    dense = _dense_truth(ann, h, w)
    runs = ann.to_runs((h, w))
    layers = viz.layers_from_annotation(ann, h, w)
    assert len(runs) == len(layers) == NUM_CLASSES
    for cls in range(NUM_CLASSES):
        assert runs[cls].tolist() == mask_to_runs(dense[cls]).tolist(), cls
        assert np.array_equal(_paste(layers[cls], (h, w)), dense[cls]), cls


def test_ground_truth_runs_clip_and_or_polygons() -> None:
    """Hand-made: two polygons of one class (OR-ed), one overhanging the border (clipped as cv2 does)."""
    from yolohand.data.layout import Annotation, Polygon

    square = np.array([[1, 1], [3, 1], [3, 2], [1, 2]], np.int32)  # x 1..3, y 1..2
    corner = np.array([[-2, -2], [1, -2], [1, 0], [-2, 0]], np.int32)  # x 0..1 of row 0 inside
    far = np.array([[50, 50], [60, 50], [60, 60]], np.int32)  # outside the image
    ann = Annotation(Path("x.json"), [Polygon("a", "finger-1", 0, square), Polygon("b", "finger-1", 0, corner),
                                      Polygon("c", "Ulna", 28, far)], [])
    runs = ann.to_runs((4, 5))
    assert rle_to_text(runs[0]) == "1 2 7 3 12 3"  # row 0: x 0..1; rows 1-2: x 1..3
    assert all(len(r) == 0 for r in runs[1:])
    assert runs[0].tolist() == mask_to_runs(_dense_truth(ann, 4, 5)[0]).tolist()


# --------------------------------------------------------------------------- class overlay


def test_draw_layers_blends_fills_and_draws_exact_contours() -> None:
    image = np.full((60, 60), 100, np.uint8)
    mask = np.zeros((60, 60), bool)
    mask[10:40, 20:50] = True
    layers = [None] * NUM_CLASSES
    layers[5] = _dense_crop(mask)
    out = viz.draw_layers(image, layers, alpha=0.5)
    assert out.shape == (60, 60, 3) and out.dtype == np.uint8
    colour = np.array(COLORS[5], float)
    inside = np.rint(100 * 0.5 + colour * 0.5)
    assert (out[25, 35] == inside).all()  # interior: translucent fill
    assert tuple(out[10, 35]) == COLORS[5]  # border: contour in the exact class colour
    assert tuple(out[25, 20]) == COLORS[5]
    assert (out[0, 0] == 100).all() and (out[55, 5] == 100).all()  # outside: untouched X-ray
    assert (image == 100).all()  # input not modified


def test_overlay_figure_size_and_legend() -> None:
    h, w = 300, 200
    image = np.zeros((h, w), np.uint8)
    masks = np.zeros((NUM_CLASSES, h, w), bool)
    for c in range(NUM_CLASSES):
        r, k = divmod(c, 5)
        masks[c, 10 + r * 45 : 40 + r * 45, 10 + k * 38 : 40 + k * 38] = True
    layers = [_dense_crop(m) for m in masks]
    fig = viz.overlay_figure(image, [("gt", layers)])
    assert fig.shape == (h, w + viz.legend_width(h), 3)
    legend = fig[:, w:]
    for c in range(NUM_CLASSES):
        assert _has_colour(fig[:, :w], COLORS[c]), c  # contours
        assert _has_colour(legend, COLORS[c]), c  # swatches
    two = viz.overlay_figure(image, [("a", layers), ("b", [None] * NUM_CLASSES)])
    assert two.shape == (h, 2 * w + viz.legend_width(h), 3)


def test_png_round_trip_keeps_rgb(tmp_path: Path) -> None:
    img = np.zeros((3, 4, 3), np.uint8)
    img[0, 0] = GREEN
    img[1, 2] = RED
    path = viz.write_png(tmp_path / "x.png", img)
    assert np.array_equal(_read_png(path), img)
    with pytest.raises(Exception, match="already exists"):
        viz.write_png(tmp_path / "x.png", img)


# --------------------------------------------------------------------------- yolohand show


def _gt_submission(root: Path, split: str, path: Path) -> None:
    def items():
        for rec in find_split(root, split, require_json=False).records:
            h, w = image_size(rec.image_path)
            m = gt_masks(read_annotation(rec.json_path), h, w)
            yield rec.name, [encode(m[c]) for c in range(NUM_CLASSES)]

    write_submission(path, items())


def test_show_gt_writes_png_with_class_colours(synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rec = find_split(synth_root, "train").records[0]
    h, w = image_size(rec.image_path)
    result = CliRunner().invoke(app, ["show", rec.stem, "--root", str(synth_root), "--gt"])
    assert result.exit_code == 0, result.output
    out = tmp_path / f"{rec.stem}_overlay.png"
    assert out.is_file()
    assert "wrote" in result.output and "29/29" in result.output
    img = _read_png(out)
    assert img.shape == (h, w + viz.legend_width(h), 3)
    for c in range(NUM_CLASSES):
        assert _has_colour(img[:, :w], COLORS[c]), f"class {c} colour missing from the overlay"
    # refuses to overwrite without --force
    again = CliRunner().invoke(app, ["show", rec.stem, "--root", str(synth_root), "--gt"])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    forced = CliRunner().invoke(app, ["show", rec.stem, "--root", str(synth_root), "--gt", "--force"])
    assert forced.exit_code == 0


def test_show_pred_and_gt_side_by_side(synth_root: Path, tmp_path: Path) -> None:
    csv = tmp_path / "pred.csv"
    _gt_submission(synth_root, "test", csv)
    rec = find_split(synth_root, "test").records[-1]
    h, w = image_size(rec.image_path)
    out = tmp_path / "both.png"
    result = CliRunner().invoke(app, ["show", str(rec.image_path), "--gt", "--pred", str(csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    img = _read_png(out)
    assert img.shape == (h, 2 * w + viz.legend_width(h), 3)
    # Prediction = ground truth: the two panels are identical apart from their labels.
    rows = slice(h // 4, h)
    assert np.array_equal(img[rows, :w], img[rows, w : 2 * w])
    out2 = tmp_path / "pred.png"
    result = CliRunner().invoke(app, ["show", str(rec.image_path), "--pred", str(csv), "--out", str(out2)])
    assert result.exit_code == 0, result.output
    assert _read_png(out2).shape == (h, w + viz.legend_width(h), 3)


def test_show_errors(synth_root: Path, tmp_path: Path) -> None:
    from yolohand.errors import YolohandError

    with pytest.raises(YolohandError, match="no image named"):
        viz.resolve_image("image000", synth_root)
    rec = find_split(synth_root, "train").records[0]
    path, json_path = viz.resolve_image(rec.name, synth_root)
    assert path == rec.image_path.resolve() and json_path == rec.json_path
    with pytest.raises(YolohandError, match="nothing to draw"):
        viz.render_show(path)
    csv = tmp_path / "pred.csv"
    _gt_submission(synth_root, "test", csv)
    with pytest.raises(YolohandError, match="no rows for image"):
        viz.render_show(path, pred_csv=csv)
