"""`yolohand import`: users' own smp models (the baseline's `torch.save(model)` / its state_dict) as
yolohand smp checkpoints whose predictions equal the original model's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolohand.core.crops import probs_to_crops
from yolohand.errors import YolohandError
from yolohand.models.shared.checkpoint import parse_model, read_checkpoint

IMGSZ = 64


def _baseline_model(classes: int = 29, **kwargs):
    """The baseline's model: 3 input channels, 29 logits; BatchNorm statistics moved off their
    initial values so that eval mode (running stats) and train mode (batch stats) differ."""
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=classes, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """(model, whole-model pickle, state_dict file, a gray test image file) written the baseline's way."""
    import torch

    torch.set_num_threads(1)
    where = tmp_path_factory.mktemp("baseline")
    model = _baseline_model()
    whole, state = where / "model.pth", where / "state_dict.pth"
    torch.save(model, whole)
    torch.save(model.state_dict(), state)
    from yolohand.models.smp.importer import verification_image

    gray = verification_image(None, 96)[0][:, 8:88]  # 96 x 80: not square, not the input size
    image = where / "images" / "ID001" / "image1661130828152.png"
    image.parent.mkdir(parents=True)
    cv2.imwrite(str(image), gray)
    return model, whole, state, image


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _original_crops(model, gray: np.ndarray) -> list:
    """The original model's class crops as yolohand's predict makes them from logits: the
    baseline's preprocessing (3 equal channels, INTER_AREA to IMGSZ, / 255), bilinear upsampling
    to the image's size, sigmoid, the box of p >= 1/255 per class."""
    import torch
    import torch.nn.functional as F

    small = cv2.resize(np.repeat(gray[..., None], 3, axis=2), (IMGSZ, IMGSZ), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(small.astype(np.float32).transpose(2, 0, 1) / 255.0)[None]
    with torch.inference_mode():
        logits = model.eval()(x)
    up = F.interpolate(logits, size=gray.shape, mode="bilinear", align_corners=False)
    return probs_to_crops(torch.sigmoid(up)[0].numpy())


def test_pickled_model_round_trip_predicts_what_the_original_does(baseline, tmp_path):
    import torch

    from yolohand.data.layout import read_image
    from yolohand.models.family import load_network
    from yolohand.models.predict import Settings, predict_crops
    from yolohand.models.smp.importer import import_checkpoint

    model, whole, _, image = baseline
    before = _sha(whole)
    dst = tmp_path / "imported.pt"
    res = import_checkpoint(whole, dst, imgsz=IMGSZ, trust_pickle=True)
    assert (res.arch, res.encoder, res.channels, res.imgsz, res.mean, res.std) == ("Unet", "resnet18", 3, IMGSZ, 0.0, 1.0)
    assert res.max_dp <= 1e-5 and res.params == sum(p.numel() for p in model.parameters())
    assert _sha(whole) == before
    meta = read_checkpoint(dst)["yolohand"]  # weights_only=True
    assert {k: meta[k] for k in ("family", "arch", "encoder", "imgsz", "channels", "mean", "std", "model_kwargs")} == {
        "family": "smp", "arch": "Unet", "encoder": "resnet18", "imgsz": IMGSZ, "channels": 3, "mean": 0.0, "std": 1.0,
        "model_kwargs": {}}
    # Through predict's library path, at the image's own size, against the original model.
    gray = read_image(image)
    net = load_network(dst, device="cpu")
    ours, theirs = predict_crops([net], [gray], Settings())[0], _original_crops(model, gray)
    assert [c and (c.y0, c.x0, c.probs.shape) for c in ours] == [c and (c.y0, c.x0, c.probs.shape) for c in theirs]
    assert max(np.abs(a.probs - b.probs).max() for a, b in zip(ours, theirs) if a is not None) <= 1e-5
    assert any(c is not None and (c.probs >= 0.5).any() for c in theirs)
    # The BatchNorm statistics matter: train mode (batch statistics) would predict otherwise.
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        assert (model.train()(x) - model.eval()(x)).abs().max() > 1e-3


def test_state_dict_needs_model_and_must_fit_it(baseline, tmp_path):
    from yolohand.models.smp.importer import import_checkpoint

    _, _, state, _ = baseline
    before = _sha(state)
    dst = tmp_path / "imported.pt"
    with pytest.raises(YolohandError, match=r"state_dict\.pth: a state_dict holds weights only; pass --model smp:ARCH:ENCODER"):
        import_checkpoint(state, dst, imgsz=IMGSZ)
    with pytest.raises(YolohandError, match=r"state_dict\.pth: its weights do not fit smp:FPN:resnet18 .*missing key"):
        import_checkpoint(state, dst, imgsz=IMGSZ, spec=parse_model("smp:FPN:resnet18"))
    with pytest.raises(YolohandError, match=r"do not fit smp:Unet:resnet18 with 1 input channel.*shape mismatch.*encoder\.conv1\.weight"):
        import_checkpoint(state, dst, imgsz=IMGSZ, spec=parse_model("smp:Unet:resnet18"), channels=1)
    assert not dst.exists()
    res = import_checkpoint(state, dst, imgsz=IMGSZ, spec=parse_model("smp:Unet:resnet18"))
    assert res.source == "a state_dict" and res.max_dp <= 1e-5 and dst.is_file()
    # Per-channel normalisation (ImageNet's), honoured by yolohand's prediction as by the reference.
    imagenet = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    res = import_checkpoint(state, tmp_path / "imagenet.pt", imgsz=IMGSZ, spec=parse_model("smp:Unet:resnet18"), **imagenet)
    assert res.max_dp <= 1e-5
    meta = read_checkpoint(tmp_path / "imagenet.pt")["yolohand"]
    assert (meta["mean"], meta["std"]) == (imagenet["mean"], imagenet["std"])
    assert _sha(state) == before


def test_one_channel_model_is_recognised_as_such(tmp_path):
    import segmentation_models_pytorch as smp
    import torch

    from yolohand.models.smp.importer import import_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    src = tmp_path / "gray.pth"
    torch.save(smp.UnetPlusPlus("resnet18", encoder_weights=None, in_channels=1, classes=29), src)
    res = import_checkpoint(src, tmp_path / "gray.pt", imgsz=IMGSZ, trust_pickle=True, mean=0.5, std=0.25)
    assert (res.arch, res.channels, res.max_dp <= 1e-5) == ("UnetPlusPlus", 1, True)


def test_model_options_travel_with_the_checkpoint_and_the_check_catches_a_lost_one(tmp_path, monkeypatch):
    """decoder_interpolation changes forward() but no weight: without model_kwargs the rebuilt model
    would differ, and the round-trip check refuses to write it."""
    import torch

    from yolohand.models.smp import importer

    torch.set_num_threads(1)
    src = tmp_path / "bilinear.pth"
    torch.save(_baseline_model(decoder_interpolation="bilinear"), src)
    res = importer.import_checkpoint(src, tmp_path / "a.pt", imgsz=IMGSZ, trust_pickle=True)
    assert res.model_kwargs == {"decoder_interpolation": "bilinear"} and res.max_dp <= 1e-5
    assert read_checkpoint(tmp_path / "a.pt")["yolohand"]["model_kwargs"] == {"decoder_interpolation": "bilinear"}
    monkeypatch.setattr(importer, "model_kwargs", lambda model: {})
    with pytest.raises(YolohandError, match=r"bilinear\.pth: the imported checkpoint predicts .* differently from the "
                                            r"original model \(max \|dp\| .*\); nothing written"):
        importer.import_checkpoint(src, tmp_path / "b.pt", imgsz=IMGSZ, trust_pickle=True)
    assert not (tmp_path / "b.pt").exists()


def test_cli_import_then_predict_and_ensemble_with_a_native_checkpoint(baseline, tmp_path, run_cli):
    import torch

    from yolohand.models.smp.model import build_model, checkpoint_meta

    _, whole, _, image = baseline
    dst = tmp_path / "imported.pt"
    code, out, err = run_cli(["import", whole, dst, "--imgsz", IMGSZ, "--trust-pickle"])
    assert code == 0, err
    assert f"imported {whole} (a pickled smp model) as smp:Unet:resnet18" in out and "max |dp| 0.00e+00" in out
    assert f"wrote {dst.resolve()}" in out
    native = tmp_path / "native.pt"  # a yolohand-trained checkpoint: 1 channel, (x/255 - 0.5) / 0.25
    torch.manual_seed(2)
    torch.save({"yolohand": checkpoint_meta("smp", "Unet", "resnet18", IMGSZ),
                "state_dict": build_model("Unet", "resnet18", quiet=True).state_dict()}, native)
    source = image.parent.parent
    for name, weights in (("imported", [dst]), ("native", [native]), ("both", [dst, native])):
        args = ["predict", "--source", source, "--rle", tmp_path / f"{name}.csv", "--save-probs", tmp_path / name,
                "--device", "cpu"]
        for w in weights:
            args += ["-w", w]
        code, _, err = run_cli(args)
        assert code == 0, err
        assert len((tmp_path / f"{name}.csv").read_text().splitlines()) == 1 + 29
    code, _, err = run_cli(["ensemble", "--probs", tmp_path / "imported", "--probs", tmp_path / "native",
                         "--out", tmp_path / "soft.csv"])
    assert code == 0, err
    assert len((tmp_path / "soft.csv").read_text().splitlines()) == 1 + 29


def test_force_replaces_only_a_previous_checkpoint_and_never_the_input(baseline, tmp_path, run_cli):
    _, whole, state, _ = baseline
    before = (_sha(whole), _sha(state))
    args = ["--imgsz", IMGSZ, "--model", "smp:Unet:resnet18"]
    user_file = tmp_path / "notes.pt"
    user_file.write_text("mine")
    code, _, err = run_cli(["import", state, user_file, *args])
    assert code == 1 and err.strip() == f"error: {user_file}: already exists (pass --force to replace it)"
    code, _, err = run_cli(["import", state, user_file, *args, "--force"])
    assert code == 1 and "is not a previous yolohand smp/refine checkpoint; not replaced, even with --force" in err
    assert user_file.read_text() == "mine"
    dst = tmp_path / "imported.pt"
    assert run_cli(["import", state, dst, *args])[0] == 0
    first = dst.stat().st_mtime_ns
    assert run_cli(["import", state, dst, *args])[0] == 1
    code, _, err = run_cli(["import", state, dst, *args, "--force"])
    assert code == 0, err
    assert dst.stat().st_mtime_ns != first
    for target in (state, whole):
        code, _, err = run_cli(["import", target, target, *args, "--force", "--trust-pickle"])
        assert code == 1 and err.strip() == f"error: {target}: DST is also an input; choose an output outside the inputs"
    assert (_sha(whole), _sha(state)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imported.pt", "notes.pt"]  # no temporary left


def test_bad_inputs_are_one_error_line_and_write_nothing(baseline, tmp_path, run_cli):
    import torch

    _, whole, state, image = baseline
    text, conv, wrong_classes, ours = (tmp_path / n for n in ("text.pt", "conv.pt", "classes3.pt", "ours.pt"))
    text.write_text("not a model\n")
    torch.save(torch.nn.Conv2d(3, 29, 1), conv)
    torch.save(_baseline_model(classes=3).state_dict(), wrong_classes)
    torch.save({"yolohand": {"family": "smp"}, "state_dict": {}}, ours)
    color = tmp_path / "color.png"
    bgr = np.repeat(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)[..., None], 3, axis=2)
    bgr[..., 2] = 255 - bgr[..., 2]
    cv2.imwrite(str(color), bgr)
    dst = tmp_path / "out" / "x.pt"
    unet = ["--model", "smp:Unet:resnet18"]
    cases = [
        ([tmp_path / "missing.pt", dst, *unet], f"{tmp_path / 'missing.pt'}: file not found"),
        ([text, dst, *unet], f"{text}: not a torch file (text)"),
        ([whole, dst], f"{whole}: a pickled Python object (e.g. a whole model saved with torch.save(model)); loading "
                       "it runs code from the file: pass --trust-pickle"),
        ([conv, dst, "--trust-pickle"], f"{conv}: holds a pickled torch.nn.modules.conv.Conv2d, not a "
                                        "segmentation_models_pytorch model or a state_dict"),
        ([wrong_classes, dst, *unet], f"{wrong_classes}: the model has 3 output classes; yolohand needs 29"),
        ([ours, dst, *unet], f"{ours}: already a yolohand checkpoint"),
        ([state, dst, "--model", "smp:Unet:resnet181"], "smp encoder 'resnet181': unknown (did you mean 'resnet18'?)"),
        ([whole, dst, "--trust-pickle", "--model", "smp:FPN:resnet18"],
         f"{whole}: the model is smp:Unet:resnet18, not --model smp:FPN:resnet18"),
        ([whole, dst, "--trust-pickle", "--channels", "1"], f"{whole}: the model takes 3 input channel(s), not --channels 1"),
        ([state, dst, *unet, "--imgsz", "48"], "--imgsz 48: smp encoders need a multiple of 32"),
        ([state, dst, *unet, "--std", "0"], "--std 0.0: expected finite numbers > 0"),
        ([state, dst, *unet, "--mean", "0,0"], "--mean [0.0, 0.0]: expected one number or 3 (one per channel)"),
        ([state, dst, *unet, "--image", color], "the image's colour channels differ, while yolohand feeds the gray "
                                                "image repeated"),
    ]
    for argv, message in cases:
        argv = ["import", *argv] + ([] if "--imgsz" in argv else ["--imgsz", IMGSZ])
        code, out, err = run_cli(argv)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, err)
        assert "Traceback" not in err and not out
    assert not dst.parent.exists()


def test_native_checkpoints_keep_one_channel_and_yolohands_normalisation(tmp_path):
    import torch

    from yolohand.models.family import load_network
    from yolohand.models.shared.normalise import MEAN, STD, normalise
    from yolohand.models.smp.model import build_model, checkpoint_meta

    path = tmp_path / "native.pt"
    torch.save({"yolohand": checkpoint_meta("smp", "Unet", "resnet18", IMGSZ),
                "state_dict": build_model("Unet", "resnet18", quiet=True).state_dict()}, path)
    net = load_network(path, device="cpu")
    assert (net.channels, net.mean, net.std) == (1, MEAN, STD)
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert torch.equal(normalise(u8), (u8.float() / 255.0 - 0.5) / 0.25)  # the old formula, bit for bit
