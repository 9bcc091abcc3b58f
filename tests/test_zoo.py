"""The seed's model zoo as smp rows (issue 21): each trains one epoch and predicts at a tiny size,
and what each needs (input multiple, batch >= 2, memory) is refused before training, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolohand.core.classes import NUM_CLASSES
from yolohand.errors import YolohandError

#: (--model, the seed's counterpart); README's zoo table has their params and s/step.
ZOO = ["smp:Segformer:mit_b0", "smp:Unet:tu-sam2_hiera_tiny", "smp:UPerNet:tu-convnext_tiny", "smp:DeepLabV3Plus:resnet50"]


@pytest.fixture(scope="module")
def tiny_yolo(synth_root, tmp_path_factory) -> Path:
    from yolohand.data.convert import convert_dataset

    out = tmp_path_factory.mktemp("zoo") / "yolo"
    convert_dataset(synth_root, out, folds=2, seed=0, imgsz=64, workers=1)
    return out


def _network(model: str):
    from yolohand.models.shared.checkpoint import parse_model
    from yolohand.models.shared.network import build_model

    spec = parse_model(model)
    return build_model(spec.arch, spec.encoder, in_channels=1, quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ZOO)
def test_zoo_row_trains_one_epoch_and_predicts(model, tiny_yolo, tmp_path, monkeypatch):
    from yolohand.core.submission import iter_submission
    from yolohand.models.predict import predict_to_submission
    from yolohand.models.train import train_fold

    monkeypatch.chdir(tmp_path)
    res = train_fold(0, model=model, yolo=tiny_yolo, runs=tmp_path / "runs", name="z", device="cpu", progress=False,
                     imgsz=64, epochs=1, batch=2, workers=0, threads=1)
    assert res.best.is_file() and res.epochs == 1 and 0 <= res.dice <= 1
    val = (tiny_yolo / "folds" / "fold0_val.txt").read_text().split()[:1]
    src = tmp_path / "one.txt"
    src.write_text(val[0] + "\n")
    out = tmp_path / "pred.csv"
    predict_to_submission(out, source=src, weights=[res.best], device="cpu", progress=False)
    rows = list(iter_submission(out, shape=(256, 256)))
    assert len(rows) == 1 and rows[0][0] == Path(val[0]).name and len(rows[0][1]) == NUM_CLASSES


@pytest.mark.parametrize(("model", "multiple", "min_batch"),
                         [("smp:Segformer:mit_b0", 32, 1), ("smp:UPerNet:tu-convnext_tiny", 32, 2),
                          ("smp:DeepLabV3Plus:resnet50", 16, 2), ("smp:Unet:resnet18", 1, 1)])
def test_probe_finds_the_input_multiple_and_the_batchnorm_on_pooled_maps(model, multiple, min_batch):
    from yolohand.models.shared.fit import probe

    torch.set_num_threads(1)
    net = _network(model).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    needs = probe(net, 1)
    assert (needs.multiple, needs.min_batch) == (multiple, min_batch)
    assert needs.params == sum(p.numel() for p in net.parameters()) and needs.saved_per_pixel > 0
    assert not net.training  # left as found, BatchNorm statistics untouched
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    if min_batch == 2:  # what the check protects from: one sample fails inside the head
        with pytest.raises(ValueError, match="Expected more than 1 value"):
            net.train()(torch.zeros(1, 1, 64, 64))


def test_check_fits_refuses_in_one_line_naming_the_model_and_the_fix(monkeypatch):
    from yolohand.models.shared import fit

    needs = fit.Needs(multiple=32, min_batch=2, params=10_000_000, saved_per_pixel=3000.0)
    with pytest.raises(YolohandError, match=r"^smp:X:y: --imgsz 100 is not a multiple of 32 .*use 96 or 128$"):
        fit.check_fits("smp:X:y", needs, 100, 4, 10, None)
    with pytest.raises(YolohandError, match=r"^smp:X:y: --batch 1: .*at least 2 samples.*--batch 2"):
        fit.check_fits("smp:X:y", needs, 64, 1, 10, None)
    with pytest.raises(YolohandError, match=r"1 training sample\(s\)"):
        fit.check_fits("smp:X:y", needs, 64, 4, 1, None)
    monkeypatch.setattr(fit, "free_bytes", lambda devices: (2 * fit.GIB, "this machine"))
    # 16 B x 10 M params + 3000 B x 1024^2 px x 8 samples = 23.6 GiB > 0.9 x 2 GiB
    with pytest.raises(YolohandError, match=r"needs about 23\.6 GiB to train .*2\.0 GiB free on this machine"):
        fit.check_fits("smp:X:y", needs, 1024, 8, 10, None)
    fit.check_fits("smp:X:y", needs, 64, 2, 10, None)  # fits: no error
    assert needs.bytes_for(64, 2) == 16 * 10_000_000 + 3000 * 64 * 64 * 2


def test_probe_memory_estimate_is_the_order_of_a_real_forward(monkeypatch):
    """The saved-for-backward bytes scale with pixels: probing at 64 px predicts 128 px within 25 %."""
    from yolohand.models.shared import fit

    torch.set_num_threads(1)
    net = _network("smp:Unet:resnet18")
    per_px = fit.probe(net, 1).saved_per_pixel
    monkeypatch.setattr(fit, "PROBE", 128)
    assert abs(fit.probe(net, 1).saved_per_pixel - per_px) < 0.25 * per_px


def test_training_refuses_a_bad_size_before_any_epoch(tiny_yolo, tmp_path, capsys):
    from yolohand.cli import main

    args = ["train", "--model", "smp:DeepLabV3Plus:resnet50", "--yolo", str(tiny_yolo), "--runs", str(tmp_path / "runs"),
            "--imgsz", "64", "--batch", "1", "--epochs", "1", "--device", "cpu", "--threads", "1"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: smp:DeepLabV3Plus:resnet50: --batch 1: its head applies BatchNorm"), err[-3:]
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


class _FixedSize(torch.nn.Module):
    """A network that accepts one input side only, as timm's Swin/ViT encoders do (they assert)."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side, self.conv, self.bn = side, torch.nn.Conv2d(1, 29, 1), torch.nn.BatchNorm2d(29)

    def forward(self, x):
        assert x.shape[-1] == self.side, f"Input height ({x.shape[-1]}) doesn't match model ({self.side})"
        return self.bn(self.conv(x))


def test_a_fixed_size_network_is_probed_at_the_run_size_or_refused_in_one_line():
    from yolohand.models.shared.fit import check_network

    net = _FixedSize(96)
    needs = check_network("smp:X:swin", net, 1, 96, 2, 10, None)  # 64 px refused: probed at 96 instead
    assert needs.multiple == 32 and needs.params == 29 * 2 + 29 * 2
    with pytest.raises(YolohandError, match=r"^smp:X:swin: does not run at --imgsz 128 \(AssertionError: Input height"):
        check_network("smp:X:swin", net, 1, 128, 2, 10, None)


def test_drop_last_only_spares_a_batch_of_one():
    from yolohand.models.shared.fit import drop_last

    assert [drop_last(n, 4) for n in (4, 5, 6, 9)] == [False, True, False, True]
    assert drop_last(9, 2, world=2) is True and drop_last(7, 4, world=2) is False  # shards of 5 and 4
