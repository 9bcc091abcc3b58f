"""The ultralytics contract: everything yolohand overrides, patches or copies, checked by name.

yolohand subclasses ultralytics' trainer, validator, metrics and predictor (yolohand/models/yolo/),
overrides private methods, patches two module globals and copies the letterbox rule. An
ultralytics release that moves any of these fails a test here, named after what moved, instead
of failing deep inside a training run. CI runs this file against the lowest and the newest
ultralytics of the range pyproject.toml declares (.ci/run).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolohand.models.yolo.offline import setup_offline

setup_offline()

import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics.engine import trainer as engine_trainer  # noqa: E402
from ultralytics.models.yolo.detect import DetectionValidator  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationPredictor, SegmentationTrainer, SegmentationValidator  # noqa: E402
from ultralytics.utils import callbacks as ul_callbacks  # noqa: E402
from ultralytics.utils import ops  # noqa: E402
from ultralytics.utils.metrics import SegmentMetrics  # noqa: E402

from yolohand.core.classes import NUM_CLASSES  # noqa: E402
from yolohand.models.yolo import postprocess as pp  # noqa: E402
from yolohand.models.yolo import trainer as yt  # noqa: E402
from yolohand.models.yolo.metrics import DiceSegmentMetrics  # noqa: E402
from yolohand.models.yolo.predictor import SoftSegPredictor, has_mask, letterbox_of  # noqa: E402
from yolohand.models.yolo.val import DiceSegmentationValidator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _params(fn) -> tuple[str, ...]:
    """Parameter names after ``self``."""
    return tuple(inspect.signature(fn).parameters)[1:]


# ----------------------------------------------------------------------------- the declared range


def _declared_range() -> str:
    """The ultralytics specifier of pyproject.toml's dependencies, e.g. ``>=8.4.1,<8.5``."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'"ultralytics([^"]*)"', text)
    assert found, "pyproject.toml declares no ultralytics dependency"
    return found.group(1).strip()


def test_installed_ultralytics_is_in_the_declared_range():
    from packaging.specifiers import SpecifierSet

    spec = _declared_range()
    assert ultralytics.__version__ in SpecifierSet(spec), f"ultralytics {ultralytics.__version__} outside {spec}"


# ----------------------------------------------------------------------------- overridden methods

#: (ultralytics class, method, accepted parameter lists after self) for every method yolohand
#: overrides. ``_setup_train`` took ``world_size`` up to 8.4.103; our override forwards *args.
OVERRIDDEN = [
    (SegmentationTrainer, "__init__", [("cfg", "overrides", "_callbacks")]),
    (SegmentationTrainer, "_setup_train", [(), ("world_size",)]),
    (SegmentationTrainer, "validate", [()]),
    (SegmentationTrainer, "get_validator", [()]),
    (SegmentationValidator, "__init__", [("dataloader", "save_dir", "args", "_callbacks")]),
    (SegmentationValidator, "init_metrics", [("model",)]),
    (SegmentationValidator, "get_desc", [()]),
    (SegmentationValidator, "_process_batch", [("preds", "batch")]),
    (SegmentationValidator, "gather_stats", [()]),
    (SegmentationValidator, "get_stats", [()]),
    (SegmentationPredictor, "postprocess", [("preds", "img", "orig_imgs")]),
    (SegmentationPredictor, "construct_result", [("pred", "img", "orig_img", "img_path", "proto")]),
    (SegmentMetrics, "__init__", [("names",)]),
    (SegmentMetrics, "mean_results", [()]),
    (SegmentMetrics, "class_result", [("i",)]),
]


@pytest.mark.parametrize(("cls", "name", "accepted"), OVERRIDDEN, ids=[f"{c.__name__}.{n}" for c, n, _ in OVERRIDDEN])
def test_overridden_method_signature(cls, name, accepted):
    method = getattr(cls, name, None)
    assert method is not None, f"ultralytics {cls.__name__}.{name} is gone"
    assert _params(method) in accepted, f"ultralytics {cls.__name__}.{name}{inspect.signature(method)} changed"


def test_overridden_properties_are_still_properties():
    for name in ("keys", "fitness", "results_dict"):
        assert isinstance(inspect.getattr_static(SegmentMetrics, name), property), f"SegmentMetrics.{name}"


def test_process_batch_is_called_once_per_image_by_update_metrics():
    """The Dice validator scores in ``_process_batch``: ultralytics must call it per image with (predn, pbatch)."""
    src = inspect.getsource(DetectionValidator.update_metrics)
    assert re.search(r"for si, pred in enumerate\(preds\)", src) and "self._process_batch(predn, pbatch)" in src


def test_patched_module_globals_exist_and_are_used():
    """check_amp (it downloads a checkpoint) and add_integration_callbacks are replaced where ultralytics reads them."""
    sites = [site for site in yt.AMP_CHECK_SITES if hasattr(__import__(site[0], fromlist=["x"]), site[1])]
    assert ("ultralytics.engine.trainer", "check_amp") in sites, "ultralytics.engine.trainer.check_amp moved"
    assert re.search(r"\bcheck_amp\(self\.model\)", inspect.getsource(engine_trainer.BaseTrainer._setup_train)), \
        "BaseTrainer._setup_train no longer calls check_amp(self.model): the offline AMP patch misses it"
    assert hasattr(ul_callbacks, "add_integration_callbacks")
    assert "callbacks.add_integration_callbacks(self)" in inspect.getsource(engine_trainer.BaseTrainer.__init__)


def test_callback_events_and_trainer_state_we_read():
    events = ul_callbacks.get_default_callbacks()
    for event in (*yt._CORE_EVENTS, "on_model_save"):
        assert event in events, f"ultralytics callback event {event} is gone"
    src = inspect.getsource(engine_trainer.BaseTrainer)
    assert 'self.run_callbacks("on_model_save")' in src
    assert "self.best_fitness == self.fitness" in inspect.getsource(engine_trainer.BaseTrainer.save_model), \
        "best.pt is no longer written on best_fitness == fitness: note_best_epoch's rule is stale"
    for attr in ("self.best_fitness", "self.metrics", "self.csv", "self.best", "self.ema", "self.amp"):
        assert attr in src, f"BaseTrainer no longer has {attr}"


def test_amp_patch_covers_the_call_site_and_restores_it():
    original = engine_trainer.check_amp
    with yt._patched_amp_check() as patched:
        assert "ultralytics.engine.trainer.check_amp" in patched
        assert engine_trainer.check_amp is yt.offline_check_amp
    assert engine_trainer.check_amp is original


def test_metrics_contract():
    m = DiceSegmentMetrics()
    m.dice = 0.5
    assert len(m.keys) == len(m.mean_results()) and m.keys[-1] == "metrics/dice(M)"
    assert m.results_dict["fitness"] == 0.5


# ----------------------------------------------------------------------------- letterbox


def _letterbox_placement(orig: tuple[int, int], new_shape, auto: bool) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(input shape, (top, left, h, w) of the image content) as ultralytics' LetterBox lays out a white image."""
    from ultralytics.data.augment import LetterBox

    img = np.full((*orig, 3), 255, np.uint8)
    out = LetterBox(new_shape, auto=auto, stride=32)(image=img)
    rows, cols = np.nonzero(out[..., 0] == 255)
    return out.shape[:2], (int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(20, 700), w=st.integers(20, 700), ih=st.integers(1, 12), iw=st.integers(1, 12))
def test_letterbox_matches_ultralytics_letterbox(h, w, ih, iw):
    """postprocess.Letterbox puts the content where ultralytics' LetterBox does (fixed input shape)."""
    shape, (top, left, ch, cw) = _letterbox_placement((h, w), (32 * ih, 32 * iw), auto=False)
    lb = pp.Letterbox.from_shapes((h, w), shape)
    assert lb.pad == (top, left) and lb.content == (ch, cw)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(20, 700), w=st.integers(20, 700), ih=st.integers(1, 12), iw=st.integers(1, 12))
def test_predictor_letterbox_is_from_shapes_on_a_fixed_input(h, w, ih, iw):
    imgsz = (32 * ih, 32 * iw)
    assert letterbox_of((h, w), imgsz, imgsz) == pp.Letterbox.from_shapes((h, w), imgsz)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(20, 700), w=st.integers(20, 700), imgsz=st.sampled_from([64, 96, 128, 256]))
def test_predictor_letterbox_matches_ultralytics_minimum_rectangle(h, w, imgsz):
    """``auto=True`` (the predictor's minimum rectangle for same-shape batches): the scale comes from imgsz."""
    shape, (top, left, ch, cw) = _letterbox_placement((h, w), imgsz, auto=True)
    lb = letterbox_of((h, w), shape, (imgsz, imgsz))
    assert lb.pad == (top, left) and lb.content == (ch, cw)


def test_minimum_rectangle_needs_the_imgsz_scale():
    """The case hypothesis found: from the padded input's own ratio the content would be a pixel narrower."""
    shape, (top, left, ch, cw) = _letterbox_placement((129, 255), 64, auto=True)
    assert shape == (32, 64) and (top, left, ch, cw) == (0, 0, 32, 64)
    assert letterbox_of((129, 255), shape, (64, 64)).content == (32, 64)
    assert pp.Letterbox.from_shapes((129, 255), shape).content == (32, 63)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(20, 3000), w=st.integers(20, 3000), ih=st.integers(1, 40), iw=st.integers(1, 40),
       seed=st.integers(0, 2**16))
def test_letterbox_boxes_agree_with_scale_boxes(h, w, ih, iw, seed):
    """``Letterbox.boxes_to_orig`` = ``ops.scale_boxes`` (within the rounding older releases skip, < 1 input px)."""
    inp = (32 * ih, 32 * iw)
    lb = pp.Letterbox.from_shapes((h, w), inp)
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 1, (5, 2, 2)) * np.array(inp[::-1])  # 5 boxes x 2 corners x (x, y), input pixels
    xyxy = np.concatenate([corners.min(1), corners.max(1)], 1)
    theirs = ops.scale_boxes(inp, torch.from_numpy(xyxy.copy()), (h, w)).numpy()
    ours = lb.boxes_to_orig(xyxy)
    tol = 1.0 / min(lb.gain) + 1e-6  # one input pixel, in original pixels
    np.testing.assert_allclose(ours, theirs, atol=tol)


# ----------------------------------------------------------------------------- predictor


def test_construct_result_drops_detections_with_an_empty_mask():
    """Two detections of one class: the more confident has an empty mask -> it is dropped, top-1 takes the other."""
    m, mh, mw = 2, 16, 16
    proto = torch.zeros((m, mh, mw))
    proto[0] = 1.0  # coefficient +1 on proto 0 -> logit 1 everywhere
    pred = torch.tensor([
        [8.0, 8.0, 40.0, 40.0, 0.9, 3.0, -1.0, 0.0],  # empty mask (logit -1): ultralytics drops it
        [10.0, 10.0, 30.0, 30.0, 0.5, 3.0, 1.0, 0.0],
        [0.0, 0.0, 64.0, 64.0, 0.4, 7.0, 2.0, 0.0],
    ])
    img = torch.zeros((1, 3, 64, 64))
    orig = np.zeros((128, 128), np.uint8)
    inst = SoftSegPredictor.construct_result(None, pred.clone(), img, orig, "x.png", proto)
    assert len(inst) == 2 and inst.conf.tolist() == pytest.approx([0.5, 0.4]) and inst.cls.tolist() == [3, 7]
    assert inst.coef.shape == (2, m) and inst.protos.shape == (m, mh, mw) and inst.scores is None
    assert inst.letterbox == pp.Letterbox.from_shapes((128, 128), (64, 64))
    crops = pp.class_crops(inst, "top1")
    assert crops[3] is not None and crops[3].conf == pytest.approx(0.5)
    assert has_mask(proto, pred[:, 6:8], pred[:, :4], (64, 64)).tolist() == [False, True, True]


def test_construct_result_inputs(tmp_path, synth_root):
    """What ultralytics hands construct_result: (N, 6 + M [+ C]) preds in input pixels, (M, mh, mw) protos."""
    from test_predict import make_checkpoint

    from yolohand.data.layout import find_images, read_image
    from yolohand.models.yolo.predict import load_network

    seen = []

    class Spy(SoftSegPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):  # noqa: D102
            conf, cls = pred[:, 4].tolist(), pred[:, 5].tolist()
            seen.append((pred.shape, tuple(img.shape), orig_img.shape, proto.shape, conf, cls))
            return super().construct_result(pred, img, orig_img, img_path, proto)

    net = load_network(make_checkpoint(tmp_path / "a.pt", 0), conf=0.05, device="cpu")
    images = [read_image(r.image_path) for r in find_images(synth_root / "test" / "DCM")]
    out = list(net.model.predict(source=images, predictor=Spy, stream=False, **net.args))
    assert len(out) == len(images) == len(seen)
    assert any(len(c) for *_, c, _ in seen)  # the biased random model detects
    for (pshape, ishape, oshape, prshape, conf, cls), im in zip(seen, images):
        assert len(pshape) == 2 and len(prshape) == 3 and len(ishape) == 4
        assert pshape[1] in (6 + prshape[0], 6 + prshape[0] + NUM_CLASSES)
        assert oshape[:2] == im.shape[:2]
        assert all(0.05 <= c <= 1 for c in conf) and conf == sorted(conf, reverse=True)  # NMS order, --conf applied
        assert all(k == int(k) and 0 <= k < NUM_CLASSES for k in cls)
        assert prshape[1] * 4 == ishape[2] and prshape[2] * 4 == ishape[3]  # protos at input / 4


def test_one_network_call_is_one_forward_pass(tmp_path, synth_root):
    """--batch: the images of one call go through the network as one batch."""
    from test_predict import make_checkpoint

    from yolohand.data.layout import find_images, read_image
    from yolohand.models.yolo.predict import load_network

    net = load_network(make_checkpoint(tmp_path / "b.pt", 1), conf=0.05, device="cpu", batch=4)
    images = [read_image(r.image_path) for r in find_images(synth_root / "test" / "DCM")]
    images = (images * 2)[:4]
    batches = []
    net(images[:1])  # builds the predictor
    handle = net.model.predictor.model.model.register_forward_pre_hook(lambda mod, args: batches.append(args[0].shape[0]))
    try:
        assert len(net(images)) == 4
    finally:
        handle.remove()
    assert batches == [4]


def test_half_needs_cuda(tmp_path):
    from yolohand.errors import YolohandError
    from yolohand.models.yolo.predict import check_half, load_network

    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(YolohandError, match="--half needs a CUDA GPU.*--device cpu"):
        load_network(tmp_path / "w.pt", device="cpu", half=True)
    if not torch.cuda.is_available():
        with pytest.raises(YolohandError, match="--half needs a CUDA GPU.*has none"):
            check_half(None)
        with pytest.raises(YolohandError, match="--half needs a CUDA GPU"):
            check_half("0")


# ----------------------------------------------------------------------------- validator and trainer, for real


@pytest.fixture(scope="module")
def fold64(synth_root, tmp_path_factory) -> Path:
    """fold0.yaml of synth_root converted at imgsz 64 (2 folds)."""
    from yolohand.data.convert import convert_dataset

    yolo = tmp_path_factory.mktemp("contract") / "yolo"
    convert_dataset(synth_root, yolo, folds=2, seed=0, imgsz=64, workers=1)
    return yolo / "folds" / "fold0.yaml"


def _val_images(fold: Path) -> int:
    import yaml

    data = yaml.safe_load(fold.read_text())
    val = Path(data["val"])
    val = val if val.is_absolute() else Path(data.get("path", fold.parent)) / val
    return len([line for line in val.read_text().splitlines() if line.strip()])


@pytest.mark.slow
def test_dice_validator_scores_every_validation_image(tmp_path, fold64):
    from test_predict import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "v.pt", 2)
    v = DiceSegmentationValidator(args=dict(data=str(fold64), imgsz=64, batch=2, device="cpu", plots=False,
                                            split="val", save_json=False, project=str(tmp_path), name="val"))
    stats = v(model=str(ckpt))
    n = _val_images(fold64)
    assert n > 0 and v.dice_images == n == len(v.dataloader.dataset)
    assert 0.0 <= stats["metrics/dice(M)"] <= 1.0 and v.metrics.dice_per_class.shape == (NUM_CLASSES,)


@pytest.mark.slow
def test_setup_train_on_cpu_runs_the_offline_amp_check(tmp_path, fold64, monkeypatch):
    """Force ultralytics' AMP branch on CPU (amp=True): our offline check answers, nothing is downloaded."""
    calls = []

    def spy(model, *args, **kwargs):
        calls.append(engine_trainer.check_amp is spy)
        return yt.amp_allowed(next(model.parameters()).device.type)

    monkeypatch.setattr(yt, "offline_check_amp", spy)
    before = torch.get_num_threads()
    trainer = yt.DiceSegmentationTrainer(overrides=dict(
        model="yolo11n-seg.yaml", data=str(fold64), imgsz=64, batch=2, epochs=1, device="cpu", amp=True,
        pretrained=False, plots=False, workers=0, project=str(tmp_path), name="amp", exist_ok=True))
    try:
        extra = (trainer.world_size,) if "world_size" in _params(SegmentationTrainer._setup_train) else ()
        trainer._setup_train(*extra)
    finally:
        torch.set_num_threads(before)
    assert calls == [True] and trainer.amp is False
    assert engine_trainer.check_amp is not spy  # restored
    assert isinstance(trainer.validator, DiceSegmentationValidator)
    assert "metrics/dice(M)" in trainer.metrics
