"""``--model`` specs and yolohand checkpoints (the smp and refine families; YOLO's are ultralytics').

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

from yolohand.core.classes import CLASSES
from yolohand.errors import YolohandError

__all__ = ["FAMILIES", "META_KEY", "ModelSpec", "parse_model", "read_checkpoint", "family_of", "checkpoint_meta",
           "archive_problem"]

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


def archive_problem(path: Path) -> str | None:
    """None when ``path`` is a complete zip archive (the format torch.save writes), else what it is
    instead: "empty", "a truncated or damaged archive", "text" or "not a zip archive"."""
    import zipfile

    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty"
    if head.startswith(b"PK"):
        return "a truncated or damaged archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a zip archive"
    return "text"


def _check_archive(path: Path) -> None:
    """YolohandError unless ``path`` is a complete zip archive, the format torch.save writes."""
    what = archive_problem(path)
    if what is None:
        return
    raise YolohandError(f"{path}: not a PyTorch checkpoint ({what}); expected a .pt written by torch.save: a YOLO-seg "
                        "checkpoint from ultralytics, or an smp/refine checkpoint from yolohand train")


def family_of(path: Path, ckpt: dict[str, Any] | None) -> str:
    """The family of a checkpoint read by :func:`read_checkpoint` (None: yolo)."""
    if ckpt is None:
        return "yolo"
    family = ckpt[META_KEY].get("family")
    if family not in FAMILIES:
        raise YolohandError(f"{path}: unknown model family {family!r} in its metadata (expected one of {', '.join(FAMILIES)})")
    return family


def checkpoint_meta(family: str, arch: str, encoder: str, imgsz: int, channels: int = 1, **extra: Any) -> dict[str, Any]:
    """The metadata stored beside the weights (plain values only: loadable with weights_only)."""
    from yolohand import __version__

    return {"family": family, "arch": arch, "encoder": encoder, "imgsz": int(imgsz), "channels": int(channels),
            "names": list(CLASSES), "version": __version__, **extra}
