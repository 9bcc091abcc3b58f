"""yolohand convert: exact label lines, repairs, fidelity, folds on disk, ultralytics check, bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.data.convert import CHANNELS, KNOWN_BAD, convert_dataset, normalise_points, parse_label_file
from yolohand.errors import YolohandError

SQUARE = [[10, 20], [30, 20], [30, 40], [10, 40]]


def _write_image(path: Path, h: int, w: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.arange(h * w).reshape(h, w) % 251).astype(np.uint8)
    if channels == 3:
        img = np.repeat(img[:, :, None], 3, axis=2)
    assert cv2.imwrite(str(path), img)


def _write_json(path: Path, annotations: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"annotations": annotations, "metadata": {"height": 3060, "width": 3060}, "filename": "x.jpg"}
    path.write_text(json.dumps(doc))


def _ann(i: int, label: str, points: list) -> dict:
    return {"id": f"{i}-uuid", "type": "poly_seg", "attributes": {}, "points": points, "label": label}


def _full_annotation(offset: int = 0) -> list[dict]:
    """29 disjoint axis-aligned squares of 6x6 px in a 100x200 image (rows of 15)."""
    anns = []
    for c, name in enumerate(CLASSES):
        x0, y0 = 5 + (c % 15) * 12, 50 + (c // 15) * 20
        anns.append(_ann(c + offset, name, [[x0, y0], [x0 + 6, y0], [x0 + 6, y0 + 6], [x0, y0 + 6]]))
    return anns


def _make_root(tmp: Path, n_ids: int = 4, h: int = 100, w: int = 200) -> Path:
    """A hand-made root: n_ids IDs with 2 images each, every image with 29 square bones."""
    root = tmp / "handbone"
    for i in range(1, n_ids + 1):
        for j in range(2):
            rel = f"ID{i:03d}/image16611{i:04d}{j:04d}"
            _write_image(root / "train" / "DCM" / f"{rel}.png", h, w, channels=1 + 2 * j)
            _write_json(root / "train" / "outputs_json" / f"{rel}.json", _full_annotation())
    return root


# --------------------------------------------------------------------------- labels


def test_exact_label_lines(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    first = root / "train" / "outputs_json" / "ID001" / "image1661100010000.json"
    anns = _full_annotation()
    anns[0] = _ann(0, "finger-1", SQUARE)
    # Repeated and collinear points are removed losslessly: same square, same line.
    anns[1] = _ann(1, "finger-2", [[50, 60], [50, 60], [60, 60], [70, 60], [70, 80], [50, 80], [50, 70]])
    _write_json(first, anns)
    report = convert_dataset(root, tmp_path / "yolo", folds=2, progress=False, workers=1)
    lines = (tmp_path / "yolo" / "labels" / "ID001" / "image1661100010000.txt").read_text().splitlines()
    # W=200, H=100: each coordinate is x/W (y/H) rounded up at the 6th decimal.
    assert lines[0] == "0 0.050005 0.200010 0.150005 0.200010 0.150005 0.400010 0.050005 0.400010"
    assert lines[1] == "1 0.250005 0.600010 0.350005 0.600010 0.350005 0.800010 0.250005 0.800010"
    assert len(lines) == NUM_CLASSES
    assert report.points_removed >= 3
    assert report.fidelity == 1.0


def test_normalised_points_recover_integers_by_truncation_and_rounding() -> None:
    pts = np.stack(np.meshgrid(np.arange(0, 2048, 7), np.arange(0, 2048, 13)), -1).reshape(-1, 2)
    for h, w in ((2048, 2048), (1000, 3000), (517, 733)):
        p = pts[(pts[:, 0] < w) & (pts[:, 1] < h)]
        units = normalise_points(p, h, w)
        text = " ".join(f"{u / 1e6:.6f}" for u in units.ravel())
        vals32 = np.asarray(text.split(), np.float32).reshape(-1, 2) * np.array([w, h], np.float32)
        assert np.array_equal(vals32.astype(np.int32), p)  # ultralytics-style truncation in float32
        assert np.array_equal(np.rint(vals32).astype(np.int32), p)
        assert units.max() < 10**6


def test_repairs_and_drops_reported(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    first = root / "train" / "outputs_json" / "ID001" / "image1661100010000.json"
    anns = _full_annotation()
    anns[0] = _ann(0, "finger-1", [[10, 10], [40, 40], [40, 10], [10, 40]])  # bow-tie
    anns[1] = _ann(1, "finger-2", [[-10, 50], [30, 50], [30, 120], [-10, 120]])  # crosses the border
    anns[2] = _ann(2, "finger-3", [[60, 10], [70, 10], [80, 10]])  # collinear: no area
    anns[3] = _ann(3, "finger-4", [[60, 10], [70, 10]])  # < 3 points (read_annotation warns)
    anns.append(_ann(99, "ring", SQUARE))  # unknown label
    _write_json(first, anns)
    out = tmp_path / "yolo"
    report = convert_dataset(root, out, folds=2, progress=False, workers=1)
    doc = json.loads((out / "convert_report.json").read_text())
    by_label = {r["label"]: r for r in doc["repairs"]}
    assert by_label["finger-1"]["actions"] == ["made-valid", "merged-parts:2"]
    assert by_label["finger-1"]["annotation"] == "0-uuid"
    assert by_label["finger-2"]["actions"] == ["clipped"]
    assert [d["label"] for d in doc["drops"]] == ["finger-3"]
    assert doc["drops"][0]["file"] == "ID001/image1661100010000.png"
    assert any("unknown label 'ring'" in w for w in doc["warnings"])
    assert any("finger-4" in w and "fewer than 3 points" in w for w in doc["warnings"])
    assert doc["summary"]["repaired"] == 2 and doc["summary"]["dropped"] == 1
    assert report.repair_counts() == {"clipped": 1, "made-valid": 1, "merged-parts": 1}
    label = parse_label_file(out / "labels" / "ID001" / "image1661100010000.txt", 100, 200)
    classes = [c for c, _ in label]
    assert classes.count(0) == 1  # the bow-tie stays one instance
    assert 2 not in classes and 3 not in classes
    clipped = next(p for c, p in label if c == 1)
    assert clipped.min() >= 0 and clipped[:, 0].max() <= 199 and clipped[:, 1].max() <= 99
    summary = "\n".join(report.lines())
    assert "repaired 2" in summary and "dropped 1" in summary


def test_fidelity_on_synthetic_set(synth_root: Path, tmp_path: Path) -> None:
    """The report's figure, and an independent full-size recomputation, are >= 0.999."""
    from yolohand.core.metrics import dice_masks
    from yolohand.data.layout import fill_polygon, find_split, gt_masks, read_annotation

    out = tmp_path / "yolo"
    report = convert_dataset(synth_root, out, folds=3, progress=False, workers=2)
    assert report.fidelity >= 0.999
    scores = []
    for rec in find_split(synth_root).records:
        h, w = cv2.imread(str(rec.image_path), cv2.IMREAD_UNCHANGED).shape[:2]
        gt = gt_masks(read_annotation(rec.json_path), h, w)
        pred = np.zeros_like(gt)
        for cls, pts in parse_label_file(out / "labels" / rec.patient_id / f"{rec.stem}.txt", h, w):
            pred[cls] |= fill_polygon(pts, h, w)
        present = gt.any((1, 2)) | pred.any((1, 2))
        scores.extend(dice_masks(pred, gt)[present].tolist())
    assert np.mean(scores) >= 0.999
    assert abs(np.mean(scores) - report.fidelity) < 1e-6


# --------------------------------------------------------------------------- layout and folds


def test_layout_folds_and_symlinks(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=5)
    out = tmp_path / "yolo"
    report = convert_dataset(root, out, folds=3, seed=1, progress=False, workers=2)
    doc = json.loads((out / "folds.json").read_text())
    assert doc["k"] == 3 and doc["seed"] == 1 and doc["folds"] == report.folds
    ids = [pid for f in doc["folds"] for pid in f]
    assert sorted(ids) == [f"ID{i:03d}" for i in range(1, 6)]
    for k in range(3):
        val = (out / "folds" / f"fold{k}_val.txt").read_text().split()
        train = (out / "folds" / f"fold{k}_train.txt").read_text().split()
        assert {Path(p).parent.name for p in val} == set(doc["folds"][k])
        assert not {Path(p).parent.name for p in train} & set(doc["folds"][k])
        assert len(val) + len(train) == 10
        for p in val + train:
            assert os.path.isabs(p) and Path(p).is_file()  # through the symlinks
            label = Path(p.rsplit("/images/", 1)[0] + "/labels/" + p.rsplit("/images/", 1)[1]).with_suffix(".txt")
            assert label.is_file()
    link = out / "images" / "ID001" / "image1661100010000.png"
    assert link.is_symlink() and os.path.isabs(os.readlink(link))
    assert Path(os.readlink(link)) == (root / "train" / "DCM" / "ID001" / "image1661100010000.png").resolve()


def test_yaml_passes_ultralytics_check_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolohand.models.yolo.offline import setup_offline

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    setup_offline()

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    root = _make_root(tmp_path, n_ids=4, h=128, w=200)
    out = tmp_path / "yolo"
    convert_dataset(root, out, folds=2, imgsz=64, progress=False, workers=1)
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    caches = set()
    for k in range(2):
        data = check_det_dataset(str(out / "folds" / f"fold{k}.yaml"), autodownload=False)
        assert data["nc"] == NUM_CLASSES and data["names"][0] == "finger-1" and data["names"][28] == "Ulna"
        assert data["channels"] == CHANNELS
        for split in ("train", "val"):
            ds = YOLODataset(img_path=data[split], imgsz=64, augment=False, data=data, task="segment")
            assert len(ds.labels) == 4 and all(len(lb["segments"]) == NUM_CLASSES for lb in ds.labels)
            caches.add(Path(ds.label_files[0]).parent.with_suffix(".cache"))
            # The resize cache is what ultralytics itself would compute from the PNG.
            im, hw0, hw = ds.load_image(0)
            npy = Path(ds.npy_files[0])
            assert npy.exists() and im.shape == (41, 64, 1)
            hidden = npy.resolve().with_suffix(".hidden")
            npy.resolve().rename(hidden)
            ds.ims[0] = None
            ds.buffer.clear()
            expected, _, _ = ds.load_image(0)
            hidden.rename(npy.resolve().with_suffix(".npy"))
            assert np.array_equal(im, expected)
    assert len(caches) == 4 and all(c.is_file() for c in caches)  # no two folds/splits share one


# --------------------------------------------------------------------------- bad input


def test_missing_root_and_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(YolohandError, match="not found"):
        convert_dataset(tmp_path / "nope", tmp_path / "yolo", progress=False)
    (tmp_path / "empty" / "train" / "DCM").mkdir(parents=True)
    with pytest.raises(YolohandError, match="no images"):
        convert_dataset(tmp_path / "empty", tmp_path / "yolo", progress=False)
    root = tmp_path / "nojson"
    _write_image(root / "train" / "DCM" / "ID001" / "image1.png", 10, 10)
    with pytest.raises(YolohandError, match="no annotation JSON"):
        convert_dataset(root, tmp_path / "yolo", progress=False)
    assert not (tmp_path / "yolo").exists()


def test_bad_files_are_skipped_with_warnings(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=4)
    dcm, js = root / "train" / "DCM", root / "train" / "outputs_json"
    (js / "ID001" / "image1661100010000.json").write_text("{not json")
    (js / "ID002" / "image1661100020000.json").unlink()  # image without JSON
    _write_json(js / "ID009" / "image9.json", _full_annotation())  # JSON without image
    (dcm / "ID003" / "image1661100030000.png").write_bytes(b"not a png at all")
    out = tmp_path / "yolo"
    report = convert_dataset(root, out, folds=2, progress=False, workers=1)
    skipped = {Path(s["file"]).name: s["problem"] for s in report.skipped}
    assert "not valid JSON" in skipped["image1661100010000.png"]
    assert "image1661100010000.json" in skipped["image1661100010000.png"]
    assert skipped["image1661100020000.png"].endswith("image1661100020000.png: image without annotation JSON")
    assert "ID002/image1661100020000.png" in {s["file"] for s in report.skipped}
    assert "image1661100030000.png: not a readable image" in skipped["image1661100030000.png"]
    assert any("image9.json: annotation JSON without image" in w for w in report.warnings)
    assert report.n_images == 5
    doc = json.loads((out / "convert_report.json").read_text())
    assert len(doc["skipped"]) == 3
    assert not (out / "labels" / "ID001" / "image1661100010000.txt").exists()
    assert "skipped 3 images" in "\n".join(report.lines())


def test_unreadable_image_with_imgsz(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=3)
    png = root / "train" / "DCM" / "ID001" / "image1661100010000.png"
    png.write_bytes(png.read_bytes()[:60])  # header fine, data truncated
    report = convert_dataset(root, tmp_path / "yolo", folds=2, imgsz=64, progress=False, workers=1)
    assert [s["file"] for s in report.skipped] == ["ID001/image1661100010000.png"]
    assert "not a readable image" in report.skipped[0]["problem"]


def test_exclude_and_known_bad(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=4)
    # Give ID058 the known-bad name.
    bad_pid, bad_stem = next(iter(KNOWN_BAD))
    shutil.move(root / "train" / "DCM" / "ID004", root / "train" / "DCM" / bad_pid)
    shutil.move(root / "train" / "outputs_json" / "ID004", root / "train" / "outputs_json" / bad_pid)
    os.rename(root / "train" / "DCM" / bad_pid / "image1661100040000.png", root / "train" / "DCM" / bad_pid / f"{bad_stem}.png")
    os.rename(root / "train" / "outputs_json" / bad_pid / "image1661100040000.json",
              root / "train" / "outputs_json" / bad_pid / f"{bad_stem}.json")
    out = tmp_path / "yolo"
    report = convert_dataset(root, out, folds=2, exclude=["ID001,image1661100020001.png"], drop_known_bad=True,
                             progress=False, workers=1)
    reasons = {e["file"]: e["reason"] for e in report.excluded}
    assert reasons == {
        "ID001/image1661100010000.png": "--exclude ID001",
        "ID001/image1661100010001.png": "--exclude ID001",
        "ID002/image1661100020001.png": "--exclude image1661100020001.png",
        f"{bad_pid}/{bad_stem}.png": "known bad: mirrored/swapped labels",
    }
    assert report.n_images == 4 and report.n_ids == 3
    with pytest.raises(YolohandError, match="--exclude ID999: matches no"):
        convert_dataset(root, tmp_path / "yolo2", exclude=["ID999"], progress=False)


def test_existing_output_needs_force_and_rerun_reuses(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=3)
    out = tmp_path / "yolo"
    first = convert_dataset(root, out, folds=2, progress=False, workers=1)
    with pytest.raises(YolohandError, match="already exists"):
        convert_dataset(root, out, folds=2, progress=False, workers=1)
    label = out / "labels" / "ID001" / "image1661100010000.txt"
    before = label.read_text()
    # Touching a JSON changes nothing: reuse is decided by content.
    js = root / "train" / "outputs_json" / "ID001" / "image1661100010000.json"
    st = js.stat()
    os.utime(js, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = convert_dataset(root, out, folds=2, progress=False, workers=1, force=True)
    assert second.reused == 6 and label.read_text() == before
    assert second.fidelity == first.fidelity and second.folds == first.folds
    # Editing it in place with the same size and mtime must not reuse its stale labels.
    text = js.read_text()
    edited = text.replace("[5, 50]", "[7, 50]", 1)
    assert edited != text and len(edited) == len(text)
    js.write_text(edited)
    os.utime(js, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = convert_dataset(root, out, folds=2, progress=False, workers=1, force=True)
    assert third.reused == 5 and label.read_text() != before
    assert label.read_text().split("\n")[0] == "0 " + " ".join(
        f"{v / 10**6:.6f}" for v in normalise_points(np.array([[7, 50], [11, 50], [11, 56], [5, 56]]), 100, 200).ravel())
    assert not list(tmp_path.glob(".yolo.*"))  # no temp folders left behind


def test_cli_errors_exit_nonzero(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "yolohand", "convert", "--root", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "yolo")], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing" in res.stderr and not (tmp_path / "yolo").exists()
    root = _make_root(tmp_path, n_ids=2)
    res = subprocess.run([sys.executable, "-m", "yolohand", "convert", "--root", str(root), "--out",
                          str(tmp_path / "yolo"), "--folds", "2", "--workers", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "fidelity: mean Dice 1.000000" in res.stdout and "converted 4 images (2 IDs)" in res.stdout


def test_setup_offline_installs_fonts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolohand.models.yolo.offline import default_config_dir, setup_offline

    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("YOLO_OFFLINE", "false")
    cfg = setup_offline()
    assert cfg == default_config_dir() == tmp_path / "cache" / "yolohand" / "ultralytics"
    assert os.environ["YOLO_CONFIG_DIR"] == str(cfg)
    assert os.environ["YOLO_OFFLINE"] == "true" and os.environ["YOLO_AUTOINSTALL"] == "false"
    for folder in (cfg, cfg / "Ultralytics"):
        assert (folder / "Arial.ttf").read_bytes()[:4] == b"\x00\x01\x00\x00"  # a TrueType font
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "mine"))
    assert setup_offline() == tmp_path / "mine"  # an explicit YOLO_CONFIG_DIR is kept


# --------------------------------------------------------------------------- outputs never harm inputs


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["root", "inside", "around"])
def test_output_overlapping_the_root_is_refused_even_with_force(tmp_path: Path, where: str) -> None:
    root = _make_root(tmp_path / "nest", n_ids=2)
    before = _tree(tmp_path)
    out = {"root": root, "inside": root / "yolo", "around": root.parent}[where]
    words = {"root": "is also an input", "inside": "lies inside the input", "around": "contains the input"}[where]
    with pytest.raises(YolohandError, match=words):
        convert_dataset(root, out, folds=2, progress=False, workers=1, force=True)
    assert _tree(tmp_path) == before


def test_output_through_a_symlink_to_the_root_is_refused(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    with pytest.raises(YolohandError, match="is also an input"):
        convert_dataset(root, tmp_path / "link", folds=2, progress=False, workers=1, force=True)
    assert (root / "train" / "DCM").is_dir()


def test_force_replaces_only_a_previous_converted_dataset(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    (tmp_path / "somefile").write_text("mine")
    with pytest.raises(YolohandError, match="not a folder"):
        convert_dataset(root, tmp_path / "somefile", folds=2, progress=False, workers=1, force=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(YolohandError, match="not a previous yolohand converted dataset"):
        convert_dataset(root, mine, folds=2, progress=False, workers=1, force=True)
    assert (tmp_path / "somefile").read_text() == "mine" and (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handbone", "mine", "somefile"]  # no .NAME.old


def test_unwritable_output_place_fails_before_the_work(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(YolohandError, match="is not a folder"):
        convert_dataset(root, tmp_path / "file" / "yolo", folds=2, progress=False, workers=1)
    with pytest.raises(YolohandError, match="cannot write in /proc"):
        convert_dataset(root, "/proc/yolo", folds=2, progress=False, workers=1)


def test_broken_images_are_decoded_and_skipped_without_imgsz(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=3)
    dcm = root / "train" / "DCM"
    png = dcm / "ID001" / "image1661100010000.png"
    png.write_bytes(png.read_bytes()[:80])  # header fine, pixel data truncated
    link = dcm / "ID002" / "image1661100020000.png"
    link.unlink()
    link.symlink_to(tmp_path / "gone.png")  # dangling symlink
    report = convert_dataset(root, tmp_path / "yolo", folds=2, progress=False, workers=1)
    skipped = {s["file"]: s["problem"] for s in report.skipped}
    assert "not a readable image" in skipped["ID001/image1661100010000.png"]
    assert "broken symlink" in skipped["ID002/image1661100020000.png"]
    assert report.n_images == 4


def test_one_pixel_image_is_skipped_not_a_crash(tmp_path: Path) -> None:
    root = _make_root(tmp_path, n_ids=2)
    _write_image(root / "train" / "DCM" / "ID001" / "image1661100010000.png", 1, 1)
    report = convert_dataset(root, tmp_path / "yolo", folds=2, progress=False, workers=1)
    assert [s["file"] for s in report.skipped] == ["ID001/image1661100010000.png"]
    assert "no usable polygon" in report.skipped[0]["problem"]
    assert any("too small to hold a polygon" in w for w in report.warnings)


@pytest.mark.parametrize("points, reason", [
    ([[300, 300], [320, 300], [320, 320]], "outside the image"),
    ([[10, 10], [20, 20], [30, 30]], "fewer than 3 distinct non-collinear points"),
])
def test_dropped_polygon_is_a_warning_and_its_class_missing(tmp_path: Path, points, reason) -> None:
    root = _make_root(tmp_path, n_ids=2)
    anns = _full_annotation()
    anns[3] = _ann(3, CLASSES[3], points)
    js = root / "train" / "outputs_json" / "ID001" / "image1661100010000.json"
    _write_json(js, anns)
    report = convert_dataset(root, tmp_path / "yolo", folds=2, progress=False, workers=1)
    assert len(report.drops) == 1 and reason in report.drops[0]["reason"]
    assert [w for w in report.warnings if str(js) in w] == [
        f"{js}: annotation 3-uuid: {CLASSES[3]}: polygon dropped ({report.drops[0]['reason']})",
        f"{js}: class {CLASSES[3]}: missing (its only polygon was dropped)",
    ]
    assert "dropped 1;" in report.lines()[1] and "2 warnings" in report.lines()[4]
