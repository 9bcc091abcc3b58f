"""Datasets of the smp family: cached samples (yolohand.data.samples), X-ray augmentations.

Augmentations (albumentations, deterministic for a seed): horizontal flip (a mirrored hand is a
valid hand, bone names carry no side), a small affine (rotation, zoom, shift), brightness and
contrast; no hue or saturation (grey images), no vertical flip (the forearm is at the bottom).
Masks follow the geometry with nearest-neighbour interpolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from yolohand.data.samples import Sample, load_sample
from yolohand.models.shared.normalise import normalise
from yolohand.models.shared.runs import read_list

__all__ = ["augmentations", "TrainSet", "ValSet", "read_list", "seed_worker"]


def augmentations(args: dict[str, Any], seed: int):
    """The albumentations pipeline of the training set (see the module docstring)."""
    import albumentations as A
    import cv2

    deg, scale, shift = float(args["degrees"]), float(args["scale"]), float(args["translate"])
    steps = [A.HorizontalFlip(p=float(args["fliplr"]))]
    if deg or scale or shift:
        steps.append(A.Affine(rotate=(-deg, deg), scale=(1 - scale, 1 + scale), translate_percent=(-shift, shift),
                              interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                              border_mode=cv2.BORDER_CONSTANT, p=0.8))
    if args["brightness"] or args["contrast"]:
        steps.append(A.RandomBrightnessContrast(brightness_limit=float(args["brightness"]),
                                                contrast_limit=float(args["contrast"]), p=0.8))
    return A.Compose(steps, seed=seed)


class TrainSet(torch.utils.data.Dataset):
    """(x float32 (1, S, S) normalised, y float32 (29, S, S) 0/1) per cached sample, augmented."""

    def __init__(self, samples: list[Sample], size: int, transform=None) -> None:
        self.samples, self.size, self.transform = samples, size, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, masks = load_sample(self.samples[i], self.size)
        if self.transform is not None:
            out = self.transform(image=image, mask=masks)
            image, masks = out["image"], out["mask"]
        x = normalise(torch.from_numpy(np.ascontiguousarray(image)))[None]
        y = torch.from_numpy(np.ascontiguousarray(masks)).permute(2, 0, 1).float()
        return x, y


class ValSet(TrainSet):
    """Validation samples, not augmented, with the index to find the full-size ground truth."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, y = super().__getitem__(i)
        return {"x": x, "y": y, "index": i}


def seed_worker(worker_id: int) -> None:
    """Give each data-loading worker its own augmentation stream (same seed -> same run)."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(int(torch.initial_seed() % 2**31) + worker_id)
