"""The smp family: sample cache, config rules, a tiny model that must learn, prediction outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolohand.core.classes import NUM_CLASSES
from yolohand.errors import YolohandError
from yolohand.models.family import parse_model


def _write_square_dataset(root: Path, n: int = 6, size: int = 96) -> Path:
    """A converted dataset by hand: a bright square per image, class 0's label is that square.

    Trivially learnable (the mask is where the image is bright); two folds of n/2 images.
    """
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        img = np.full((size, size), 30, np.uint8)
        y, x = (int(v) for v in rng.integers(8, size - 40, 2))
        img[y : y + 30, x : x + 30] = 220
        ident = f"ID{i:03d}"
        (root / "images" / ident).mkdir(parents=True)
        (root / "labels" / ident).mkdir(parents=True)
        path = root / "images" / ident / f"image{i}.png"
        cv2.imwrite(str(path), img)
        pts = np.array([[x, y], [x + 29, y], [x + 29, y + 29], [x, y + 29]], np.float64) / size
        (root / "labels" / ident / f"image{i}.txt").write_text("0 " + " ".join(f"{v:.6f}" for v in pts.ravel()) + "\n")
        images.append(path)
    folds = root / "folds"
    folds.mkdir()
    half = n // 2
    for k, (train, val) in enumerate([(images[:half], images[half:]), (images[half:], images[:half])]):
        (folds / f"fold{k}_train.txt").write_text("\n".join(map(str, train)) + "\n")
        (folds / f"fold{k}_val.txt").write_text("\n".join(map(str, val)) + "\n")
        (folds / f"fold{k}.yaml").write_text(f"path: {root}\ntrain: {folds / f'fold{k}_train.txt'}\n"
                                             f"val: {folds / f'fold{k}_val.txt'}\nchannels: 1\n")
    return root


def test_parse_model_specs():
    assert parse_model("smp:UnetPlusPlus:resnet34").arch == "UnetPlusPlus"
    assert parse_model("refine:Unet:resnet18").family == "refine"
    assert parse_model("yolo11n-seg.yaml").family == "yolo" and parse_model(None).family == "yolo"
    for bad in ("smp:Unet", "smp::resnet18", "smp:Unet:resnet18:x"):
        with pytest.raises(YolohandError, match="expected smp:ARCH:ENCODER"):
            parse_model(bad)


def test_config_typo_and_type_errors(tmp_path):
    from yolohand.models.smp.config import merge_args, read_config

    bad = tmp_path / "run.yaml"
    bad.write_text("epohcs: 3\n")
    with pytest.raises(YolohandError, match=r"'epohcs' is not a run argument.*did you mean 'epochs'"):
        read_config(bad)
    bad.write_text("lr0: abc\n")
    with pytest.raises(YolohandError, match=r"run.yaml: lr0: 'abc' is not a number"):
        read_config(bad)
    bad.write_text("loss: softmax\n")
    with pytest.raises(YolohandError, match="loss: 'softmax': expected one of combo"):
        read_config(bad)
    bad.write_text("epochs: 3\nbatch: : 2\n")
    with pytest.raises(YolohandError, match=r"run.yaml:2: not valid YAML"):
        read_config(bad)
    bad.write_text("loss: dice\nepochs: 7\n")
    merged = merge_args(read_config(bad), {"epochs": 2, "batch": None})
    assert merged["loss"] == "dice" and merged["epochs"] == 2 and merged["batch"] == 2  # flag > config > default
    refine = merge_args({"lr0": 0.02}, {}, family="refine")  # the refiner keeps the seed's recipe
    assert (refine["batch"], refine["lr0"], refine["bce_weight"]) == (8, 0.02, 1.0)


def test_fill_label_square(tmp_path):
    from yolohand.data.samples import fill_label

    size = 64
    pts = np.array([[3, 4], [50, 6], [40, 60]], np.int32)
    label = tmp_path / "b.txt"
    label.write_text("0 " + " ".join(f"{v:.6f}" for v in (pts / size).ravel()) + "\n")
    ref = np.zeros((size, size), np.uint8)
    cv2.fillPoly(ref, [pts], 1)
    np.testing.assert_array_equal(fill_label(label, size, (size, size))[0], ref.astype(bool))
    # downscaled by 4: a pixel is on where at least half of its 4x4 block of the full-size fill is
    blocks = ref.reshape(size // 4, 4, size // 4, 4).mean(axis=(1, 3))
    np.testing.assert_array_equal(fill_label(label, size // 4, (size, size))[0], blocks >= 0.5)


def test_sample_cache_round_trip_and_reuse(tmp_path):
    from yolohand.data.samples import build_sample_cache, load_sample, make_sample

    root = _write_square_dataset(tmp_path / "ds", n=2, size=64)
    images = sorted((root / "images").rglob("*.png"))
    samples = build_sample_cache(images, tmp_path / "cache", 32, progress=False)
    for s in samples:
        im, masks = load_sample(s, 32)
        ref_im, ref_masks = make_sample(s.image, 32)
        np.testing.assert_array_equal(im, ref_im)
        np.testing.assert_array_equal(masks.transpose(2, 0, 1).astype(bool), ref_masks)
        assert masks.shape == (32, 32, NUM_CLASSES) and s.mask_npy.stat().st_size < 32 * 32 * NUM_CLASSES / 4
    stamp = samples[0].mask_npy.stat().st_mtime_ns
    build_sample_cache(images, tmp_path / "cache", 32, progress=False)
    assert samples[0].mask_npy.stat().st_mtime_ns == stamp  # fresh entries are reused


@pytest.mark.slow
def test_tiny_unet_learns_a_square_and_predicts_it(tmp_path, monkeypatch):
    """A tiny Unet must learn 'the bright square is class 0' well past its untrained start."""
    from yolohand.core.rle import runs_to_mask
    from yolohand.core.submission import iter_submission
    from yolohand.models.predict import predict_to_submission
    from yolohand.models.train import train_fold

    monkeypatch.chdir(tmp_path)
    root = _write_square_dataset(tmp_path / "ds", n=16, size=96)
    res = train_fold(0, model="smp:Unet:resnet18", yolo=root, runs=tmp_path / "runs", name="sq", device="cpu",
                     progress=False, imgsz=64, epochs=15, batch=4, lr0=0.01, workers=0, degrees=0.0, scale=0.0,
                     translate=0.0, threads=1)
    assert res.best.is_file() and (res.run_dir / "weights" / "last.pt").is_file()
    assert res.dice > 0.9, res.dice  # 28 empty classes predicted empty + the square found
    rows = (res.run_dir / "results.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train/loss,val/loss,metrics/dice(M)") and len(rows) == 16
    assert 1 <= res.best_epoch <= 15
    out = tmp_path / "pred.csv"
    val = [Path(p) for p in (root / "folds" / "fold0_val.txt").read_text().split()]
    src = tmp_path / "list.txt"
    src.write_text("\n".join(map(str, val)))
    predict_to_submission(out, source=src, weights=[res.best], device="cpu", progress=False)
    dices = []
    for name, runs in iter_submission(out, shape=(96, 96)):
        img = cv2.imread(str(next(p for p in val if p.name == name)), cv2.IMREAD_GRAYSCALE)
        gt, pred = img > 128, runs_to_mask(runs[0], img.shape)
        dices.append(2 * (gt & pred).sum() / (gt.sum() + pred.sum()))
    assert len(dices) == len(val) and min(dices) > 0.8, dices  # untrained: ~0.1-0.3


def test_pretrained_start_loads_the_same_weights_and_refuses_another_model(tmp_path):
    import torch

    from yolohand.models.smp.model import build_model, checkpoint_meta, load_pretrained

    src = build_model("Unet", "resnet18", quiet=True)
    path = tmp_path / "best.pt"
    torch.save({"yolohand": checkpoint_meta("smp", "Unet", "resnet18", 64),
                "state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = build_model("Unet", "resnet18", quiet=True)
    load_pretrained(dst, path, "smp", "Unet", "resnet18")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(YolohandError, match=r"expected a smp:FPN:resnet18 checkpoint, got smp:Unet:resnet18"):
        load_pretrained(build_model("FPN", "resnet18", quiet=True), path, "smp", "FPN", "resnet18")
    with pytest.raises(YolohandError, match="smp encoder 'resnet181': unknown.*did you mean 'resnet18'"):
        build_model("Unet", "resnet181", quiet=True)


@pytest.mark.slow
def test_ctrl_c_during_smp_training_exits_130_and_resume_continues(tmp_path):
    """SIGINT mid-run: one `interrupted` line, exit 130, no traceback; last.pt is left and --resume finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    root = _write_square_dataset(tmp_path / "ds", n=4, size=64)
    cmd = [sys.executable, "-m", "yolohand", "train", "--fold", "0", "--yolo", str(root), "--runs", str(tmp_path / "runs"),
           "--model", "smp:Unet:resnet18", "--imgsz", "32", "--batch", "2", "--device", "cpu", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*cmd, "--epochs", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    results = tmp_path / "runs" / "train" / "fold0" / "results.csv"
    deadline = time.time() + 240
    last = results.parent / "weights" / "last.pt"
    while time.time() < deadline and not (last.is_file() and results.is_file()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err.splitlines()[-1] and "Traceback" not in err
    done = int(torch.load(last, weights_only=True)["yolohand"]["epoch"])  # rows may run ahead of last.pt
    resumed = subprocess.run([*cmd, "--epochs", str(done + 1), "--resume"], capture_output=True, text=True, env=env, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = [int(r.split(",")[0]) for r in results.read_text().splitlines()[1:]]
    assert epochs == list(range(1, done + 2)), epochs  # the resumed epoch replaced any row written after last.pt


def test_run_folder_rules_are_the_yolo_ones(tmp_path):
    """A folder that is not a run is never replaced; a run without last.pt is; a full run needs --force."""
    from yolohand.models.smp.train import plan_run

    root = _write_square_dataset(tmp_path / "ds", n=2, size=64)
    spec, run = parse_model("smp:Unet:resnet18"), tmp_path / "runs" / "x" / "fold0"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("my own notes")
    with pytest.raises(YolohandError, match="is not a training run; not replaced, even with --force"):
        plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x", force=True)
    (run / "notes.txt").unlink()
    (run / "weights").mkdir()
    assert plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x")["replace"]  # interrupted before last.pt
    (run / "weights" / "last.pt").write_bytes(b"x")
    with pytest.raises(YolohandError, match="run already exists"):
        plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x")
    assert plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x", force=True)["replace"]
    with pytest.raises(YolohandError, match="last.pt: not a readable checkpoint .* start the run over with --force"):
        plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x", resume=True)  # b"x" is no checkpoint (issue 28)
    import torch

    from yolohand.models.shared.checkpoint import checkpoint_meta

    torch.save({"yolohand": checkpoint_meta("smp", "Unet", "resnet18", 64), "state_dict": {}, "optimizer_states": []},
               run / "weights" / "last.pt")
    assert not plan_run(0, spec, yolo=root, runs=tmp_path / "runs", name="x", resume=True)["replace"]


def _train_cli(root: Path, runs: Path, name: str, device: str, *extra: str):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "yolohand", "train", "--fold", "0", "--yolo", str(root), "--runs", str(runs), "--name", name,
           "--model", "smp:Unet:resnet18", "--imgsz", "64", "--batch", "4", "--device", device, "--threads", "1", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("LOCAL_RANK", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_two_cpu_processes_learn_what_one_does(tmp_path):
    """--device cpu:2: Lightning DDP over gloo, the batch split over the two processes, the validation
    images scored once each (7 images: the sampler pads one shard by repeating an image)."""
    import csv

    from yolohand.defaults import DICE_KEY

    root = _write_square_dataset(tmp_path / "ds", n=14, size=96)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 12\nlr0: 0.01\nworkers: 0\ndegrees: 0\nscale: 0\ntranslate: 0\n")
    dice = {}
    for device in ("cpu", "cpu:2"):
        proc = _train_cli(root, tmp_path / "runs", device.replace(":", ""), device, "--config", str(cfg))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("best.pt:") == 1, proc.stdout  # rank 0 alone reports
        with open(tmp_path / "runs" / device.replace(":", "") / "fold0" / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
        dice[device] = max(float(r[DICE_KEY]) for r in rows)
    assert dice["cpu"] > 0.9 and abs(dice["cpu:2"] - dice["cpu"]) < 0.03, dice


def test_cpu_processes_must_divide_the_batch_and_yolo_refuses_them(tmp_path):
    from yolohand.models.shared.devices import cpu_processes, devices_of
    from yolohand.models.smp.train import plan_run, run_plan
    from yolohand.models.yolo.train import parse_device

    assert (cpu_processes("cpu:3"), cpu_processes("cpu"), cpu_processes(None), devices_of("cpu:2")) == (3, 1, 1, None)
    with pytest.raises(YolohandError, match="expected cpu:N with N >= 1"):
        cpu_processes("cpu:0")
    with pytest.raises(YolohandError, match="ultralytics trains in one CPU process"):
        parse_device("cpu:2")
    root = _write_square_dataset(tmp_path / "ds", n=2, size=64)
    plan = plan_run(0, parse_model("smp:Unet:resnet18"), yolo=root, runs=tmp_path / "runs", batch=3)
    with pytest.raises(YolohandError, match="--batch 3: the batch is the total over 2 processes; use a multiple of 2"):
        run_plan(plan, lambda plan, devices: None, device="cpu:2")
