"""yolohand.data.synth and `yolohand synth`: competition layout and schema, anatomy, determinism."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from yolohand.cli import app
from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.core.paths import MARKER
from yolohand.data.layout import fill_polygon, find_split, gt_masks, image_size, read_annotation, read_image
from yolohand.data.synth import bone_polygon, generate_dataset, long_bone
from yolohand.errors import YolohandError

TOP_KEYS = ["annotations", "attributes", "file_id", "filename", "parent_path", "last_modifier_id", "metadata",
            "last_workers"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
NAME = re.compile(r"^image\d{13}(_[LR])?\.png$")


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


# --------------------------------------------------------------------------- layout and schema


def test_layout(synth_root: Path) -> None:
    assert sorted(p.name for p in synth_root.iterdir()) == [MARKER, "known_bad.json", "test", "train"]
    ids: dict[str, list[str]] = {}
    names = []
    for split in ("train", "test"):
        assert sorted(p.name for p in (synth_root / split).iterdir()) == ["DCM", "exact_json", "outputs_json"]
        dcm = synth_root / split / "DCM"
        for folder in sorted(dcm.iterdir()):
            assert re.fullmatch(r"ID\d{3}", folder.name)
            pngs = sorted(p.name for p in folder.iterdir())
            assert len(pngs) == 2 and all(NAME.match(n) for n in pngs), pngs
            ids.setdefault(split, []).append(folder.name)
            names += pngs
            for png in pngs:  # the annotation sits at the same relative path
                assert (synth_root / split / "outputs_json" / folder.name / png.replace(".png", ".json")).is_file()
        jsons = sorted((synth_root / split / "outputs_json").rglob("*.json"))
        assert len(jsons) == 2 * len(ids[split])
    assert len(ids["train"]) == 3 and len(ids["test"]) == 1
    assert set(ids["train"]).isdisjoint(ids["test"])
    assert len(set(names)) == len(names)  # bare names are unique: the submission uses them


def test_json_schema(synth_root: Path) -> None:
    for path in sorted(synth_root.glob("*/outputs_json/*/*.json")):
        doc = json.loads(path.read_text())
        assert list(doc) == TOP_KEYS
        assert doc["filename"] == path.stem + ".jpg"  # like the real data: says .jpg, disk has .png
        assert doc["parent_path"] == f"/{path.parent.name}"
        assert doc["metadata"] == {"height": 3060, "width": 3060}
        assert re.fullmatch(UUID, doc["file_id"])
        anns = doc["annotations"]
        assert [a["label"] for a in anns] == list(CLASSES)  # 29 labels, each once
        for n, ann in enumerate(anns, 1):
            assert list(ann) == ["id", "type", "attributes", "points", "label"]
            assert re.fullmatch(rf"{n}-{UUID}", ann["id"])
            assert ann["type"] == "poly_seg" and ann["attributes"] == {}
            pts = ann["points"]
            assert len(pts) >= 3
            assert all(len(p) == 2 and all(type(v) is int and 0 <= v < 256 for v in p) for p in pts)


def test_images_are_8bit_gray_or_3_channel(synth_root: Path) -> None:
    kinds = set()
    for path in sorted(synth_root.rglob("*.png")):
        head = path.read_bytes()[:26]
        bit_depth, colour_type = head[24], head[25]
        assert bit_depth == 8 and colour_type in (0, 2)  # 8-bit grayscale or RGB
        kinds.add(colour_type)
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert raw.shape[:2] == (256, 256) == image_size(path)
        if raw.ndim == 3:  # gray stored as three equal channels
            assert (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all()
    assert kinds == {0, 2}  # seed 0 writes both kinds


def test_readable_by_data_layer(synth_root: Path) -> None:
    train = find_split(synth_root, "train")
    test = find_split(synth_root, "test")
    assert len(train.records) == 6 and len(test.records) == 2
    assert not train.images_without_json and not train.jsons_without_image
    for record in train.records + test.records:
        ann = read_annotation(record.json_path)
        assert ann.problems == []
        assert sorted(ann.by_class()) == list(range(NUM_CLASSES))


# --------------------------------------------------------------------------- anatomy


def masks_of(record) -> np.ndarray:
    h, w = image_size(record.image_path)
    return gt_masks(read_annotation(record.json_path), h, w)


def records(root: Path) -> list:
    return find_split(root, "train").records + find_split(root, "test").records


def test_the_two_known_overlaps_are_present(synth_root: Path, synth_root_512: Path) -> None:
    for record in records(synth_root) + records(synth_root_512):
        m = masks_of(record)
        for a, b in [("Trapezium", "Trapezoid"), ("Triquetrum", "Pisiform")]:
            inter = (m[CLASS_INDEX[a]] & m[CLASS_INDEX[b]]).sum()
            assert inter > 0, (record.rel_path, a, b)
        # Phalanges of one finger barely overlap (joint spaces between them; a flexed finger's
        # joints project onto each other a little).
        for chain in [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14), (15, 16, 17, 18)]:
            for i, j in zip(chain, chain[1:]):
                smaller = min(m[i].sum(), m[j].sum())
                assert (m[i] & m[j]).sum() < 0.15 * smaller, (record.rel_path, CLASSES[i], CLASSES[j])


def test_hand_anatomy_is_arranged_like_a_hand(synth_root_512: Path) -> None:
    for record in records(synth_root_512):
        m = masks_of(record)
        c = {name: centroid(m[i]) for i, name in enumerate(CLASSES)}
        area = m.reshape(NUM_CLASSES, -1).sum(1)
        # Fingertips are the most distal points of their finger, above (smaller y than) the carpus;
        # each finger runs distal -> metacarpal with the wrist below.
        for chain in [(1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15), (16, 17, 18, 19)]:
            dist = [np.linalg.norm(c[f"finger-{n}"] - c["Capitate"]) for n in chain]
            assert dist == sorted(dist, reverse=True), (record.rel_path, chain, dist)
        # The radius is the largest bone, the ulna among the largest, Pisiform among the smallest.
        assert np.argmax(area) == CLASS_INDEX["Radius"]
        assert CLASS_INDEX["Ulna"] in np.argsort(area)[-6:]
        assert area[CLASS_INDEX["Pisiform"]] < np.median(area)


def thumb_side(record) -> float:
    """> 0 when the thumb lies at +x of the little finger (after undoing the hand's tilt)."""
    m = masks_of(record)
    thumb = centroid(m[CLASS_INDEX["finger-3"]])  # thumb metacarpal
    little = centroid(m[CLASS_INDEX["finger-19"]])  # little-finger metacarpal
    up = centroid(m[CLASS_INDEX["finger-11"]]) - centroid(m[CLASS_INDEX["Radius"]])  # wrist -> middle finger
    across = np.array([-up[1], up[0]])  # perpendicular, pointing to image +x when up is -y
    return float(np.dot(thumb - little, across))


def test_left_and_right_hand_per_id(synth_root: Path) -> None:
    by_id: dict[str, list] = {}
    for record in records(synth_root):
        by_id.setdefault(record.patient_id, []).append(record)
    for pid, pair in by_id.items():
        sides = sorted(np.sign(thumb_side(r)) for r in pair)
        assert sides == [-1, 1], pid  # one hand mirrored against the other
        for r in pair:  # where the name says the side: _R has the thumb at -x (PA view)
            if r.stem.endswith("_R"):
                assert thumb_side(r) < 0
            if r.stem.endswith("_L"):
                assert thumb_side(r) > 0


def test_image_intensities_follow_the_labels(synth_root_512: Path) -> None:
    for record in records(synth_root_512):
        img = read_image(record.image_path).astype(float)
        m = masks_of(record)
        bone = m.any(0)
        overlap = m.sum(0) >= 2
        near = cv2.dilate(bone.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~bone
        far = ~cv2.dilate(bone.astype(np.uint8), np.ones((121, 121), np.uint8)).astype(bool)
        single = bone & ~overlap
        # X-ray-like: bones brighter than the soft tissue around them, tissue brighter than air,
        # and overlapping bones denser than single ones. Medians: the saturated band along the
        # top edge of some images (a detector artifact) is far from the hand but not air.
        assert np.median(img[single]) > np.median(img[near]) + 30
        assert np.median(img[near]) > np.median(img[far]) + 10
        assert img[overlap].mean() > img[single].mean()


# --------------------------------------------------------------------------- polygons


def test_bone_polygon_is_the_pixel_contour_of_the_shape() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p0 = rng.uniform(20, 80, 2)
        p1 = p0 + rng.uniform(-60, 60, 2)
        w0, ws, w1 = rng.uniform(5, 12), rng.uniform(3, 5), rng.uniform(4, 10)
        outline = long_bone(p0, p1, w0, ws, w1, bend=rng.normal(0, 0.02))
        poly = bone_polygon(outline, 100, 100)
        assert poly.dtype == np.int32 and poly.ndim == 2 and poly.shape[1] == 2
        # fillPoly of the integer contour reproduces the rasterised shape exactly.
        raster = np.zeros((100, 100), np.uint8)
        cv2.fillPoly(raster, [np.round(outline * 8).astype(np.int32).reshape(-1, 1, 2)], 1, cv2.LINE_8, shift=3)
        assert np.array_equal(fill_polygon(poly, 100, 100), raster.astype(bool))


def test_bone_polygon_clips_to_the_image() -> None:
    outline = long_bone(np.array([30.0, 200.0]), np.array([30.0, 40.0]), 10, 8, 12)
    poly = bone_polygon(outline, 100, 100)
    assert poly[:, 1].max() == 99 and poly.min() >= 0
    assert len(bone_polygon(outline + 500, 100, 100)) == 0


def test_long_bone_has_a_shaft_and_wider_ends() -> None:
    outline = long_bone(np.array([0.0, 0.0]), np.array([0.0, -100.0]), 12, 6, 10, n=101)
    half = np.abs(outline[:101, 0])  # x = half width along the bone (left side)
    t = -outline[:101, 1] / 100
    at = lambda v: half[np.argmin(np.abs(t - v))]  # noqa: E731
    assert at(0.5) == pytest.approx(6, abs=0.2)
    assert at(0.1) > 9 and at(0.9) > 8 and at(0.5) < at(0.25) < at(0.1)


def test_polygon_point_counts(synth_root_512: Path) -> None:
    for record in records(synth_root_512):
        counts = [len(p.points) for p in read_annotation(record.json_path).polygons]
        assert min(counts) >= 8 and max(counts) < 1000 and np.mean(counts) > 20


# --------------------------------------------------------------------------- determinism, CLI


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    kw = dict(train_ids=2, test_ids=1, size=128, progress=False)
    generate_dataset(tmp_path / "a", seed=5, workers=1, **kw)
    generate_dataset(tmp_path / "b", seed=5, workers=2, **kw)
    generate_dataset(tmp_path / "c", seed=6, workers=1, **kw)
    a, b, c = (all_files(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 12 + 6 + 1  # PNG + JSON per image, exact contours, known_bad.json
    assert a != c


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_dataset(out, train_ids=2, test_ids=0, size=64, workers=1, progress=False)
    with pytest.raises(YolohandError, match="already exists"):
        generate_dataset(out, train_ids=1, test_ids=0, size=64, workers=1, progress=False)
    assert len(list(out.rglob("*.png"))) == 4
    summary = generate_dataset(out, train_ids=1, test_ids=0, size=64, workers=1, force=True, progress=False)
    assert summary.images == 2 and len(list(out.rglob("*.png"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .out.*.old or temp left behind


def test_force_never_replaces_a_folder_that_is_not_a_synthetic_dataset(tmp_path: Path) -> None:
    # A real dataset has the same layout as a synthetic one: only yolohand's marker tells them apart.
    real = tmp_path / "handbone"
    (real / "train" / "DCM" / "ID001").mkdir(parents=True)
    (real / "train" / "DCM" / "ID001" / "image1.png").write_bytes(b"mine")
    with pytest.raises(YolohandError, match="not a previous yolohand synthetic dataset"):
        generate_dataset(real, train_ids=1, test_ids=0, size=64, workers=1, force=True, progress=False)
    assert (real / "train" / "DCM" / "ID001" / "image1.png").read_bytes() == b"mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(YolohandError, match="not a folder"):
        generate_dataset(tmp_path / "file", train_ids=1, test_ids=0, size=64, workers=1, force=True, progress=False)
    assert (tmp_path / "file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "handbone"]


def test_outputs_get_the_umask_modes(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        generate_dataset(tmp_path / "out", train_ids=1, test_ids=0, size=64, workers=1, progress=False)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    png = next(out.rglob("*.png"))
    assert stat.S_IMODE(png.stat().st_mode) == 0o640 and stat.S_IMODE(png.parent.stat().st_mode) == 0o750


@pytest.mark.parametrize("kw", [dict(size=32), dict(size=999999999), dict(train_ids=0, test_ids=0),
                                dict(train_ids=-1), dict(workers=-1)])
def test_bad_arguments(tmp_path: Path, kw: dict) -> None:
    with pytest.raises(YolohandError):
        generate_dataset(tmp_path / "x", **{"size": 64, "workers": 1, "progress": False, **kw})
    assert not (tmp_path / "x").exists()


def test_cli_writes_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "set"
    args = ["synth", str(out), "--train-ids", "2", "--test-ids", "1", "--size", "96", "--seed", "3", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 6 images (4 train, 2 test) at 96x96" in result.output
    assert re.search(r"\d+\.\d s with 1 worker", result.output)
    assert len(list((out / "train" / "DCM").rglob("*.png"))) == 4
    assert len(list((out / "test" / "outputs_json").rglob("*.json"))) == 2
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and isinstance(again.exception, YolohandError)
