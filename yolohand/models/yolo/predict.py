"""The YOLO-seg network of prediction: raw instances after NMS -> 29 soft class crops.

The ultralytics-facing half; the numeric half is :mod:`yolohand.models.yolo.postprocess`, and
what every family shares (weights lookup, TTA, averaging, writing) is :mod:`yolohand.models.predict`.

- Images are read with :func:`yolohand.data.layout.read_image` (uint8 grayscale) and handed to
  ultralytics as arrays: its loader turns them into what the model was trained on (3-channel
  BGR with equal channels, as ``cv2.imread`` reads a gray PNG, or 1 channel for a
  ``channels: 1`` model).
- :class:`~yolohand.models.yolo.predictor.SoftSegPredictor` (its own module, imported when a
  network first predicts) stops ultralytics after NMS: instead of binarised masks it returns
  the raw :class:`~yolohand.models.yolo.postprocess.Instances` (protos, coefficients, input-space boxes,
  confidences, classes and the letterbox geometry) for :func:`postprocess.class_crops`.
- ``half`` (``--half``): fp16 network on CUDA (a clear error elsewhere); ``batch``: the images
  of one :meth:`Network.crops` call go through one forward pass.
- NMS is per class (``agnostic_nms=False``: overlapping bones of different classes both
  survive), ``max_det=300``, low ``conf`` (default :data:`DEFAULT_CONF`): top-1 per class removes
  the duplicates, and a class is rarely missed.
- Defaults chosen by measurement (benchmarks/quality_predict.py, 16 synthetic 2048 px images,
  yolo11n-seg at imgsz 512): soft masks, top-1 per class, no confidence weighting, conf 0.01
  (0.05 gave 0.0014-0.0038 less, more misses), raw mask probability 0.8 mapped to 0.5
  (:data:`postprocess.DEFAULT_MASK_THRESHOLD`), TTA off (it doubles the time for a gain within
  noise there; turn it on for final submissions).
- A checkpoint trained with ``--clahe`` (its model's ``yaml`` holds the run's preprocessing:
  :func:`yolohand.models.yolo.trainer.model_preprocess`) gets the image as training loaded it (long
  side imgsz, :func:`yolohand.data.preprocess.fit_long_side`) through the same CLAHE; the instances'
  letterbox is then mapped back to the original size, so the crops come out at full resolution.
- A TTA ``scale`` s (``--tta-scales``) predicts at imgsz x s rounded to 32; scale 1 is the plain call.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolohand import defaults as D
from yolohand.core import crops as cr
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.errors import YolohandError
from yolohand.models.shared.settings import Settings
from yolohand.models.yolo import postprocess as pp

DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET = D.CONF, D.IOU, D.MAX_DET


@dataclass
class Network:
    """One loaded checkpoint and its prediction settings."""

    path: Path
    model: object  # ultralytics.YOLO
    args: dict
    clahe: tuple[float, int] | None = None  # the checkpoint's (model_preprocess)

    def crops(self, images: list[np.ndarray], settings: Settings, scale: float = 1.0) -> list[cr.ClassCrops]:
        """29 class crops per image (:func:`postprocess.class_crops` of the raw instances)."""
        s = settings
        return [pp.class_crops(inst, s.merge, s.conf_weight, s.mask_mode, mask_threshold=s.mask_threshold)
                for inst in self(images, scale)]

    def imgsz(self, scale: float = 1.0) -> int:
        """The input side: ``--imgsz`` or the training size, times a TTA ``scale`` rounded to 32 (min 32)."""
        base = self.args.get("imgsz") or (getattr(self.model, "overrides", None) or {}).get("imgsz") or 640
        base = int(max(base) if isinstance(base, (list, tuple)) else base)
        return base if scale == 1 else max(32, int(round(base * float(scale) / 32)) * 32)

    def __call__(self, images: list[np.ndarray], scale: float = 1.0) -> list[pp.Instances]:
        """Raw instances for each image (uint8 (H, W) gray or (H, W, 3) BGR arrays)."""
        if not images:
            return []
        from yolohand.models.yolo.predictor import SoftSegPredictor  # imports ultralytics (after setup_offline)

        args = self.args if scale == 1 else dict(self.args, imgsz=self.imgsz(scale))
        feed = images
        if self.clahe is not None:  # as training loaded the image: long side imgsz, then CLAHE
            from yolohand.data.preprocess import apply_clahe, apply_to_gray, fit_long_side

            size = self.imgsz(scale)
            feed = [apply_to_gray(fit_long_side(im, size), lambda g: apply_clahe(g, self.clahe)) for im in images]
        # A list source is one ultralytics batch: every image goes through one forward pass.
        out = list(self.model.predict(source=feed, predictor=SoftSegPredictor, stream=False, **args))
        if feed is not images:
            for inst, im, fed in zip(out, images, feed):
                inst.letterbox = _to_original(inst.letterbox, im.shape[:2], fed.shape[:2])
        return out


def _to_original(lb: pp.Letterbox, orig: tuple[int, int], fed: tuple[int, int]) -> pp.Letterbox:
    """The letterbox of an image that was fed resized (``fed`` (h, w), its own letterbox ``lb``), for the
    original ``orig`` (H, W): same input, padding and content; gain measured against the original."""
    scale = (lb.gain[0] * fed[0] / orig[0], lb.gain[1] * fed[1] / orig[1])
    return pp.Letterbox((int(orig[0]), int(orig[1])), lb.input_shape, scale, lb.pad, lb.content)


def load_network(
    path: str | os.PathLike,
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    device: str | None = None,
    batch: int = 1,
    max_det: int = DEFAULT_MAX_DET,
    half: bool = False,
) -> Network:
    """Load a segmentation checkpoint (YolohandError if missing or not a segmentation model).

    ``imgsz`` None: the size the checkpoint was trained at. ``half``: fp16 inference, CUDA only
    (:func:`check_half`); the decoding works in float32 either way. ``batch``: images per
    forward pass is the number of images handed to :meth:`Network.crops` (the caller's chunk;
    ultralytics runs a list of images as one batch).
    """
    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: weights file not found (nothing is downloaded)")
    if not 0.0 <= conf < 1.0:
        raise YolohandError(f"--conf {conf}: expected a value in [0, 1)")
    if half:
        check_half(device)
    from yolohand.models.yolo.offline import setup_offline

    setup_offline()  # before ultralytics is imported
    from ultralytics import YOLO

    try:
        model = YOLO(str(path))
    except Exception as exc:  # corrupt / not a checkpoint
        raise YolohandError(f"{path}: cannot load as a YOLO checkpoint ({type(exc).__name__}: {exc})") from None
    head = type(model.model.model[-1]).__name__ if hasattr(model.model, "model") else ""
    if "Segment" not in head:
        raise YolohandError(f"{path}: a '{model.task}' model ({head} head), expected a segmentation (-seg) model")
    model.task = "segment"
    names = getattr(model, "names", {}) or {}
    if len(names) != NUM_CLASSES:
        warnings.warn(f"{path}: the model has {len(names)} classes, expected {NUM_CLASSES}", stacklevel=2)
    else:
        _check_class_names(path, names)
    args = dict(
        conf=conf,
        iou=iou,
        max_det=max_det,
        agnostic_nms=False,  # overlapping bones of different classes must both survive
        retina_masks=False,
        verbose=False,
        save=False,
        batch=max(1, batch),
    )
    if half:
        from ultralytics.utils import DEFAULT_CFG_DICT

        # 8.4.1+ reads half=True; later releases renamed it quantize=16 (half still works, with a warning).
        args.update({"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True})
    if imgsz is not None:
        args["imgsz"] = imgsz
    if device is not None:
        args["device"] = device
    from yolohand.models.yolo.trainer import model_preprocess

    return Network(path, model, args, model_preprocess(model.model)["clahe"])


def _check_class_names(path: Path, names: dict | list) -> None:
    """YolohandError when a 29-class model's names are not yolohand's classes in order: its masks would be
    written under the wrong bones (the smp/refine families reorder by name; a YOLO head's classes are
    also its NMS and assignment classes, so it is refused instead)."""
    listed = [str(names[i]) if isinstance(names, dict) and i in names else str(names[i]) if isinstance(names, list)
              else "" for i in range(NUM_CLASSES)]
    if listed == list(CLASSES):
        return
    i = next(k for k, (a, b) in enumerate(zip(listed, CLASSES)) if a != b)
    what = "in another order than yolohand's" if sorted(listed) == sorted(CLASSES) else "not yolohand's 29 bones"
    raise YolohandError(f"{path}: its class names are {what} (class {i} is {listed[i]!r}, not {CLASSES[i]!r}): its "
                        "masks would go under the wrong bones; train on data written by `yolohand convert`")


def check_half(device: str | None) -> None:
    """YolohandError unless ``device`` is a CUDA device (None: CUDA must be available).

    ultralytics ignores ``half`` off CUDA without a word; ``--half`` asks for fp16, so say it cannot.
    """
    text = "" if device is None else str(device).strip().lower()
    if text in ("cpu", "mps"):
        raise YolohandError(f"--half needs a CUDA GPU (fp16 inference); --device {device} cannot: drop --half")
    import torch

    if not torch.cuda.is_available():
        where = f"--device {device}" if device is not None else "this machine"
        raise YolohandError(f"--half needs a CUDA GPU (fp16 inference), and {where} has none (torch.cuda.is_available() "
                            f"is False): drop --half")
