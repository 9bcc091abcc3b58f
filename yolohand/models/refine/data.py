"""Training crops of the refiner: ground-truth bones with detector-like boxes and YOLO-like priors.

Each item is one (image, bone) of the fold's training images, read from the bone-window cache
(:mod:`yolohand.data.bone_crops`). Every time it is drawn: the ground-truth box is jittered as a
detector errs (:func:`~yolohand.models.refine.geometry.jitter_box`), a prior is made from the
ground truth the way YOLO's masks are coarse (:func:`~yolohand.models.refine.geometry.degrade_prior`),
the window is cut as prediction cuts it (:func:`~yolohand.models.refine.geometry.grow_box`), and
image, prior and target are flipped left-right together half of the time; with a ``gamma`` range the
window's pixels get a random gamma (after CLAHE, which the cache of a ``clahe`` run already holds:
:func:`yolohand.data.bone_crops.build_crop_cache`). Random numbers come
from torch's generator, so a seed fixes the run and every epoch draws new boxes.

With out-of-fold detector predictions in the cache (run argument ``priors``), a ``prior_mix`` share
of the draws of a bone the detector found uses them instead: the predicted box jittered by
:data:`PRED_JITTER` x ``jitter`` (the detector's own error is already in it) and the predicted soft
map as the prior, unchanged. The other draws, bones the detector missed, and every draw when
``priors`` is not set or ``prior_mix`` is 0, are the degraded ground truth above, with the same
random numbers as without ``priors``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolohand.data.bone_crops import BoneWindow, load_windows
from yolohand.data.preprocess import apply_gamma
from yolohand.models.refine.geometry import degrade_prior, grow_box, input_planes, jitter_box, resize_to

__all__ = ["BoneSet", "make_item", "PRED_JITTER"]

#: Box jitter of a predicted box, as a fraction of the run's ``jitter``.
PRED_JITTER = 0.5


@lru_cache(maxsize=8)
def _windows(path: Path) -> dict[int, BoneWindow]:
    return {w.cls: w for w in load_windows(path)}


def make_item(w: BoneWindow, args: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (2, R, R) input, bool (R, R) target) of one bone window (see the module docstring)."""
    size, (wy0, wx0, wy1, wx1) = int(args["imgsz"]), w.window
    hw = (wy1 - wy0, wx1 - wx0)
    box = (w.box[0] - wy0, w.box[1] - wx0, w.box[2] - wy0, w.box[3] - wx0)
    mix = float(args.get("prior_mix") or 0.0)
    if w.prior is not None and w.pbox is not None and mix > 0 and rng.random() < mix:
        pbox = (w.pbox[0] - wy0, w.pbox[1] - wx0, w.pbox[2] - wy0, w.pbox[3] - wx0)
        jbox = jitter_box(pbox, PRED_JITTER * float(args["jitter"]), rng, (0, 0, *hw))
        prior = w.prior.astype(np.float32) / 255.0
    else:
        jbox = jitter_box(box, float(args["jitter"]), rng, (0, 0, *hw))
        prior = degrade_prior(w.mask, jbox, float(args["prior_stride"]), rng)
    y0, x0, y1, x1 = grow_box(jbox, float(args["margin"]), hw)
    pixels = w.image[y0:y1, x0:x1]
    if args.get("gamma"):
        pixels = apply_gamma(pixels, float(rng.uniform(*(float(g) for g in args["gamma"]))))
    planes = input_planes(pixels, prior[y0:y1, x0:x1], size)
    target = resize_to(w.mask[y0:y1, x0:x1].astype(np.float32), size) >= 0.5
    if rng.random() < float(args["fliplr"]):
        planes, target = planes[:, :, ::-1], target[:, ::-1]
    return np.ascontiguousarray(planes), np.ascontiguousarray(target)


class BoneSet(torch.utils.data.Dataset):
    """(x float32 (2, R, R), y float32 (1, R, R), class int64) for every bone of the cached images."""

    def __init__(self, files: list[Path], args: dict[str, Any]) -> None:
        self.args = args
        self.items = []
        self.predicted = 0  # bones with a detector's prediction in the cache (run argument ``priors``)
        for f in files:
            with np.load(f, allow_pickle=False) as z:
                self.items += [(f, int(k[3:])) for k in z.files if k.startswith("img")]
                self.predicted += sum(k.startswith("pbox") for k in z.files)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        f, cls = self.items[i]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
        x, y = make_item(_windows(f)[cls], self.args, rng)
        return torch.from_numpy(x), torch.from_numpy(y[None].astype(np.float32)), cls
