"""The smp network of prediction: whole-image logits -> 29 full-resolution class crops.

Each image is resized to the checkpoint's S x S (``INTER_AREA``, as in training), fed as its
metadata says (``channels``: the gray image repeated that many times; ``mean``/``std``: see
:mod:`yolohand.models.shared.normalise`; absent: 1 channel, yolohand's own normalisation), the
logits of a batch are computed at once, then per image and class upsampled bilinearly to the original
size, passed through the sigmoid and cut to the box where p >= 1/255
(:func:`yolohand.core.crops.probs_to_crops`): one full-size float plane at a time, so memory stays
flat at 2048 px. Averaging, TTA and writing are shared (:mod:`yolohand.models.predict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolohand.core import crops as cr
from yolohand.errors import YolohandError
from yolohand.models.shared.devices import torch_device
from yolohand.models.shared.normalise import MEAN, STD, Level

__all__ = ["SmpNetwork", "load_network", "torch_device"]


@dataclass
class SmpNetwork:
    """A loaded smp checkpoint: ``model`` in eval mode on ``device``, trained at ``imgsz``, fed
    ``channels`` copies of the gray image normalised with ``mean``/``std``."""

    path: Path
    model: Any
    imgsz: int
    device: Any
    half: bool = False
    batch: int = 1
    channels: int = 1
    mean: Level = MEAN
    std: Level = STD

    def logits(self, images: list[np.ndarray]):
        """float32 (N, 29, S, S) logits (torch, on the device) of uint8 (H, W) images."""
        import cv2
        import torch

        from yolohand.models.shared.normalise import normalise

        s = self.imgsz
        small = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in images])
        x = torch.from_numpy(small).unsqueeze(1).expand(-1, self.channels, -1, -1)  # (N, C, S, S) uint8
        x = normalise(x, self.mean, self.std).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.half):
            return self.model(x).float()

    def crops(self, images: list[np.ndarray], settings: Any = None) -> list[cr.ClassCrops]:
        """29 class crops per image at the image's own size."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start : start + self.batch]
            for im, logit in zip(chunk, self.logits(chunk)):
                crops = []
                for plane in logit:  # one class at a time: one full-size float plane in memory
                    up = F.interpolate(plane[None, None], size=im.shape[:2], mode="bilinear", align_corners=False)
                    crops += cr.probs_to_crops(torch.sigmoid(up[0]).cpu().numpy())
                out.append(crops)
        return out


def load_network(path: Path, ckpt: dict[str, Any], imgsz: int | None = None, device: str | None = None,
                 half: bool = False, batch: int = 1) -> SmpNetwork:
    """An :class:`SmpNetwork` from a checkpoint read by :func:`yolohand.models.shared.checkpoint.read_checkpoint`.

    ``imgsz`` None: the training size (another size works for fully convolutional models).
    """
    from yolohand.models.shared.network import model_from_checkpoint
    from yolohand.models.shared.normalise import meta_normalisation

    dev = torch_device(device, half)
    model, meta = model_from_checkpoint(path, ckpt)
    size = int(imgsz or meta["imgsz"])
    multiple = int(meta.get("multiple", 32))  # probed at training (models/shared/fit.py); older checkpoints: 32
    if size % multiple:
        raise YolohandError(f"--imgsz {size}: this {meta['arch']}/{meta['encoder']} needs a multiple of {multiple}")
    mean, std = meta_normalisation(meta)
    return SmpNetwork(path, model.to(dev), size, dev, half, max(1, int(batch)), int(meta.get("channels", 1)), mean, std)
