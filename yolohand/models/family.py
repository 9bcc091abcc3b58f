"""The one place that knows the model families: ``--model`` specs, checkpoint recognition, loading.

Families:

- ``yolo``: ultralytics YOLO-seg; ``--model`` is a ``*-seg.yaml`` or a local ``.pt``
  (:mod:`yolohand.models.yolo`);
- ``smp``: a segmentation_models_pytorch model with 29 sigmoid channels over the whole image;
  ``--model smp:ARCH:ENCODER`` (:mod:`yolohand.models.smp`);
- ``refine``: a second stage that re-segments each bone in a full-resolution crop of its YOLO
  box; ``--model refine:ARCH:ENCODER`` (:mod:`yolohand.models.refine`).

A non-YOLO checkpoint is a plain dict saved by torch with a ``"yolohand"`` entry (family, arch,
encoder, imgsz, channels, class names, version: :data:`META_KEY`) beside the weights, so it loads
without the training config and with ``torch.load(weights_only=True)``. Anything else is
handed to ultralytics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolohand.errors import YolohandError

__all__ = ["FAMILIES", "META_KEY", "ModelSpec", "parse_model", "read_checkpoint", "load_network", "load_refiner"]

FAMILIES = ("yolo", "smp", "refine")
#: Key of the metadata dict in a non-YOLO checkpoint.
META_KEY = "yolohand"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model``: ``family`` plus, for smp/refine, the segmentation_models_pytorch names."""

    family: str
    arch: str | None = None
    encoder: str | None = None
    text: str = ""


def parse_model(model: str | os.PathLike | None) -> ModelSpec:
    """``"smp:Unet:resnet18"`` -> ModelSpec("smp", "Unet", "resnet18"); a yaml/.pt/None -> family yolo.

    ARCH and ENCODER are checked against segmentation_models_pytorch only when the family trains
    (importing it here would slow every command).
    """
    text = "" if model is None else str(model)
    head = text.split(":", 1)[0].lower()
    if head not in ("smp", "refine"):
        return ModelSpec("yolo", text=text)
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip() for p in parts[1:]):
        raise YolohandError(f"--model {text!r}: expected {head}:ARCH:ENCODER, e.g. {head}:UnetPlusPlus:resnet34")
    return ModelSpec(head, parts[1].strip(), parts[2].strip(), text)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint dict of a yolohand (smp/refine) checkpoint, or None for anything else (YOLO).

    Reads with ``weights_only=True``: a yolohand checkpoint holds only tensors and plain values,
    while an ultralytics one pickles classes and is refused at once (then ultralytics loads it).
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: weights file not found (nothing is downloaded)")
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ValueError, EOFError, IndexError, KeyError):
        return None
    if isinstance(ckpt, dict) and isinstance(ckpt.get(META_KEY), dict):
        return ckpt
    return None


def _check_archive(path: Path) -> None:
    """YolohandError unless ``path`` is a complete zip archive, the format torch.save writes."""
    import zipfile

    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        what = "empty"
    elif head.startswith(b"PK"):
        what = "a truncated or damaged archive"
    else:
        try:
            head.decode("utf-8")
            what = "text"
        except UnicodeDecodeError:
            what = "not a zip archive"
    raise YolohandError(f"{path}: not a PyTorch checkpoint ({what}); expected a .pt written by torch.save: a YOLO-seg "
                        "checkpoint from ultralytics, or an smp/refine checkpoint from yolohand train")


def _family_of(path: Path, ckpt: dict[str, Any] | None) -> str:
    if ckpt is None:
        return "yolo"
    family = ckpt[META_KEY].get("family")
    if family not in FAMILIES:
        raise YolohandError(f"{path}: unknown model family {family!r} in its metadata (expected one of {', '.join(FAMILIES)})")
    return family


def load_network(path: str | os.PathLike, *, batch: int = 1, **options: Any):
    """Load a first-stage checkpoint (yolo or smp) as a :class:`yolohand.models.predict.Network`.

    ``options``: ``imgsz``, ``device``, ``half`` for every family; ``conf``, ``iou``, ``max_det``
    for YOLO (ignored by the others).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    family = _family_of(path, ckpt)
    if family == "refine":
        raise YolohandError(f"{path}: a refiner checkpoint; pass it with --refiner next to a YOLO -w checkpoint")
    if family == "smp":
        from yolohand.models.smp.predict import load_network as load_smp

        return load_smp(path, ckpt, batch=batch, **_only(options, "imgsz", "device", "half"))
    from yolohand.models.yolo.predict import load_network as load_yolo

    return load_yolo(path, batch=batch, **_only(options, "imgsz", "device", "conf", "iou", "max_det", "half"))


def load_refiner(path: str | os.PathLike, **options: Any):
    """Load a ``refine`` checkpoint as a :class:`yolohand.models.predict.Refiner`."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if _family_of(path, ckpt) != "refine":
        raise YolohandError(f"{path}: not a refiner checkpoint (train one with --model refine:ARCH:ENCODER)")
    from yolohand.models.refine.predict import load_refiner as load

    return load(path, ckpt, **_only(options, "device", "half"))


def _only(options: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The given, non-None options among ``keys``."""
    return {k: v for k, v in options.items() if k in keys and v is not None}
