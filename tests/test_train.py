"""yolohand train: argument merging, user errors, the Dice metric, and a real (tiny) offline training."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolohand.errors import YolohandError
from yolohand.models.yolo.train import (
    DATA_DEFAULTS,
    DICE_KEY,
    merge_train_args,
    parse_device,
    read_run_config,
    resolve_model,
    train_fold,
)

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- arguments (no training)


def test_merge_order_defaults_config_flags():
    config = {"epochs": 50, "lr0": 0.002, "overlap_mask": True, "imgsz": 512}
    flags = {"epochs": 3, "imgsz": None, "batch": None, "workers": 2}
    merged = merge_train_args(config, flags)
    assert merged["epochs"] == 3  # flag beats config
    assert merged["imgsz"] == 512  # flag not given (None) -> config value stays
    assert merged["lr0"] == 0.002  # config-only key passes through
    assert merged["overlap_mask"] is True  # config beats yolohand's default
    assert merged["workers"] == 2
    assert "batch" not in merged
    assert merged["hsv_s"] == DATA_DEFAULTS["hsv_s"] == 0.0  # untouched defaults remain


def test_data_defaults_fit_xrays():
    assert DATA_DEFAULTS["overlap_mask"] is False
    assert DATA_DEFAULTS["hsv_h"] == 0.0 and DATA_DEFAULTS["hsv_s"] == 0.0
    assert 0.0 < DATA_DEFAULTS["hsv_v"] < 0.4
    assert DATA_DEFAULTS["flipud"] == 0.0


def test_read_run_config(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("epochs: 7\nlr0: 0.005\nmosaic: 0.5\n")
    assert read_run_config(good) == {"epochs": 7, "lr0": 0.005, "mosaic": 0.5}

    typo = tmp_path / "typo.yaml"
    typo.write_text("epochs: 7\nlr_0: 0.005\n")
    with pytest.raises(YolohandError, match=r"typo\.yaml: 'lr_0' is not an ultralytics train argument.*lr0"):
        read_run_config(typo)

    reserved = tmp_path / "reserved.yaml"
    reserved.write_text("data: other.yaml\n")
    with pytest.raises(YolohandError, match="'data' is set by yolohand"):
        read_run_config(reserved)

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(YolohandError, match=r"bad\.yaml:\d+: not valid YAML"):
        read_run_config(bad)

    with pytest.raises(YolohandError, match="config file not found"):
        read_run_config(tmp_path / "missing.yaml")


def test_parse_device():
    assert parse_device("cpu") == "cpu"
    assert parse_device("0") == "0"
    assert parse_device("0, 1") == "0,1"
    assert parse_device("cuda:1") == "1"
    with pytest.raises(YolohandError, match="--device"):
        parse_device("gpu")


def test_resolve_model(tmp_path):
    with pytest.raises(YolohandError, match="checkpoint not found.*never downloads"):
        resolve_model("yolo11n-seg.pt")  # a hub name: must not turn into a download
    with pytest.raises(YolohandError, match="checkpoint not found"):
        resolve_model(tmp_path / "nope.pt")
    assert resolve_model("yolo11n-seg.yaml") == "yolo11n-seg.yaml"
    assert resolve_model("yolo26s-seg.yaml") == "yolo26s-seg.yaml"
    with pytest.raises(YolohandError, match="not a segmentation model"):
        resolve_model("yolo11n.yaml")
    with pytest.raises(YolohandError, match="not an ultralytics model yaml"):
        resolve_model("nosuchmodel-seg.yaml")
    with pytest.raises(YolohandError, match="expected an ultralytics model yaml"):
        resolve_model("yolo11n-seg")


def _fake_fold(tmp_path: Path) -> Path:
    yolo = tmp_path / "yolo"
    (yolo / "folds").mkdir(parents=True)
    (yolo / "folds" / "fold0.yaml").write_text(yaml.safe_dump({"path": str(yolo), "train": "a.txt", "val": "b.txt",
                                                              "names": {0: "a"}, "channels": 1}))
    return yolo


def test_missing_fold_yaml_says_run_convert(tmp_path, capsys):
    from yolohand.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--fold", "0", "--yolo", str(tmp_path / "nothing"), "--runs", str(tmp_path / "runs")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fold0.yaml" in err and "yolohand convert" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_missing_pt_is_an_error_not_a_download(tmp_path, capsys):
    from yolohand.cli import main

    yolo = _fake_fold(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--yolo", str(yolo), "--runs", str(tmp_path / "runs"), "--model", str(tmp_path / "w.pt")])
    assert exc.value.code == 1
    assert "w.pt: checkpoint not found" in capsys.readouterr().err


def test_bad_fold_argument(tmp_path, capsys):
    from yolohand.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--fold", "one", "--yolo", str(tmp_path)])
    assert "expected a fold number" in capsys.readouterr().err


def test_existing_run_needs_force(tmp_path):
    yolo = _fake_fold(tmp_path)
    run = tmp_path / "runs" / "x" / "fold0"
    run.mkdir(parents=True)
    with pytest.raises(YolohandError, match="already exists.*--force"):
        train_fold(0, yolo=yolo, runs=tmp_path / "runs", name="x", device="cpu")
    with pytest.raises(YolohandError, match="nothing to resume"):
        train_fold(0, yolo=yolo, runs=tmp_path / "runs", name="x", device="cpu", resume=True)


# ----------------------------------------------------------------------------- the Dice metric (no training)


def _naive_dice(pred, cls, conf, gt, gt_cls, nc):
    """Straightforward reference: loop over classes, numpy only."""
    out = np.zeros(nc)
    for c in range(nc):
        g = np.zeros(gt.shape[1:], bool) if len(gt) else np.zeros(pred.shape[1:], bool)
        for m, k in zip(gt, gt_cls):
            if k == c:
                g |= m > 0.5
        p = np.zeros_like(g)
        cand = [i for i in range(len(cls)) if cls[i] == c]
        if cand:
            p = pred[max(cand, key=lambda i: conf[i])] > 0.5
        out[c] = (2 * (p & g).sum() + 1e-4) / (p.sum() + g.sum() + 1e-4)
    return out


def test_image_dice_matches_naive():
    import torch

    from yolohand.models.yolo.dice_val import image_dice

    rng = np.random.default_rng(0)
    nc, h, w = 5, 12, 10
    for _ in range(20):
        n, m = rng.integers(0, 8), rng.integers(0, 6)
        pred = (rng.random((n, h, w)) > 0.6).astype(np.uint8)
        cls = rng.integers(0, nc, n)
        conf = rng.random(n)
        gt = (rng.random((m, h, w)) > 0.5).astype(np.float32)
        gt_cls = rng.integers(0, nc, m)
        if n == 0 and m == 0:
            continue
        got = image_dice(torch.from_numpy(pred), torch.from_numpy(cls).float(), torch.from_numpy(conf).float(),
                         torch.from_numpy(gt), torch.from_numpy(gt_cls).float(), nc)
        np.testing.assert_allclose(got, _naive_dice(pred, cls, conf, gt, gt_cls, nc), rtol=1e-9)


def test_metrics_keys_and_fitness():
    from yolohand.models.yolo.dice_val import DICE_KEY as KEY
    from yolohand.models.yolo.dice_val import DiceSegmentMetrics

    assert KEY == DICE_KEY
    m = DiceSegmentMetrics()
    m.dice = 0.75
    assert m.keys[-1] == DICE_KEY
    assert m.fitness == 0.75
    assert m.results_dict[DICE_KEY] == 0.75 and m.results_dict["fitness"] == 0.75
    assert len(m.keys) == len(m.mean_results())


# ----------------------------------------------------------------------------- real training, offline

_GUARD = textwrap.dedent(
    """
    import socket, sys
    def _blocked(*a, **k):
        sys.stderr.write("NETWORK-ATTEMPT %r\\n" % (a[1:2] or a[:1],))
        raise OSError("network disabled by test_train")
    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
    from yolohand.cli import main
    main(sys.argv[1:])
    """
)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """One epoch at imgsz 64 on fold 0 of the synthetic set, in a subprocess whose sockets all fail.

    The subprocess starts with no YOLO_* variables and an empty cache folder, so yolohand's
    own offline setup (env, fonts) is what keeps ultralytics off the network. ``plots: false``
    (via --config, which this also exercises) halves the CPU time; the fonts that plotting
    needs are checked offline in test_plot_fonts_resolve_offline.
    """
    from yolohand.data.convert import convert_dataset

    tmp = tmp_path_factory.mktemp("train")
    yolo, runs = tmp / "yolo", tmp / "runs"
    convert_dataset(synth_root, yolo, folds=2, seed=0, imgsz=64, workers=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")  # fresh ultralytics config dir: no font there yet
    env["PYTHONPATH"] = str(ROOT)
    (tmp / "run.yaml").write_text("plots: false\nepochs: 5\n")  # --epochs 1 below overrides epochs
    args = ["train", "--config", str(tmp / "run.yaml"), "--fold", "0", "--yolo", str(yolo), "--runs", str(runs), "--name", "t",
            "--imgsz", "64", "--epochs", "1", "--batch", "2", "--device", "cpu", "--threads", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _GUARD, *args], env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=300)
    seconds = time.perf_counter() - t0
    return proc, runs / "t" / "fold0", seconds, tmp


@pytest.mark.slow
def test_one_epoch_writes_best_pt_and_dice(trained):
    proc, run, seconds, _ = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "weights" / "best.pt").is_file()
    with open(run / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    dice = float(rows[0][DICE_KEY])
    assert 0.0 <= dice <= 1.0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("best.pt: ") and str(run / "weights" / "best.pt") in last and "Dice" in last
    assert "torch uses 1 CPU thread" in proc.stdout + proc.stderr
    assert seconds < 90, f"one tiny epoch took {seconds:.0f} s"


@pytest.mark.slow
def test_training_never_touches_the_network(trained):
    proc, run, _, tmp = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NETWORK-ATTEMPT" not in proc.stderr + proc.stdout
    assert (tmp / "cache" / "yolohand" / "ultralytics" / "Ultralytics" / "Arial.ttf").is_file()
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert args["plots"] is False and args["epochs"] == 1  # config applied, flag overrode it
    assert args["amp"] is False and args["pretrained"] is False and args["overlap_mask"] is False
    assert args["project"] == str(run.parent) and Path(args["project"]).is_absolute()


def test_plot_fonts_resolve_offline(monkeypatch):
    """The fonts ultralytics' plots and dataset check ask for are found locally, sockets failing."""
    import socket

    from yolohand.models.yolo.offline import setup_offline

    setup_offline()

    def blocked(*a, **k):
        raise AssertionError("network access attempted")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    from ultralytics.utils.checks import check_font

    for font in ("Arial.ttf", "Arial.Unicode.ttf"):
        path = check_font(font)
        assert path is not None and Path(path).is_file()


@pytest.mark.slow
def test_best_pt_is_one_channel_and_run_not_overwritten(trained):
    """best.pt reads grayscale like the data (channels: 1); an existing run is kept without --force."""
    proc, run, _, tmp = trained
    assert proc.returncode == 0
    with pytest.raises(YolohandError, match="already exists"):
        train_fold(0, yolo=tmp / "yolo", runs=tmp / "runs", name="t", device="cpu")
    with pytest.raises(YolohandError, match="finished, nothing to resume"):
        train_fold(0, yolo=tmp / "yolo", runs=tmp / "runs", name="t", device="cpu", resume=True)
    from yolohand.models.yolo.dice_val import DiceSegmentationTrainer  # noqa: F401  (importable at module level, for DDP)
    from yolohand.models.yolo.train import _checkpoint_channels

    assert _checkpoint_channels(run / "weights" / "best.pt") == 1


def test_recalibrate_batchnorm_uses_batch_statistics():
    import torch

    from yolohand.models.yolo.dice_val import recalibrate_batchnorm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1, bias=False), torch.nn.BatchNorm2d(3, momentum=0.03))
    model.eval()
    batches = [{"img": torch.rand(4, 1, 5, 5) * 10 + 3} for _ in range(3)]
    used = recalibrate_batchnorm(model, batches, lambda b: b, batches=2)
    assert used == 2
    with torch.no_grad():
        feats = torch.cat([model[0](b["img"]) for b in batches[:2]])
    bn = model[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), feats.mean((0, 2, 3)).numpy(), rtol=1e-5)
    assert bn.momentum == 0.03 and not model.training  # restored


@pytest.mark.slow
def test_rgb_coco_like_checkpoint_fine_tunes_on_grayscale(trained):
    """A 3-channel, 80-class checkpoint (the shape of COCO's yolo11*-seg.pt) fine-tunes on channels: 1 data."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    from yolohand.models.yolo.train import _checkpoint_channels

    _, _, _, tmp = trained
    coco_like = tmp / "coco_like.pt"
    torch.save({"model": SegmentationModel("yolo11n-seg.yaml", ch=3, nc=80, verbose=False).half()}, coco_like)
    args = ["train", "--fold", "0", "--yolo", str(tmp / "yolo"), "--runs", str(tmp / "runs"), "--name", "rgb",
            "--model", str(coco_like), "--imgsz", "64", "--epochs", "1", "--batch", "2", "--device", "cpu",
            "--config", str(tmp / "run.yaml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "yolohand", *args], env=env, cwd=tmp, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3-channel images, the data 1: its first convolution is adapted" in proc.stdout
    best = tmp / "runs" / "rgb" / "fold0" / "weights" / "best.pt"
    assert _checkpoint_channels(best) == 1
    assert len(torch.load(best, map_location="cpu", weights_only=False)["model"].names) == 29
