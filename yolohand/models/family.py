"""The one place that knows the model families: ``--model`` specs, checkpoint recognition, loading.

Families:

- ``yolo``: ultralytics YOLO-seg; ``--model`` is a ``*-seg.yaml`` or a local ``.pt``
  (:mod:`yolohand.models.yolo`);
- ``smp``: a segmentation_models_pytorch model with 29 sigmoid channels over the whole image;
  ``--model smp:ARCH:ENCODER`` (:mod:`yolohand.models.smp`);
- ``refine``: a second stage that re-segments each bone in a full-resolution crop of its YOLO
  box; ``--model refine:ARCH:ENCODER`` (:mod:`yolohand.models.refine`).

Checkpoint reading and ``--model`` parsing live in :mod:`yolohand.models.shared.checkpoint`
(re-exported here); this module only dispatches loading to the family a checkpoint names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yolohand.errors import YolohandError
from yolohand.models.shared.checkpoint import FAMILIES, META_KEY, ModelSpec, family_of, parse_model, read_checkpoint

__all__ = ["FAMILIES", "META_KEY", "ModelSpec", "parse_model", "read_checkpoint", "load_network", "load_refiner"]


def load_network(path: str | os.PathLike, *, batch: int = 1, **options: Any):
    """Load a first-stage checkpoint (yolo or smp) as a :class:`yolohand.models.predict.Network`.

    ``options``: ``imgsz``, ``device``, ``half`` for every family; ``conf``, ``iou``, ``max_det``
    for YOLO; ``window``, ``stride`` for smp (ignored by the others).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    family = family_of(path, ckpt)
    if family == "refine":
        raise YolohandError(f"{path}: a refiner checkpoint; pass it with --refiner next to a YOLO -w checkpoint")
    if family == "smp":
        from yolohand.models.smp.predict import load_network as load_smp

        return load_smp(path, ckpt, batch=batch, **_only(options, "imgsz", "device", "half", "window", "stride"))
    from yolohand.models.yolo.predict import load_network as load_yolo

    return load_yolo(path, batch=batch, **_only(options, "imgsz", "device", "conf", "iou", "max_det", "half"))


def load_refiner(path: str | os.PathLike, **options: Any):
    """Load a ``refine`` checkpoint as a :class:`yolohand.models.predict.Refiner`."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if family_of(path, ckpt) != "refine":
        raise YolohandError(f"{path}: not a refiner checkpoint (train one with --model refine:ARCH:ENCODER)")
    from yolohand.models.refine.predict import load_refiner as load

    return load(path, ckpt, **_only(options, "device", "half"))


def _only(options: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The given, non-None options among ``keys``."""
    return {k: v for k, v in options.items() if k in keys and v is not None}
