"""The smp network of prediction: whole-image logits -> 29 full-resolution class crops.

Each image is resized to the checkpoint's S x S (``INTER_AREA``, as in training), fed as its
metadata says (``channels``: the gray image repeated that many times; ``mean``/``std``: see
:mod:`yolohand.models.shared.normalise`; absent: 1 channel, yolohand's own normalisation), the
logits of a batch are computed at once, then per image and class upsampled bilinearly to the original
size, passed through the sigmoid and cut to the box where p >= 1/255
(:func:`yolohand.core.crops.probs_to_crops`): one full-size float plane at a time, so memory stays
flat at 2048 px. Averaging, TTA and writing are shared (:mod:`yolohand.models.predict`).

What the checkpoint's training used, its metadata replays (README, "Leaderboard techniques"):
``clahe`` on the S x S image (:mod:`yolohand.data.preprocess`), and ``window``/``stride``: the
S x S plane predicted by sliding windows with Gaussian blending (:mod:`yolohand.models.shared.windows`;
``--batch`` windows per forward pass), unless ``--window`` says otherwise (0: the whole plane at
once). A TTA ``scale`` s (``--tta-scales``) resizes the image to s x S instead, rounded to the
network's side multiple; scale 1 is the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolohand.core import crops as cr
from yolohand.data.preprocess import Clahe, apply_clahe, clahe_of
from yolohand.errors import YolohandError
from yolohand.models.shared.devices import torch_device
from yolohand.models.shared.normalise import MEAN, STD, Level
from yolohand.models.shared.windows import check_window

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
    window: int | None = None  # sliding windows of this side over the S x S plane (None: the plane at once)
    stride: int | None = None
    clahe: Clahe | None = None
    multiple: int = 32  # the network's side multiple (probed at training)

    def size_at(self, scale: float = 1.0) -> int:
        """The plane's side at a TTA ``scale``: S itself at 1, else s x S rounded to the side multiple."""
        if scale == 1:
            return self.imgsz
        m = max(1, self.multiple)
        return max(m, int(round(self.imgsz * float(scale) / m)) * m)

    def logits(self, images: list[np.ndarray], scale: float = 1.0):
        """float32 (N, 29, S, S) logits (torch, on the device) of uint8 (H, W) images (S: :meth:`size_at`)."""
        import cv2
        import torch

        from yolohand.models.shared.normalise import normalise
        from yolohand.models.shared.windows import sliding_logits

        s = self.size_at(scale)
        small = np.stack([apply_clahe(cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA), self.clahe) for im in images])
        x = torch.from_numpy(small).unsqueeze(1).expand(-1, self.channels, -1, -1)  # (N, C, S, S) uint8
        x = normalise(x, self.mean, self.std).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.half):
            if self.window and self.window < s:
                return sliding_logits(self.model, x, self.window, self.stride or self.window // 2, self.batch)
            return self.model(x).float()

    def crops(self, images: list[np.ndarray], settings: Any = None, scale: float = 1.0) -> list[cr.ClassCrops]:
        """29 class crops per image at the image's own size (``scale``: TTA, :meth:`size_at`)."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start : start + self.batch]
            for im, logit in zip(chunk, self.logits(chunk, scale)):
                crops = []
                for plane in logit:  # one class at a time: one full-size float plane in memory
                    up = F.interpolate(plane[None, None], size=im.shape[:2], mode="bilinear", align_corners=False)
                    crops += cr.probs_to_crops(torch.sigmoid(up[0]).cpu().numpy())
                out.append(crops)
        return out


def load_network(path: Path, ckpt: dict[str, Any], imgsz: int | None = None, device: str | None = None,
                 half: bool = False, batch: int = 1, window: int | None = None, stride: int | None = None) -> SmpNetwork:
    """An :class:`SmpNetwork` from a checkpoint read by :func:`yolohand.models.shared.checkpoint.read_checkpoint`.

    ``imgsz`` None: the training size (another size works for fully convolutional models).
    ``window``/``stride`` None: the checkpoint's (none in a checkpoint trained without); ``window`` 0:
    the whole plane at once. CLAHE is always the checkpoint's.
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
    window, stride = check_window(meta.get("window") if window is None else window,
                                  (meta.get("stride") if window is None else None) if stride is None else stride)
    if window is not None and window % multiple:
        raise YolohandError(f"--window {window}: this {meta['arch']}/{meta['encoder']} needs a multiple of {multiple}")
    return SmpNetwork(path, model.to(dev), size, dev, half, max(1, int(batch)), int(meta.get("channels", 1)), mean, std,
                      window, stride, clahe_of(meta), multiple)
