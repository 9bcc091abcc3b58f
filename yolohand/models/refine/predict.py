"""The refiner stage of prediction: each detected bone re-segmented in a full-resolution crop.

For every class crop of the first stage (YOLO, or any family), :meth:`RefineStage.refine` cuts
the crop's box grown by the checkpoint's ``margin`` from the original image, puts the first
stage's probabilities of that bone in the same window as a second channel, resizes both to
R x R, and runs all of an image's bones in one forward pass. Channel ``c`` of the output is bone
``c``'s logits; they are resized back into the window bilinearly and passed through the sigmoid.
Each crop predicts only its own bone, so overlapping bones stay multi-label. A class the first
stage did not find stays None. A refiner trained with CLAHE (its metadata's ``clahe``) sees the
full-resolution image through the same CLAHE before its crops are cut, as in training.

The gate: a checkpoint whose metadata holds a ``gate`` (the classes the refiner made worse than the
detector on its validation images, :mod:`yolohand.models.refine.train`) keeps the first stage's crop
of those classes as it is; loading it prints one line naming them. Older checkpoints have no gate.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolohand.core import crops as cr
from yolohand.data.preprocess import Clahe, apply_clahe, clahe_of
from yolohand.models.refine.gate import gate_classes, gate_line
from yolohand.models.refine.geometry import grow_box, input_planes

__all__ = ["RefineStage", "refine_crops", "load_refiner"]


def _windows(image: np.ndarray, crops: cr.ClassCrops, margin: float, size: int, keep: Collection[int] = ()):
    """(classes, windows, input stack float32 (N, 2, R, R)) of the non-empty crops not in ``keep``."""
    classes, windows, planes = [], [], []
    for c, crop in enumerate(crops):
        if crop is None or c in keep:
            continue
        y0, x0, y1, x1 = win = grow_box((crop.y0, crop.x0, crop.y1, crop.x1), margin, image.shape[:2])
        prior = np.zeros((y1 - y0, x1 - x0), np.float32)
        py0, px0 = max(crop.y0, y0), max(crop.x0, x0)
        py1, px1 = min(crop.y1, y1), min(crop.x1, x1)
        prior[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] = crop.probs[py0 - crop.y0 : py1 - crop.y0, px0 - crop.x0 : px1 - crop.x0]
        classes.append(c)
        windows.append(win)
        planes.append(input_planes(image[y0:y1, x0:x1], prior, size))
    return classes, windows, (np.stack(planes) if planes else None)


def refine_crops(model, image: np.ndarray, crops: cr.ClassCrops, margin: float, size: int, device,
                 half: bool = False, keep: Collection[int] = ()) -> cr.ClassCrops:
    """Refined crops of one uint8 (H, W) image (see the module docstring); ``model`` in eval mode.
    The classes in ``keep`` (the gate) keep the first stage's crop, the very object."""
    import torch
    import torch.nn.functional as F

    classes, windows, planes = _windows(image, crops, margin, size, keep)
    out = list(crops)
    if planes is None:
        return out
    x = torch.from_numpy(planes).to(device)
    with torch.inference_mode(), torch.autocast(device.type, enabled=half):
        logits = model(x).float()
    own = logits[torch.arange(len(classes)), torch.as_tensor(classes)]  # (N, R, R): each crop's own bone
    for c, (y0, x0, y1, x1), lg in zip(classes, windows, own):
        up = F.interpolate(lg[None, None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        probs = torch.sigmoid(up[0, 0]).cpu().numpy()
        out[c] = cr.Crop(y0, x0, np.ascontiguousarray(probs, dtype=np.float32), crops[c].conf)
    return out


@dataclass
class RefineStage:
    """A loaded refiner: ``model`` (2 input channels, 29 outputs) at R = ``size``, its ``margin``;
    ``gate``: the classes whose first-stage crop is kept."""

    path: Path
    model: Any
    size: int
    margin: float
    device: Any
    half: bool = False
    clahe: Clahe | None = None
    gate: frozenset[int] = field(default_factory=frozenset)

    def refine(self, image: np.ndarray, crops: cr.ClassCrops) -> cr.ClassCrops:
        """Refined crops of one uint8 (H, W) image (the gated classes: the first stage's crops)."""
        return refine_crops(self.model, apply_clahe(image, self.clahe), crops, self.margin, self.size, self.device,
                            self.half, self.gate)


def load_refiner(path: Path, ckpt: dict[str, Any], device: str | None = None, half: bool = False) -> RefineStage:
    """A :class:`RefineStage` from a checkpoint read by :func:`yolohand.models.shared.checkpoint.read_checkpoint`."""
    from yolohand.models.shared.devices import torch_device
    from yolohand.models.shared.network import model_from_checkpoint

    dev = torch_device(device, half)
    model, meta = model_from_checkpoint(path, ckpt)
    gate = meta.get("gate")  # None: a checkpoint from before the gate, or trained without a detector
    if gate is not None:
        print(gate_line(gate, f" {path}"), file=sys.stderr)
    return RefineStage(path, model.to(dev), int(meta["imgsz"]), float(meta.get("margin", 0.15)), dev, half,
                       clahe_of(meta), gate_classes(gate))

