"""yolohand.models.family: which family a checkpoint is, and one clear line for what is none."""

from __future__ import annotations

import pytest
import torch

from yolohand.defaults import DEMO_WEIGHTS
from yolohand.errors import YolohandError
from yolohand.models.family import META_KEY, read_checkpoint
from yolohand.models.shared.checkpoint import checkpoint_meta


@pytest.mark.parametrize(("content", "what"), [
    (b"", "empty"),
    (b"hello, I am a text file\n", "text"),
    (bytes(range(256)) * 20, "not a zip archive"),
])
def test_non_checkpoints_are_named(tmp_path, content, what):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(YolohandError, match=rf"w.pt: not a PyTorch checkpoint \({what}\); expected a .pt written by torch.save"):
        read_checkpoint(path)


def test_truncated_checkpoint_is_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({META_KEY: checkpoint_meta("smp", "Unet", "resnet18", 64), "state_dict": {"w": torch.zeros(1000)}}, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(YolohandError, match=r"bad.pt: not a PyTorch checkpoint \(a truncated or damaged archive\)"):
        read_checkpoint(bad)
    assert read_checkpoint(good)[META_KEY]["family"] == "smp"


@pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="demo checkpoint not shipped")
def test_an_ultralytics_checkpoint_is_left_to_ultralytics():
    assert read_checkpoint(DEMO_WEIGHTS) is None
