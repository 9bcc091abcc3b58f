"""The leaderboard techniques on the model side (issue 27): sliding windows, CLAHE and gamma, multi-scale
TTA, weight averaging and ``--fold none``. Identity cases are exact; models must learn, not only run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_smp import _write_square_dataset

from yolohand.core.classes import NUM_CLASSES
from yolohand.errors import YolohandError
from yolohand.models.family import parse_model


# --------------------------------------------------------------------------- helpers
def _smp_checkpoint(path: Path, imgsz: int = 64, **meta) -> Path:
    """A random tiny smp checkpoint (Unet/resnet18, eval-mode BatchNorm statistics from random data)."""
    import torch

    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.network import build_model

    torch.manual_seed(0)
    model = build_model("Unet", "resnet18", quiet=True)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, imgsz, imgsz))  # non-trivial running statistics
    torch.save({"yolohand": checkpoint_meta("smp", "Unet", "resnet18", imgsz, multiple=32, **meta),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _image(h: int = 80, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w)).astype(np.uint8), (0, 0), 3)
    img[20:50, 30:60] = 220
    return img


def _same_crops(a, b) -> bool:
    for ca, cb in zip(a, b):
        if (ca is None) != (cb is None):
            return False
        if ca is not None and ((ca.y0, ca.x0) != (cb.y0, cb.x0) or not np.array_equal(ca.probs, cb.probs)):
            return False
    return len(a) == len(b)


def _train_square(tmp_path: Path, monkeypatch, fold, name: str, n: int, **kw):
    """A tiny Unet trained on the bright-square set (the run's root, its TrainResult)."""
    from yolohand.models.train import train_fold

    monkeypatch.chdir(tmp_path)
    root = _write_square_dataset(tmp_path / "ds", n=n, size=96)
    args = {**dict(batch=4, lr0=0.01, workers=0, degrees=0.0, scale=0.0, translate=0.0, threads=1), **kw}
    return root, train_fold(fold, model="smp:Unet:resnet18", yolo=root, runs=tmp_path / "runs", name=name, device="cpu",
                            progress=False, **args)


def _square_dice(weights: Path, images: list[Path]) -> list[float]:
    """Class 0's Dice of a checkpoint on square images (the truth: where the image is bright)."""
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    net, out = load_network(weights, device="cpu"), []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        c = net.crops([img], Settings())[0][0]
        pred = np.zeros(img.shape, bool)
        if c is not None:
            pred[c.y0 : c.y1, c.x0 : c.x1] = c.probs >= 0.5
        gt = img > 128
        out.append(float(2 * (gt & pred).sum() / (gt.sum() + pred.sum() + 1e-9)))
    return out


# --------------------------------------------------------------------------- sliding windows
def test_window_starts_cover_everything_and_end_flush():
    from yolohand.models.shared.windows import window_starts

    assert window_starts(2048, 1024, 512) == [0, 512, 1024]
    assert window_starts(100, 40, 30) == [0, 30, 60]  # the last flush with the end
    assert window_starts(64, 64, 32) == [0] and window_starts(50, 64, 32) == [0]
    for size, window, stride in [(97, 32, 7), (100, 33, 33), (512, 256, 200)]:
        starts = window_starts(size, window, stride)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[-1] + window == size and np.all(np.diff(starts) <= stride)


def test_sliding_windows_blend_to_the_plain_pass_of_a_local_network():
    """A 1x1 convolution sees no context, so every window's logits are the plain pass' own: the
    Gaussian blend must give them back (to float precision), whatever the window and stride."""
    import torch

    from yolohand.models.shared.windows import sliding_logits

    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, NUM_CLASSES, 1)
    x = torch.randn(2, 1, 70, 90)
    with torch.no_grad():
        plain = net(x)
        for window, stride, batch in [(32, 16, 1), (32, 32, 3), (48, 5, 64), (64, 40, 2)]:
            torch.testing.assert_close(sliding_logits(net, x, window, stride, batch), plain, rtol=1e-5, atol=1e-5)
        assert torch.equal(sliding_logits(net, x, 90, 45), plain)  # one window covering all: the plain pass itself


def test_one_window_covering_the_plane_is_the_plain_prediction_exactly(tmp_path):
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    ckpt = _smp_checkpoint(tmp_path / "plain.pt")
    images = [_image(), _image(64, 64, 1)]
    plain = load_network(ckpt, device="cpu")
    assert plain.window is None
    covering = load_network(ckpt, device="cpu", window=64)  # = imgsz: one window
    base = plain.crops(images, Settings())
    assert all(_same_crops(a, b) for a, b in zip(base, covering.crops(images, Settings())))
    tiled = load_network(ckpt, device="cpu", window=32, stride=16)
    assert (tiled.window, tiled.stride) == (32, 16)
    out = tiled.crops(images, Settings())
    assert len(out) == 2 and all(len(c) == NUM_CLASSES for c in out)
    assert not all(_same_crops(a, b) for a, b in zip(base, out))  # windows do change what a CNN sees


def test_the_checkpoint_window_is_predicts_default_and_zero_turns_it_off(tmp_path):
    from yolohand.models.family import load_network

    ckpt = _smp_checkpoint(tmp_path / "win.pt", window=32, stride=8)
    assert (load_network(ckpt, device="cpu").window, load_network(ckpt, device="cpu").stride) == (32, 8)
    assert load_network(ckpt, device="cpu", window=0).window is None
    assert load_network(ckpt, device="cpu", stride=16).stride == 16
    assert load_network(ckpt, device="cpu", window=64).stride == 32  # another window: its own default stride
    with pytest.raises(YolohandError, match="--window 40: this Unet/resnet18 needs a multiple of 32"):
        load_network(ckpt, device="cpu", window=40)
    with pytest.raises(YolohandError, match="--stride 64: expected 1 to the window side"):
        load_network(ckpt, device="cpu", stride=64)


def test_windowed_training_samples_are_windows_of_the_sample(tmp_path):
    import torch

    from yolohand.data.samples import build_sample_cache
    from yolohand.models.smp.data import TrainSet, ValSet

    root = _write_square_dataset(tmp_path / "ds", n=2, size=96)
    images = sorted((root / "images").rglob("*.png"))
    samples = build_sample_cache(images, tmp_path / "cache", 96, progress=False)
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        x, y = TrainSet(samples, 96, window=48)[0]
        assert x.shape == (1, 48, 48) and y.shape == (NUM_CLASSES, 48, 48)
        np.testing.assert_array_equal(y[0].numpy() > 0, x[0].numpy() > 0.5)  # the label is where the square is bright
        seen.add(float(x.sum()))
    assert len(seen) > 3  # random places
    whole = TrainSet(samples, 96, window=96)  # a window covering the sample: the whole sample, no draw
    assert whole.window is None and whole[0][0].shape == (1, 96, 96)
    v = ValSet(samples, 96)[1]
    assert v["x"].shape == (1, 96, 96) and v["y"].dtype == torch.uint8 and v["index"] == 1


def test_window_options_are_checked_before_training(tmp_path):
    from yolohand.models.shared.plan import plan_run
    from yolohand.models.yolo.train import plan_train

    root = _write_square_dataset(tmp_path / "ds", n=4, size=96)
    spec = parse_model("smp:Unet:resnet18")
    plan = plan_run(0, spec, yolo=root, runs=tmp_path / "runs", window=64)
    assert plan["args"]["imgsz"] == 96 and plan["cache"].name == "samples96"  # no imgsz: full resolution
    assert plan_run(0, spec, yolo=root, runs=tmp_path / "runs", window=64, imgsz=128)["args"]["imgsz"] == 128
    with pytest.raises(YolohandError, match="--window 128: larger than the plane the windows are cut from"):
        plan_run(0, spec, yolo=root, runs=tmp_path / "runs", window=128, imgsz=96)
    for flags, what in [(dict(window=64), "--window"), (dict(swa_epochs=2), "--swa")]:
        with pytest.raises(YolohandError, match=f"{what}: an smp/refine option"):
            plan_train(0, yolo=root, runs=tmp_path / "runs", **flags)


@pytest.mark.slow
def test_windowed_training_learns_and_predicts_by_windows(tmp_path, monkeypatch):
    """Random 64 px windows of 96 px images: the tiny Unet learns the square, validated (and then
    predicting) by sliding windows, with window and stride in the checkpoint."""
    import torch

    from yolohand.models.family import load_network

    root, res = _train_square(tmp_path, monkeypatch, 0, "w", 16, window=64, stride=32, epochs=15)
    meta = torch.load(res.best, weights_only=True)["yolohand"]
    assert (meta["imgsz"], meta["window"], meta["stride"]) == (96, 64, 32)  # no --imgsz: the images' own 96
    assert res.dice > 0.9, res.dice
    assert (load_network(res.best, device="cpu").window, load_network(res.best, device="cpu").stride) == (64, 32)
    val = [Path(p) for p in (root / "folds" / "fold0_val.txt").read_text().split()]
    start = _square_dice(_smp_checkpoint(tmp_path / "start.pt", imgsz=96, window=64, stride=32), val)
    dices = _square_dice(res.best, val)
    assert min(dices) > 0.8 and np.mean(dices) > np.mean(start) + 0.3, (start, dices)


# --------------------------------------------------------------------------- CLAHE and gamma
def test_clahe_and_gamma_parsing():
    from yolohand.data.preprocess import parse_clahe, parse_gamma

    assert parse_clahe("2") == (2.0, 8) and parse_clahe("3.5,16") == (3.5, 16) and parse_clahe([2, 4]) == (2.0, 4)
    assert parse_clahe(None) is None and parse_clahe("none") is None and parse_clahe(2.0) == (2.0, 8)
    assert parse_gamma("0.7,1.5") == (0.7, 1.5) and parse_gamma(None) is None
    for bad in ("-1", "2,0", "2,3.5", "a", "1,2,3"):
        with pytest.raises(YolohandError, match="--clahe"):
            parse_clahe(bad)
    for bad in ("1.5,0.7", "0,1", "1", "x,y"):
        with pytest.raises(YolohandError, match="--gamma"):
            parse_gamma(bad)


def test_clahe_none_is_the_image_itself_and_gamma_is_a_power():
    from yolohand.data.preprocess import apply_clahe, apply_gamma, fit_long_side

    img = _image()
    assert apply_clahe(img, None) is img and apply_gamma(img, 1.0) is img
    eq = apply_clahe(img, (2.0, 8))
    assert eq.shape == img.shape and eq.dtype == np.uint8 and not np.array_equal(eq, img)
    np.testing.assert_array_equal(eq, cv2.createCLAHE(2.0, (8, 8)).apply(img))
    x = np.arange(256, dtype=np.uint8)[None]
    np.testing.assert_array_equal(apply_gamma(x, 2.0)[0], np.round(255 * (np.arange(256) / 255) ** 2).astype(np.uint8))
    assert fit_long_side(img, 48).shape == (40, 48) and fit_long_side(img, 192).shape == (160, 192)


def test_clahe_in_the_config_is_typed_and_reaches_the_checkpoint_meta(tmp_path):
    from yolohand.models.smp.config import merge_args, read_config
    from yolohand.models.smp.train import technique_meta

    cfg = tmp_path / "run.yaml"
    cfg.write_text("clahe: 2.0\ngamma: [0.8, 1.2]\nwindow: 256\n")
    args = merge_args(read_config(cfg), {"imgsz": 512, "swa_epochs": 3})
    assert args["clahe"] == [2.0, 8] and args["gamma"] == [0.8, 1.2]
    assert technique_meta(args) == {"window": 256, "stride": 128, "clahe": [2.0, 8], "gamma": [0.8, 1.2], "swa_epochs": 3}
    assert technique_meta(merge_args({}, {"window": 512, "imgsz": 512}))["window"] is None  # one window: none
    cfg.write_text("clahe: 2.0,x\n")
    with pytest.raises(YolohandError, match=r"run.yaml: clahe '2.0,x': expected CLIP\[,TILE\]"):
        read_config(cfg)


def test_smp_checkpoint_with_clahe_predicts_through_it_without_being_told(tmp_path, monkeypatch):
    import yolohand.models.smp.predict as sp
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    calls = []
    real = sp.apply_clahe
    monkeypatch.setattr(sp, "apply_clahe", lambda im, clahe: calls.append((im.shape, clahe)) or real(im, clahe))
    images = [_image()]
    with_clahe = load_network(_smp_checkpoint(tmp_path / "c.pt", clahe=[2.0, 8]), device="cpu")
    out = with_clahe.crops(images, Settings())
    assert calls == [((64, 64), (2.0, 8))]  # on the S x S plane, with the stored clip and tiles
    plain = load_network(_smp_checkpoint(tmp_path / "p.pt"), device="cpu").crops(images, Settings())
    none = load_network(_smp_checkpoint(tmp_path / "n.pt", clahe=None), device="cpu").crops(images, Settings())
    assert _same_crops(plain[0], none[0]) and not _same_crops(plain[0], out[0])


def test_training_samples_get_the_clahe_prediction_gets(tmp_path):
    import torch

    from yolohand.data.preprocess import apply_clahe
    from yolohand.data.samples import build_sample_cache, load_sample
    from yolohand.models.shared.normalise import normalise
    from yolohand.models.smp.data import TrainSet, ValSet, augmentations

    root = _write_square_dataset(tmp_path / "ds", n=2, size=64)
    samples = build_sample_cache(sorted((root / "images").rglob("*.png")), tmp_path / "cache", 64, progress=False)
    raw, _ = load_sample(samples[0])
    want = normalise(torch.from_numpy(apply_clahe(raw, (2.0, 8))))[None]
    assert torch.equal(TrainSet(samples, 64, clahe=[2.0, 8])[0][0], want)
    assert torch.equal(ValSet(samples, 64, clahe=[2.0, 8])[0]["x"], want)
    steps = [type(t).__name__ for t in augmentations(dict(_AUG, gamma=[0.7, 1.5]), 0).transforms]
    assert steps[-1] == "RandomGamma" and "RandomGamma" not in [type(t).__name__ for t in augmentations(_AUG, 0).transforms]


_AUG = {"fliplr": 0.5, "degrees": 0.0, "scale": 0.0, "translate": 0.0, "brightness": 0.0, "contrast": 0.0, "gamma": None}


def test_refiner_meta_clahe_is_applied_to_the_full_image(tmp_path, monkeypatch):
    import torch

    import yolohand.models.refine.predict as rp
    from yolohand.core import crops as cr
    from yolohand.models.family import load_refiner
    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.network import build_model

    model = build_model("Unet", "resnet18", in_channels=2, quiet=True)
    path = tmp_path / "r.pt"
    torch.save({"yolohand": checkpoint_meta("refine", "Unet", "resnet18", 32, channels=2, margin=0.15, clahe=[3.0, 4]),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    seen = []
    real = rp.apply_clahe
    monkeypatch.setattr(rp, "apply_clahe", lambda im, clahe: seen.append((im.shape, clahe)) or real(im, clahe))
    crops: cr.ClassCrops = [None] * NUM_CLASSES
    crops[3] = cr.Crop(20, 30, np.full((30, 30), 0.9, np.float32), 0.9)
    out = load_refiner(path, device="cpu").refine(_image(), crops)
    assert seen == [((80, 96), (3.0, 4))] and out[3] is not None and out[0] is None


def test_yolo_checkpoint_with_clahe_predicts_through_it_at_full_resolution(tmp_path, monkeypatch):
    """The preprocessing rides in the model's yaml; the image is fed as training loads it (long side
    imgsz, CLAHE) and the crops still come back at the original size. Without the key: the plain path."""
    import torch

    import yolohand.data.preprocess as pre
    from yolohand.defaults import DEMO_WEIGHTS
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings
    from yolohand.models.yolo.offline import setup_offline
    from yolohand.models.yolo.trainer import PREPROCESS_KEY

    setup_offline()
    ckpt = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            ckpt[key].yaml[PREPROCESS_KEY] = {"clahe": [2.0, 8], "gamma": [0.8, 1.2]}
    path = tmp_path / "clahe.pt"
    torch.save(ckpt, path)
    calls = []
    real = pre.apply_clahe
    monkeypatch.setattr(pre, "apply_clahe", lambda im, clahe: calls.append((im.shape, clahe)) or real(im, clahe))
    img = cv2.resize(_image(), (300, 250))
    net = load_network(path, device="cpu", imgsz=128)
    assert net.clahe == (2.0, 8)
    crops = net.crops([img], Settings())[0]
    assert calls == [((107, 128), (2.0, 8))]  # ultralytics' load_image size: ceil(250 * 128 / 300)
    found = [c for c in crops if c is not None]
    assert found and all(0 <= c.y0 < c.y1 <= 250 and 0 <= c.x0 < c.x1 <= 300 for c in found)
    plain = load_network(DEMO_WEIGHTS, device="cpu", imgsz=128)
    assert plain.clahe is None
    calls.clear()
    plain.crops([img], Settings())
    assert calls == []


def test_yolo_trainer_writes_the_preprocessing_into_the_model_and_its_datasets(monkeypatch):
    """The pieces of a YOLO --clahe run: the env JSON lands in the model's yaml, and the dataset's
    preprocessing applies CLAHE to every loaded image (gamma only while augmenting), leaving the cache raw."""
    import json

    from yolohand.data.preprocess import apply_clahe
    from yolohand.models.yolo import trainer as tr

    raw = _image()[..., None].copy()
    img = tr.preprocess_image(raw, (2.0, 8), (2.0, 2.0), augment=False)
    assert img.shape == (80, 96, 1) and np.array_equal(raw[..., 0], _image())  # the cached raw image is untouched
    np.testing.assert_array_equal(img[..., 0], apply_clahe(_image(), (2.0, 8)))  # no gamma on an eval dataset
    assert not np.array_equal(tr.preprocess_image(raw, (2.0, 8), (2.0, 2.0), augment=True), img)
    assert tr.preprocess_image(raw, None, None, augment=True) is raw

    class Model:
        yaml = {"nc": 29}

    monkeypatch.setattr(tr.SegmentationTrainer, "get_model", lambda self, cfg=None, weights=None, verbose=True: Model())
    monkeypatch.setenv(tr.PREPROCESS_ENV, json.dumps({"clahe": [2.0, 8], "gamma": None}))
    model = tr.DiceSegmentationTrainer.get_model(object.__new__(tr.DiceSegmentationTrainer))
    assert tr.model_preprocess(model) == {"clahe": (2.0, 8), "gamma": None}


def test_yolo_plan_carries_clahe_and_refuses_what_it_cannot_do(tmp_path):
    import json

    from yolohand.data.convert import convert_dataset  # noqa: F401  (the fold layout below is hand-made)
    from yolohand.models.yolo.train import plan_train

    root = _write_square_dataset(tmp_path / "ds", n=4, size=64)
    plan = plan_train(0, yolo=root, runs=tmp_path / "runs", model="yolo11n-seg.yaml", clahe="2.0,4", gamma="0.8,1.2")
    assert json.loads(plan.preprocess) == {"clahe": [2.0, 4], "gamma": [0.8, 1.2]}
    assert "clahe" not in plan.args and "gamma" not in plan.args  # never handed to ultralytics
    assert json.loads(plan_train(0, yolo=root, runs=tmp_path / "runs", model="yolo11n-seg.yaml").preprocess) == \
        {"clahe": None, "gamma": None}
    with pytest.raises(YolohandError, match="--fold none .* is for the smp and refine families"):
        plan_train("none", yolo=root, runs=tmp_path / "runs")


# --------------------------------------------------------------------------- multi-scale TTA
class _Recorder:
    """A network stand-in: every class a constant crop whose value is the scale it was asked for."""

    path = None

    def __init__(self) -> None:
        self.calls: list[float | None] = []

    def crops(self, images, settings, **kw):
        from yolohand.core import crops as cr

        self.calls.append(kw.get("scale"))
        s = float(kw.get("scale", 1.0))
        return [[cr.Crop(0, 0, np.full((4, 4), s / 4, np.float32), 0.9)] + [None] * (NUM_CLASSES - 1) for _ in images]


def test_tta_scales_average_every_scale_and_scale_one_alone_is_the_plain_call():
    from yolohand.models.predict import Settings, predict_crops

    img = np.zeros((8, 8), np.uint8)
    net = _Recorder()
    plain = predict_crops([net], [img], Settings())
    assert net.calls == [None]  # no scale keyword: the call every network always got
    net.calls.clear()
    assert _same_crops(predict_crops([net], [img], Settings(tta_scales=(1.0,)))[0], plain[0]) and net.calls == [None]
    net.calls.clear()
    out = predict_crops([net], [img], Settings(tta_scales=(0.5, 1, 2)))
    assert net.calls == [0.5, None, 2.0]
    np.testing.assert_allclose(out[0][0].probs, (0.5 + 1 + 2) / 3 / 4)
    with pytest.raises(YolohandError, match="--tta-scales"):
        Settings(tta_scales=(1.0, 0.0))


def test_tta_scale_sizes_per_family(tmp_path):
    from yolohand.cli.options import parse_scales
    from yolohand.defaults import DEMO_WEIGHTS
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    assert parse_scales("0.8,1,1.25") == (0.8, 1.0, 1.25) and parse_scales(None) == (1.0,)
    smp = load_network(_smp_checkpoint(tmp_path / "s.pt", imgsz=256), device="cpu")
    assert [smp.size_at(s) for s in (1, 0.8, 1.25, 0.01)] == [256, 192, 320, 32]
    images = [_image()]
    assert _same_crops(smp.crops(images, Settings())[0], smp.crops(images, Settings(), scale=1.0)[0])
    assert len(smp.crops(images, Settings(), scale=0.5)[0]) == NUM_CLASSES
    yolo = load_network(DEMO_WEIGHTS, device="cpu", imgsz=256)
    assert [yolo.imgsz(s) for s in (1, 0.8, 1.25, 1.5)] == [256, 192, 320, 384]


# --------------------------------------------------------------------------- weight averaging, --fold none
def test_weight_average_is_the_mean_of_the_last_epochs():
    import torch

    from yolohand.models.shared.engine import WeightAverage

    class Module:
        model = torch.nn.BatchNorm1d(3)

    class Trainer:
        max_epochs, current_epoch = 5, 0

    cb, m, t = WeightAverage(3), Module(), Trainer()
    for epoch in range(5):
        t.current_epoch = epoch
        with torch.no_grad():
            m.model.weight.fill_(float(epoch))
        m.model.num_batches_tracked.fill_(epoch)
        cb.on_train_epoch_end(t, m)
    avg = cb.average(m)
    assert (cb.first, cb.count) == (3, 3)
    torch.testing.assert_close(avg["weight"], torch.full((3,), 3.0))  # epochs 3, 4, 5 hold 2, 3, 4
    assert avg["num_batches_tracked"] == 4 and avg["num_batches_tracked"].dtype == torch.int64
    resumed = WeightAverage(3)
    resumed.load_state_dict(cb.state_dict())
    torch.testing.assert_close(resumed.average(m)["weight"], avg["weight"])


def test_fold_none_trains_on_every_image_without_validation(tmp_path):
    from yolohand.cli.options import parse_fold
    from yolohand.models.shared.plan import plan_images, plan_run

    assert parse_fold("none") == "none" and parse_fold("all") is None and parse_fold("2") == 2
    root = _write_square_dataset(tmp_path / "ds", n=6, size=64)
    plan = plan_run("none", parse_model("smp:Unet:resnet18"), yolo=root, runs=tmp_path / "runs", name="x")
    every = sorted(str(p) for p in (root / "images").rglob("*.png"))
    assert sorted(map(str, plan_images(plan, "train"))) == every and plan_images(plan, "val") == []
    assert plan["run_dir"] == tmp_path / "runs" / "x" / "full" and not plan["validate"]
    with pytest.raises(YolohandError, match="--fold none trains without validation: patience 3"):
        plan_run("none", parse_model("smp:Unet:resnet18"), yolo=root, runs=tmp_path / "runs", patience=3)


@pytest.mark.slow
def test_fold_none_with_weight_averaging_learns(tmp_path, monkeypatch):
    """Every image trains, nothing validates; best.pt is the average of the last 3 epochs (BatchNorm
    re-estimated), and it finds the square on images it trained on far better than the start did."""
    import csv

    import torch

    from yolohand.defaults import DICE_KEY

    root, res = _train_square(tmp_path, monkeypatch, "none", "all", 12, imgsz=64, epochs=12, swa_epochs=3)
    assert res.run_dir.name == "full" and np.isnan(res.dice) and res.epochs == 12
    with open(res.run_dir / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13)) and all(r[DICE_KEY] == "" for r in rows)
    meta = torch.load(res.best, weights_only=True)["yolohand"]
    assert meta["averaged_epochs"] == [10, 12] and meta["swa_epochs"] == 3
    assert not (res.run_dir / "weights" / "best_epoch.pt").exists()  # no validation: no best single epoch
    images = sorted((root / "images").rglob("*.png"))
    before = np.mean(_square_dice(_smp_checkpoint(tmp_path / "start.pt", imgsz=64), images))
    after = np.mean(_square_dice(res.best, images))
    assert after > 0.8 and after > before + 0.3, (before, after)


@pytest.mark.slow
def test_weight_averaging_with_validation_keeps_the_best_epoch_aside(tmp_path, monkeypatch, capsys):
    import torch

    _, res = _train_square(tmp_path, monkeypatch, 0, "swa", 12, imgsz=64, epochs=10, swa_epochs=4)
    meta = torch.load(res.best, weights_only=True)["yolohand"]
    assert meta["averaged_epochs"] == [7, 10] and res.dice == pytest.approx(meta["averaged_dice"])
    assert meta["epoch"] == 10 and res.best_epoch == 10
    last = torch.load(res.run_dir / "weights" / "last.pt", weights_only=True)  # the running sum, for --resume
    state = next(v for k, v in last["callbacks"].items() if "WeightAverage" in k)
    assert (state["first"], state["count"]) == (7, 4)
    assert (res.run_dir / "weights" / "best_epoch.pt").is_file()
    assert res.dice > 0.9, res.dice
    assert "best.pt is the average of epochs 7-10, BatchNorm re-estimated: validation Dice" in capsys.readouterr().err


@pytest.mark.slow
def test_smp_trained_with_clahe_predicts_with_it_without_being_told(tmp_path, monkeypatch):
    import torch

    import yolohand.models.smp.predict as sp
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    _, res = _train_square(tmp_path, monkeypatch, 0, "c", 4, imgsz=32, epochs=1, batch=2, clahe="2.0,4", gamma="0.8,1.2")
    meta = torch.load(res.best, weights_only=True)["yolohand"]
    assert (meta["clahe"], meta["gamma"]) == ([2.0, 4], [0.8, 1.2])
    calls = []
    monkeypatch.setattr(sp, "apply_clahe", lambda im, clahe: calls.append(clahe) or im)
    load_network(res.best, device="cpu").crops([_image()], Settings())
    assert calls == [(2.0, 4)]


@pytest.mark.slow
def test_yolo_trained_with_clahe_predicts_with_it_without_being_told(synth_root, tmp_path, monkeypatch):
    """One epoch of yolo11n-seg at 64 px with --clahe: best.pt carries it, and predict applies it unasked."""
    import yolohand.data.preprocess as pre
    from yolohand.data.convert import convert_dataset
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings
    from yolohand.models.train import train_fold
    from yolohand.models.yolo import trainer as tr

    monkeypatch.chdir(tmp_path)
    convert_dataset(synth_root, tmp_path / "yolo", folds=2, seed=0, imgsz=64, workers=1)
    seen = []
    real = pre.apply_clahe
    for module in (pre, tr):  # the trainer's datasets and the predictor's feed
        monkeypatch.setattr(module, "apply_clahe", lambda im, clahe: seen.append((im.shape[:2], clahe)) or real(im, clahe))
    res = train_fold(0, model="yolo11n-seg.yaml", yolo=tmp_path / "yolo", runs=tmp_path / "runs", name="c", device="cpu",
                     imgsz=64, epochs=1, batch=4, workers=0, threads=1, plots=False, clahe="2.0,4")
    assert seen and all(c == (2.0, 4) and max(s) == 64 for s, c in seen)  # every loaded image, at long side 64
    assert "YOLOHAND_PREPROCESS" not in __import__("os").environ  # the run's env does not outlive it
    seen.clear()
    net = load_network(res.best, device="cpu")
    assert net.clahe == (2.0, 4)
    net.crops([np.zeros((256, 256), np.uint8)], Settings())
    assert seen == [((64, 64), (2.0, 4))]


def test_the_options_on_the_command_line(tmp_path, run_cli):
    """predict --window/--stride/--tta-scales reach the smp network; bad values are usage errors; YOLO
    refuses the smp/refine-only training options in one line."""
    root = _write_square_dataset(tmp_path / "ds", n=2, size=64)
    ckpt = _smp_checkpoint(tmp_path / "s.pt")
    out = tmp_path / "p.csv"
    code, stdout, err = run_cli(["predict", "-w", ckpt, "--source", root / "images", "--rle", out, "--device", "cpu",
                                 "--window", "32", "--stride", "16", "--tta-scales", "0.5,1", "--tta"])
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 1 + 2 * NUM_CLASSES
    code, _, err = run_cli(["predict", "-w", ckpt, "--source", root / "images", "--rle", tmp_path / "q.csv",
                            "--tta-scales", "0,1"])
    assert code == 2 and "--tta-scales" in err
    code, _, err = run_cli(["train", "--yolo", root, "--runs", tmp_path / "runs", "--swa", "3"])
    assert code == 1 and "--swa: an smp/refine option" in err
    code, _, err = run_cli(["train", "--yolo", root, "--runs", tmp_path / "runs", "--fold", "none"])
    assert code == 1 and "--fold none (training on every image, no validation) is for the smp and refine" in err
    code, _, err = run_cli(["train", "--yolo", root, "--runs", tmp_path / "runs", "--model", "smp:Unet:resnet18",
                            "--clahe", "2,x"])
    assert code == 1 and "clahe '2,x': expected CLIP[,TILE]" in err
