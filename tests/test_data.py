"""yolohand.data.layout: finding the split, reading annotations and images, ground-truth masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.data.layout import (
    Annotation,
    Polygon,
    fill_polygon,
    find_images,
    find_split,
    gt_masks,
    image_size,
    polygon_crop,
    read_annotation,
    read_image,
)
from yolohand.errors import YolohandError

# --------------------------------------------------------------------------- fill_polygon


def cv2_fill(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """The reference: the usual cv2.fillPoly of the integer points, value 1, on a full canvas."""
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.asarray(points, np.int32).reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    points=st.lists(st.tuples(st.integers(-15, 55), st.integers(-15, 55)), min_size=1, max_size=12),
)
def test_fill_polygon_equals_cv2_fillpoly(h: int, w: int, points: list[tuple[int, int]]) -> None:
    pts = np.array(points, np.int32)
    assert np.array_equal(fill_polygon(pts, h, w), cv2_fill(pts, h, w))


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    points=st.lists(st.tuples(st.integers(-10, 40), st.integers(-10, 40)), min_size=1, max_size=10),
)
def test_polygon_crop_places_the_fill(h: int, w: int, points: list[tuple[int, int]]) -> None:
    pts = np.array(points, np.int32)
    crop, y0, x0 = polygon_crop(pts, h, w)
    full = np.zeros((h, w), bool)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    assert np.array_equal(full, cv2_fill(pts, h, w))
    assert crop.dtype == bool


def test_fill_polygon_hand_made() -> None:
    # cv2.fillPoly includes the boundary pixels: a square with corners 1..4 covers 4x4 pixels.
    square = np.array([[1, 1], [4, 1], [4, 4], [1, 4]])
    expected = np.zeros((6, 6), bool)
    expected[1:5, 1:5] = True
    assert np.array_equal(fill_polygon(square, 6, 6), expected)
    # A right triangle: row y holds x = 0..y.
    tri = np.array([[0, 0], [0, 3], [3, 3]])
    expected = np.tril(np.ones((4, 4), bool))
    assert np.array_equal(fill_polygon(tri, 4, 4), expected)
    # Clipped at the image border; entirely outside -> empty.
    assert fill_polygon(square - 3, 6, 6).sum() == 4
    assert not fill_polygon(square + 10, 6, 6).any()
    # The same points as a dense pixel contour give the same fill.
    dense = np.array([[1, y] for y in range(1, 5)] + [[x, 4] for x in range(2, 5)]
                     + [[4, y] for y in range(3, 0, -1)] + [[x, 1] for x in range(3, 1, -1)])
    assert np.array_equal(fill_polygon(dense, 6, 6), fill_polygon(square, 6, 6))


def test_gt_masks_ors_polygons_of_one_class() -> None:
    a = Polygon("1-a", "finger-1", 0, np.array([[0, 0], [2, 0], [2, 2], [0, 2]], np.int32))
    b = Polygon("2-b", "finger-1", 0, np.array([[4, 4], [5, 4], [5, 5], [4, 5]], np.int32))
    c = Polygon("3-c", "Ulna", 28, np.array([[1, 1], [3, 1], [3, 3]], np.int32))
    masks = gt_masks(Annotation(Path("x.json"), [a, b, c], []), 6, 7)
    assert masks.shape == (NUM_CLASSES, 6, 7) and masks.dtype == bool
    assert np.array_equal(masks[0], cv2_fill(a.points, 6, 7) | cv2_fill(b.points, 6, 7))
    assert np.array_equal(masks[28], cv2_fill(c.points, 6, 7))
    assert masks[1:28].sum() == 0


# --------------------------------------------------------------------------- read_annotation


def square(x: int, y: int, s: int = 5) -> list[list[int]]:
    return [[x, y], [x + s, y], [x + s, y + s], [x, y + s]]


def make_doc(**changes) -> dict:
    """A valid competition JSON (29 annotations), with per-label replacement annotations."""
    anns = []
    for i, name in enumerate(CLASSES):
        anns.append({"id": f"{i + 1}-uuid{i}", "type": "poly_seg", "attributes": {},
                     "points": square(i * 3, i * 2), "label": name})
    return {"annotations": anns, "attributes": {}, "file_id": "f", "filename": "image1.jpg",
            "parent_path": "/ID001", "last_modifier_id": "m", "metadata": {"height": 3060, "width": 3060},
            "last_workers": {}, **changes}


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_read_annotation_valid(tmp_path: Path) -> None:
    ann = read_annotation(write_json(tmp_path / "a.json", make_doc()))
    assert ann.problems == []
    assert [p.label for p in ann.polygons] == list(CLASSES)
    assert [p.class_index for p in ann.polygons] == list(range(NUM_CLASSES))
    p = ann.polygons[5]
    assert p.annotation_id == "6-uuid5" and p.points.dtype == np.int32 and p.points.shape == (4, 2)
    assert p.points.tolist() == square(15, 10)
    assert sorted(ann.by_class()) == list(range(NUM_CLASSES))


def test_read_annotation_rounds_float_points(tmp_path: Path) -> None:
    doc = make_doc()
    doc["annotations"][0]["points"] = [[1.4, 2.6], [10.0, 2.0], [10.2, 9.7]]
    ann = read_annotation(write_json(tmp_path / "a.json", doc))
    assert ann.problems == [] and ann.polygons[0].points.tolist() == [[1, 3], [10, 2], [10, 10]]


@pytest.mark.parametrize("text", ["{not json", "", "\xff\xfe"])
def test_read_annotation_not_json_raises_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(YolohandError, match="bad.json.*not valid JSON"):
        read_annotation(path)


@pytest.mark.parametrize("doc", [{}, {"annotations": {}}, [], {"annotations": None}])
def test_read_annotation_without_annotations_list_raises(tmp_path: Path, doc) -> None:
    with pytest.raises(YolohandError, match="noann.json.*annotations"):
        read_annotation(write_json(tmp_path / "noann.json", doc))


def test_read_annotation_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(YolohandError, match="gone.json"):
        read_annotation(tmp_path / "gone.json")


def one_problem(tmp_path: Path, index: int, **fields) -> tuple[Annotation, str]:
    doc = make_doc()
    doc["annotations"][index].update(fields)
    path = write_json(tmp_path / "p.json", doc)
    return read_annotation(path), str(path)


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"label": "finger-20"}, "unknown label 'finger-20'"),
        ({"label": None}, "no label"),
        ({"points": [[1, 2], [3, 4]]}, "fewer than 3 points"),
        ({"points": []}, "fewer than 3 points"),
        ({"points": [[1, 2], [3, "x"], [5, 6]]}, "non-numeric"),
        ({"points": [[1, 2], [3, None], [5, 6]]}, "non-numeric"),
        ({"points": [["1", "2"], ["3", "4"], ["5", "6"]]}, "non-numeric"),
        ({"points": [[1, 2], [3], [5, 6]]}, "malformed|non-numeric"),
        ({"points": [[1, 2, 3], [3, 4, 5], [5, 6, 7]]}, "malformed"),
        ({"points": "1,2,3"}, "expected a list"),
        ({"points": [[1, 2], [float("nan"), 4], [5, 6]]}, "non-finite"),
    ],
)
def test_read_annotation_reports_bad_annotation(tmp_path: Path, fields: dict, what: str) -> None:
    ann, path = one_problem(tmp_path, 4, **fields)  # annotation "5-uuid4", label finger-5
    assert len(ann.polygons) == NUM_CLASSES - 1  # the bad one is left out
    assert "finger-5" not in [p.label for p in ann.polygons]
    bad = [p for p in ann.problems if "annotation 5-uuid4" in p]
    assert len(bad) == 1, ann.problems
    assert bad[0].startswith(f"{path}: annotation 5-uuid4: ")
    assert __import__("re").search(what, bad[0]), bad[0]
    # ... and since finger-5 has no valid polygon left, the class is reported missing.
    assert f"{path}: class finger-5: missing (no valid annotation)" in ann.problems
    assert len(ann.problems) == 2


def test_read_annotation_reports_missing_class(tmp_path: Path) -> None:
    doc = make_doc()
    del doc["annotations"][27]  # Radius
    path = write_json(tmp_path / "m.json", doc)
    ann = read_annotation(path)
    assert ann.problems == [f"{path}: class Radius: missing (no valid annotation)"]
    assert len(ann.polygons) == NUM_CLASSES - 1


def test_read_annotation_reports_duplicate_class_and_keeps_both(tmp_path: Path) -> None:
    doc = make_doc()
    doc["annotations"][3]["label"] = "Pisiform"  # finger-4 becomes a second Pisiform
    path = write_json(tmp_path / "d.json", doc)
    ann = read_annotation(path)
    assert len(ann.problems) == 2
    assert f"{path}: annotation 27-uuid26: class Pisiform present twice (also annotation 4-uuid3)" in ann.problems
    assert f"{path}: class finger-4: missing (no valid annotation)" in ann.problems
    assert len(ann.by_class()[CLASSES.index("Pisiform")]) == 2
    masks = gt_masks(ann, 80, 100)
    assert masks[CLASSES.index("Pisiform")].sum() == 2 * 36


def test_read_annotation_without_id_uses_position(tmp_path: Path) -> None:
    doc = make_doc()
    del doc["annotations"][2]["id"]
    doc["annotations"][2]["label"] = "nope"
    doc["annotations"][7] = "not a dict"
    path = write_json(tmp_path / "i.json", doc)
    ann = read_annotation(path)
    assert f"{path}: annotation #2: unknown label 'nope'" in ann.problems
    assert f"{path}: annotation #7: not an object" in ann.problems


# --------------------------------------------------------------------------- images


def test_image_size_from_header_matches_decoded_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    color = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for name, img in [("g.png", gray), ("c.png", color)]:
        cv2.imwrite(str(tmp_path / name), img)
        assert image_size(tmp_path / name) == (37, 53)
        assert image_size(tmp_path / name) == read_image(tmp_path / name).shape
    # Only the header is read: a truncated PNG still reports its size.
    data = (tmp_path / "g.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[:40])
    assert image_size(tmp_path / "t.png") == (37, 53)
    # Non-PNG falls back to decoding.
    cv2.imwrite(str(tmp_path / "j.jpg"), gray)
    assert image_size(tmp_path / "j.jpg") == (37, 53)


def test_read_image_gray_color_16bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA))
    for name in ("g.png", "c.png", "a.png"):
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == (20, 30)
        assert np.array_equal(img, gray), name  # equal channels convert exactly
    wide = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "w.png"), wide)
    assert np.array_equal(read_image(tmp_path / "w.png"), (wide >> 8).astype(np.uint8))


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(YolohandError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(YolohandError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(YolohandError, match="missing.png"):
        image_size(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(YolohandError, match="empty.png"):
        image_size(tmp_path / "empty.png")


# --------------------------------------------------------------------------- find_split / find_images


def test_find_split_on_synthetic_data(synth_root: Path) -> None:
    train = find_split(synth_root, "train")
    assert len(train.records) == 6 and train.images_without_json == [] and train.jsons_without_image == []
    assert [r.rel_path for r in train.records] == sorted(r.rel_path for r in train.records)
    for r in train.records:
        assert r.image_path.is_absolute() and r.image_path.is_file() and r.json_path.is_file()
        assert r.rel_path == f"{r.patient_id}/{r.name}"
        assert r.stem == r.name[:-4] and r.json_path.stem == r.stem
        assert r.image_path.relative_to(synth_root / "train" / "DCM").as_posix() == r.rel_path
    test = find_split(synth_root, "test")
    assert len(test.records) == 2
    assert all(r.json_path is not None for r in test.records)  # synthetic test has ground truth
    assert {r.patient_id for r in test.records}.isdisjoint({r.patient_id for r in train.records})


def test_find_split_reports_unpaired_files(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    train = find_split(root, "train")
    lonely_image = train.records[0]
    lonely_image.json_path.unlink()
    stray = root / "train" / "outputs_json" / "ID999" / "image1.json"
    stray.parent.mkdir()
    stray.write_text("{}")
    index = find_split(root, "train")
    assert index.images_without_json == [lonely_image.image_path]
    assert index.jsons_without_image == [stray]
    assert lonely_image.rel_path not in [r.rel_path for r in index.records]
    assert len(index.records) == 5
    # Not requiring JSONs keeps the image, with json_path None.
    loose = find_split(root, "train", require_json=False)
    assert len(loose.records) == 6
    assert next(r for r in loose.records if r.rel_path == lonely_image.rel_path).json_path is None
    # Test images without JSON are normal.
    shutil.rmtree(root / "test" / "outputs_json")
    test = find_split(root, "test")
    assert len(test.records) == 2 and all(r.json_path is None for r in test.records)
    assert len(test.images_without_json) == 2


def test_find_split_errors(tmp_path: Path) -> None:
    with pytest.raises(YolohandError, match="not found"):
        find_split(tmp_path / "nope")
    with pytest.raises(YolohandError, match="DCM"):
        find_split(tmp_path)
    (tmp_path / "train" / "DCM" / "ID001").mkdir(parents=True)
    with pytest.raises(YolohandError, match="no images"):
        find_split(tmp_path)


def test_find_images_folder_file_and_list(synth_root: Path, tmp_path: Path) -> None:
    dcm = synth_root / "test" / "DCM"
    records = find_images(dcm)
    assert len(records) == 2 and all(r.json_path is None for r in records)
    assert [r.rel_path for r in records] == [r.rel_path for r in find_split(synth_root, "test").records]
    one = find_images(records[1].image_path)
    assert [(r.rel_path, r.image_path) for r in one] == [(records[1].rel_path, records[1].image_path)]
    listing = tmp_path / "list.txt"
    rel = Path("..") / tmp_path.name  # relative entries resolve against the list's folder
    copy = tmp_path / "ID777" / "image5.png"
    copy.parent.mkdir()
    shutil.copy(records[0].image_path, copy)
    listing.write_text(f"# images\n{records[1].image_path}\n\n{rel / 'ID777' / 'image5.png'}\n")
    listed = find_images(listing)
    assert [r.rel_path for r in listed] == sorted(["ID777/image5.png", records[1].rel_path])
    mine = next(r for r in listed if r.rel_path == "ID777/image5.png")
    assert mine.image_path == copy.resolve() and mine.patient_id == "ID777"
    listing.write_text("ID777/image5.png\nID777/nothere.png\n")
    with pytest.raises(YolohandError, match=r"list.txt:2: .*nothere.png"):
        find_images(listing)
    with pytest.raises(YolohandError, match="not found"):
        find_images(tmp_path / "absent")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(YolohandError, match="no images"):
        find_images(tmp_path / "emptydir")


def test_synthetic_annotations_are_clean(synth_root: Path) -> None:
    for split in ("train", "test"):
        for r in find_split(synth_root, split).records:
            ann = read_annotation(r.json_path)
            assert ann.problems == []
            h, w = image_size(r.image_path)
            masks = gt_masks(ann, h, w)
            assert masks.reshape(NUM_CLASSES, -1).any(axis=1).all()
