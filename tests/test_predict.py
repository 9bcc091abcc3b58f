"""yolohand.models.yolo.predict and `yolohand predict`: weights resolution, maps, averaging, CSV invariants.

Most tests use tiny random-weight YOLO11n-seg checkpoints (1 channel, 29 classes, imgsz 64)
whose class-logit bias is raised so that they detect (a few classes, many boxes): cheap, deterministic stand-ins
exercising every code path. The Dice floor test uses the shipped demo checkpoint.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from yolohand.core import crops as cr
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.probmaps import THRESHOLD_U8, load_probmap, probmap_path
from yolohand.core.rle import decode
from yolohand.data.layout import find_images
from yolohand.errors import YolohandError
from yolohand.models import predict as P
from yolohand.models.yolo import predict as YP

IMGSZ = 64


def make_checkpoint(path: Path, seed: int, cls_bias: float = 3.0, imgsz: int = IMGSZ) -> Path:
    """A random-weight 1-channel YOLO11n-seg checkpoint whose detections all have conf ~ sigmoid(cls_bias)."""
    from yolohand.models.yolo.offline import setup_offline

    setup_offline()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(seed)
    model = YOLO("yolo11n-seg.yaml", task="segment")
    net = SegmentationModel("yolo11n-seg.yaml", nc=NUM_CLASSES, ch=1, verbose=False)
    with torch.no_grad():
        for branch in net.model[-1].cv3:  # class logits of each detection level
            for m in branch.modules():  # fresh BN layers give ~0 features: shift them so anchors differ
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.bias.normal_(0.0, 1.0)
            branch[-1].bias.fill_(cls_bias)
    net.names = dict(enumerate(CLASSES))
    net.args = {"imgsz": imgsz, "task": "segment"}
    net.task = "segment"
    model.model = net
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return make_checkpoint(d / "a.pt", 0), make_checkpoint(d / "b.pt", 1)


@pytest.fixture(scope="module")
def images(synth_root) -> list[np.ndarray]:
    from yolohand.data.layout import read_image

    return [read_image(r.image_path) for r in find_images(synth_root / "test" / "DCM")]


@pytest.fixture(scope="module")
def nets(ckpts):
    return [YP.load_network(c, conf=0.05, device="cpu") for c in ckpts]


def _full(crops, shape) -> np.ndarray:
    out = np.zeros((len(crops), *shape), np.float64)
    for k, c in enumerate(crops):
        if c is not None:
            out[k, c.y0 : c.y1, c.x0 : c.x1] = c.probs
    return out


# --------------------------------------------------------------------------- weights
def test_missing_weights_is_a_clear_error_never_a_download(tmp_path):
    with pytest.raises(YolohandError, match="not found"):
        P.resolve_weights([tmp_path / "yolo11n-seg.pt"])
    with pytest.raises(YolohandError, match="not found"):
        YP.load_network("yolo11n-seg.pt")  # ultralytics would download this name
    assert not Path("yolo11n-seg.pt").exists()


def test_default_weights_newest_best_then_demo(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    demo = tmp_path / "demo.pt"
    monkeypatch.setattr(P, "DEMO_WEIGHTS", demo)
    with pytest.raises(YolohandError, match="no best.pt"):
        P.resolve_weights(None, runs)
    demo.write_bytes(b"x")
    assert P.resolve_weights(None, runs)[0] == [demo]
    old, new = runs / "a" / "weights" / "best.pt", runs / "b" / "weights" / "best.pt"
    for p, t in ((new, 2_000_000_000), (old, 1_000_000_000)):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
        os.utime(p, (t, t))
    paths, where = P.resolve_weights(None, runs)
    assert paths == [new] and "newest best.pt" in where


def test_not_a_segmentation_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(YolohandError, match="bad.pt"):
        YP.load_network(bad)


# --------------------------------------------------------------------------- maps
def test_probability_maps_shapes_and_ranges(nets, images):
    crops_list = P.predict_crops(nets[:1], images, P.Settings())
    assert len(crops_list) == len(images)
    for img, crops in zip(images, crops_list):
        H, W = img.shape
        assert len(crops) == NUM_CLASSES
        assert sum(c is not None for c in crops) >= 1  # the biased random model finds a few classes
        for c in (c for c in crops if c is not None):
            assert c.probs.dtype == np.float32 and c.probs.ndim == 2 and c.probs.size > 0
            assert 0 <= c.y0 < c.y1 <= H and 0 <= c.x0 < c.x1 <= W
            assert 0.0 <= c.probs.min() and c.probs.max() <= 1.0
        u8 = cr.crops_to_probmap(crops, (H, W))
        assert u8.shape == (NUM_CLASSES, H, W) and u8.dtype == np.uint8


def test_two_weights_average_equals_mean_of_their_maps(nets, images):
    img = images[:1]
    shape = img[0].shape
    zero = P.Settings(missing="zero", agree_iou=0.0)  # the plain mean (defaults leave out a model that missed or disagrees)
    a = _full(P.predict_crops(nets[:1], img, zero)[0], shape)
    b = _full(P.predict_crops(nets[1:], img, zero)[0], shape)
    ab = _full(P.predict_crops(nets, img, zero)[0], shape)
    assert np.abs(a - b).max() > 0.1  # the two models really differ
    np.testing.assert_allclose(ab, (a + b) / 2, atol=1e-6)


def test_tta_is_mean_of_image_and_unflipped_flip(nets, images):
    img = images[0]
    plain = _full(P.predict_crops(nets[:1], [img], P.Settings())[0], img.shape)
    flipped = _full(P.predict_crops(nets[:1], [np.ascontiguousarray(img[:, ::-1])], P.Settings())[0], img.shape)
    tta = _full(P.predict_crops(nets[:1], [img], P.Settings(tta=True, missing="zero", agree_iou=0.0))[0], img.shape)
    np.testing.assert_allclose(tta, (plain + flipped[:, :, ::-1]) / 2, atol=1e-6)


def test_union_covers_top1(nets, images):
    img = images[0]
    top1 = _full(P.predict_crops(nets[:1], [img], P.Settings(merge="top1"))[0], img.shape)
    union = _full(P.predict_crops(nets[:1], [img], P.Settings(merge="union"))[0], img.shape)
    assert (union >= top1 - 1e-6).all()


# --------------------------------------------------------------------------- CLI: CSV invariants
def _run_cli(argv, capsys) -> tuple[int, str, str]:
    from yolohand.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def source(synth_root, tmp_path_factory) -> Path:
    """The 2 synthetic test images, a blank image, and an unreadable one."""
    import cv2

    src = tmp_path_factory.mktemp("src") / "DCM"
    shutil.copytree(synth_root / "test" / "DCM", src)
    (src / "ID900").mkdir()
    cv2.imwrite(str(src / "ID900" / "image0000000000001.png"), np.zeros((96, 128), np.uint8))
    (src / "ID900" / "image0000000000002.png").write_bytes(b"\x89PNG garbage")
    return src


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_name", "class", "rle"]
    return rows[1:]


def test_cli_csv_29_rows_per_image_decodes_to_saved_maps(ckpts, source, tmp_path, capsys):
    out, probs = tmp_path / "sub.csv", tmp_path / "probs"
    args = ["predict", "--rle", str(out), "--weights", str(ckpts[0]), "--source", str(source),
            "--save-probs", str(probs), "--device", "cpu"]
    code, stdout, err = _run_cli(args, capsys)
    assert code == 0, err
    # The CLI prints warnings as one line each (yolohand.cli.main).
    assert any(line.startswith("warning: skipped (29 empty rows written)") and "image0000000000002.png" in line
               for line in err.splitlines()), err
    records = find_images(source)
    rows = _read_csv(out)
    assert len(rows) == NUM_CLASSES * len(records)
    assert [r[0] for r in rows[::NUM_CLASSES]] == [r.name for r in records]
    assert all([r[1] for r in rows[i : i + NUM_CLASSES]] == list(CLASSES) for i in range(0, len(rows), NUM_CLASSES))
    by_name = {rows[i][0]: [r[2] for r in rows[i : i + NUM_CLASSES]] for i in range(0, len(rows), NUM_CLASSES)}
    assert by_name["image0000000000002.png"] == [""] * NUM_CLASSES  # unreadable: rows kept, empty
    assert "1 unreadable" in stdout and "weights (given)" in stdout
    for rec in records:
        if rec.name == "image0000000000002.png":
            assert not probmap_path(probs, rec.name).exists()
            continue
        u8 = load_probmap(probmap_path(probs, rec.name))
        masks = np.stack([decode(r, u8.shape[1:]) for r in by_name[rec.name]])
        np.testing.assert_array_equal(masks, u8 >= THRESHOLD_U8)
    # An existing output needs --force: error, exit 1, file untouched.
    before = out.stat().st_mtime_ns
    code, _, err = _run_cli(args, capsys)
    assert code == 1 and "already exists" in err and out.stat().st_mtime_ns == before


def test_cli_nothing_detected_still_writes_29_empty_rows(ckpts, source, tmp_path, capsys):
    out = tmp_path / "empty.csv"
    code, stdout, err = _run_cli(["predict", "--rle", str(out), "--weights", str(ckpts[0]), "--source",
                                  str(source), "--conf", "0.99", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "warning: skipped" in err  # the unreadable image
    rows = _read_csv(out)
    assert len(rows) == NUM_CLASSES * len(find_images(source)) and all(r[2] == "" for r in rows)
    assert f"empty rows: {len(rows)} of {len(rows)}" in stdout


def test_cli_missing_weights_and_bad_options(tmp_path, capsys):
    code, _, err = _run_cli(["predict", "--rle", str(tmp_path / "x.csv"), "--weights", str(tmp_path / "none.pt"),
                             "--source", str(tmp_path)], capsys)
    assert code == 1 and err.startswith("error: ") and "none.pt" in err
    code, _, err = _run_cli(["predict", "--rle", str(tmp_path / "x.csv"), "--merge", "mean"], capsys)
    assert code == 1 and "--merge" in err
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------- quality floor
#: mDice floor on the synth_root_512 test images (2 images, 512 px, the default xray phantom the shipped checkpoint was
#: trained on by `python -m yolohand.recipes.shipped yolo`): measured 0.9261 with that checkpoint. Guards the whole path:
#: reading, letterbox, soft masks, per-class top-1, RLE, evaluate.
DEMO_DICE_FLOOR = 0.85


@pytest.mark.skipif(not P.DEMO_WEIGHTS.is_file(), reason="weights/yolohand-synth-n.pt not shipped yet")
def test_demo_checkpoint_reaches_dice_floor(synth_root_512, tmp_path):
    from yolohand.results.evaluate import evaluate

    out = tmp_path / "demo.csv"
    summary = P.predict_to_submission(out, source=synth_root_512 / "test" / "DCM", weights=[P.DEMO_WEIGHTS],
                                      device="cpu", progress=False)
    assert summary.n_images == 2 and not summary.unreadable
    result = evaluate(out, synth_root_512, split="test", progress=False)
    assert result.n_images == 2
    assert result.mean >= DEMO_DICE_FLOOR, f"mDice {result.mean:.4f} below the floor {DEMO_DICE_FLOOR}"


def test_cli_defaults_are_the_library_defaults():
    """`yolohand predict`'s option defaults (literals, so --help needs no heavy import) match the library's."""
    import inspect

    from yolohand.cli.predict import predict as cli_predict

    defaults = {name: p.default.default for name, p in inspect.signature(cli_predict).parameters.items()}
    settings = P.Settings()
    assert defaults["conf"] == YP.DEFAULT_CONF and defaults["iou"] == YP.DEFAULT_IOU
    for name in ("merge", "conf_weight", "tta", "mask_mode", "threshold", "mask_threshold", "missing", "agree_iou"):
        assert defaults[name] == getattr(settings, name), name
