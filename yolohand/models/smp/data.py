"""Datasets of the smp family: cached samples (yolohand.data.samples), X-ray augmentations.

Augmentations (albumentations, deterministic for a seed): horizontal flip (a mirrored hand is a
valid hand, bone names carry no side), a small affine (rotation, zoom, shift), brightness and
contrast; no hue or saturation (grey images), no vertical flip (the forearm is at the bottom).
Masks follow the geometry with nearest-neighbour interpolation.

Preprocessing and windows (README, "Leaderboard techniques"): CLAHE (``clahe``) is applied to the
cached S x S image first, exactly as prediction applies it; with ``window`` W < S a random W x W
window is then cut (every position equally likely, the image's edges included) and only the
window's masks are unpacked; the augmentations above, and the gamma range (``gamma``), act on what
is left. W >= S is the whole image, as without windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from yolohand.core.classes import NUM_CLASSES
from yolohand.data.preprocess import apply_clahe, parse_clahe
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
    if args.get("gamma"):  # after CLAHE (TrainSet): the look of the image the network is fed
        lo, hi = (float(v) for v in args["gamma"])
        steps.append(A.RandomGamma(gamma_limit=(lo * 100, hi * 100), p=1.0))
    return A.Compose(steps, seed=seed)


class TrainSet(torch.utils.data.Dataset):
    """(x float32 (1, S, S) normalised, y float32 (29, S, S) 0/1) per cached sample, augmented;
    (1, W, W) and (29, W, W) with ``window`` W < S (module docstring)."""

    def __init__(self, samples: list[Sample], size: int, transform=None, window: int | None = None,
                 clahe: Any = None) -> None:
        self.samples, self.size, self.transform = samples, size, transform
        self.window = int(window) if window and int(window) < size else None
        self.clahe = parse_clahe(clahe)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 image, uint8 (h, w, 29) masks): the whole sample, or a random window of it."""
        sample = self.samples[i]
        if self.window is None:
            image, masks = load_sample(sample, self.size)
            return apply_clahe(image, self.clahe), masks
        image = apply_clahe(np.load(sample.img_npy, allow_pickle=False), self.clahe)
        packed = np.load(sample.mask_npy, mmap_mode="r", allow_pickle=False)  # only the window is read
        w, (h_full, w_full) = self.window, image.shape[:2]
        y0, x0 = (int(torch.randint(0, max(1, n - w + 1), (1,))) for n in (h_full, w_full))
        window = np.ascontiguousarray(packed[y0 : y0 + w, x0 : x0 + w])
        return image[y0 : y0 + w, x0 : x0 + w], np.unpackbits(window, axis=-1, count=NUM_CLASSES)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, masks = self._load(i)
        if self.transform is not None:
            out = self.transform(image=image, mask=masks)
            image, masks = out["image"], out["mask"]
        x = normalise(torch.from_numpy(np.ascontiguousarray(image)))[None]
        y = torch.from_numpy(np.ascontiguousarray(masks)).permute(2, 0, 1).float()
        return x, y


class ValSet(TrainSet):
    """Validation samples, whole (never windowed: the module predicts them as prediction does), not
    augmented, with the index to find the full-size ground truth; ``y`` uint8 (a quarter of float32's memory at 2048)."""

    def __init__(self, samples: list[Sample], size: int, clahe: Any = None) -> None:
        super().__init__(samples, size, None, None, clahe)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, masks = self._load(i)
        x = normalise(torch.from_numpy(np.ascontiguousarray(image)))[None]
        y = torch.from_numpy(np.ascontiguousarray(masks)).permute(2, 0, 1)
        return {"x": x, "y": y, "index": i}


def seed_worker(worker_id: int) -> None:
    """Give each data-loading worker its own augmentation stream (same seed -> same run)."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(int(torch.initial_seed() % 2**31) + worker_id)
