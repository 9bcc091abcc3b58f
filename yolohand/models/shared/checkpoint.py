"""``--model`` specs and yolohand checkpoints (the smp and refine families; YOLO's are ultralytics').

A non-YOLO checkpoint is a plain dict saved by torch with a ``"yolohand"`` entry (family, arch,
encoder, imgsz, channels, class names, version: :data:`META_KEY`) beside the weights, so it loads
without the training config and with ``torch.load(weights_only=True)``. Anything else is
handed to ultralytics.

The one place that reads them: :func:`read_checkpoint` validates the metadata (:func:`check_meta`:
one line naming the file and the field: ``imgsz: -64 is not ...``), reorders the output channels of
a checkpoint whose 29 class names come in another order (by name, with a warning), and warns when
weights are not finite. :func:`read_resumable` reads a run's ``last.pt`` for ``--resume``: a
truncated, damaged or foreign file is ``not a readable checkpoint ...; start the run over with --force``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolohand.core.classes import CLASSES
from yolohand.errors import YolohandError

__all__ = ["FAMILIES", "META_KEY", "ModelSpec", "parse_model", "read_checkpoint", "family_of", "checkpoint_meta",
           "archive_problem", "check_meta", "read_resumable", "checkpoint_problem"]

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
        ckpt[META_KEY] = check_meta(path, ckpt[META_KEY])
        _in_class_order(path, ckpt)
        _warn_not_finite(path, ckpt.get("state_dict"))
        return ckpt
    return None


#: Largest image side a checkpoint's ``imgsz`` may name (the largest side yolohand reads).
_MAX_SIDE = 65536


def check_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (a checkpoint's ``"yolohand"`` entry) when its fields are what loading needs; else
    YolohandError ``FILE: checkpoint metadata FIELD: VALUE is not ...`` (one line, the first bad field).

    Checked: family; arch and encoder names; imgsz (a whole number 1..65536, a multiple of the
    network's side ``multiple`` when given, unless it predicts by windows); channels; the 29 class names (any order: see
    :func:`read_checkpoint`); and, when present, epoch, margin, mean/std and model_kwargs."""
    def bad(field: str, want: str) -> YolohandError:
        return YolohandError(f"{path}: checkpoint metadata {field}: {meta.get(field)!r} is not {want}")

    def whole(field: str, low: int, high: int, default: int | None = None) -> int | None:
        value = meta.get(field, default)
        if value is None and default is None and field not in meta:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(field, f"a whole number in {low}..{high}")
        return value

    if meta.get("family") not in FAMILIES:
        raise bad("family", f"one of {', '.join(FAMILIES)}")
    for field in ("arch", "encoder"):
        if not isinstance(meta.get(field), str) or not meta[field].strip():
            raise bad(field, "a segmentation_models_pytorch name")
    imgsz = whole("imgsz", 1, _MAX_SIDE, default=0)
    whole("channels", 1, 64, default=1)
    multiple = whole("multiple", 1, 4096)
    if multiple is not None and imgsz % multiple and not meta.get("window"):  # windows are cut from any plane
        raise bad("imgsz", f"a multiple of the network's side multiple ({multiple})")
    whole("epoch", 0, 10**9)
    names = meta.get("names", list(CLASSES))
    if not isinstance(names, (list, tuple)) or sorted(map(str, names)) != sorted(CLASSES):
        if not isinstance(names, (list, tuple)):
            why = f"{type(names).__name__}, not a list of the {len(CLASSES)} class names"
        else:
            extra = next((n for n in names if n not in CLASSES), None)
            why = (f"{extra!r} is not one of the {len(CLASSES)} classes" if extra is not None else
                   f"{len(names)} names, not the {len(CLASSES)} classes each once")
        raise YolohandError(f"{path}: checkpoint metadata names: {why}")
    if "margin" in meta and not _number(meta["margin"], low=0.0):
        raise bad("margin", "a number >= 0")
    for field in ("mean", "std"):
        value = meta.get(field)
        if value is not None and not (_number(value) or (isinstance(value, (list, tuple)) and value
                                                         and all(_number(v) for v in value))):
            raise bad(field, "a number or a list of numbers")
        if field == "std" and value is not None and any(float(v) <= 0 for v in (value if isinstance(value, (list, tuple)) else [value])):
            raise bad(field, "positive")
    if meta.get("model_kwargs") is not None and not isinstance(meta["model_kwargs"], dict):
        raise bad("model_kwargs", "a mapping of segmentation_models_pytorch arguments")
    return meta


def _number(value: Any, low: float = -math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def _in_class_order(path: Path, ckpt: dict[str, Any]) -> None:
    """A checkpoint whose class names are yolohand's in another order: its output channels (the
    ``segmentation_head`` tensors with one row per class) are put in yolohand's order, with a warning."""
    names = [str(n) for n in ckpt[META_KEY].get("names", CLASSES)]
    if names == list(CLASSES):
        return
    order = [names.index(c) for c in CLASSES]
    state = ckpt.get("state_dict")
    rows = {k: v for k, v in state.items() if "segmentation_head" in k and getattr(v, "ndim", 0) and v.shape[0] == len(names)} \
        if isinstance(state, dict) else {}
    if not rows:
        raise YolohandError(f"{path}: checkpoint metadata names: the classes are in another order than yolohand's and "
                            "the network's output layer (segmentation_head) is not found to reorder them")
    for key, tensor in rows.items():
        state[key] = tensor[order].contiguous()
    ckpt[META_KEY] = dict(ckpt[META_KEY], names=list(CLASSES))
    first = next(i for i, (a, b) in enumerate(zip(names, CLASSES)) if a != b)
    warnings.warn(f"{path}: its class names are in another order than yolohand's (channel {first} is {names[first]!r}, "
                  f"not {CLASSES[first]!r}); its output channels are reordered by name", stacklevel=3)


def _warn_not_finite(path: Path, state: Any) -> None:
    """One warning when weights of ``state`` are NaN or infinite (its predictions would be empty)."""
    import torch

    if not isinstance(state, dict):
        return
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        warnings.warn(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}): this model cannot "
                      "predict anything; retrain it or use another checkpoint", stacklevel=3)


def checkpoint_problem(path: Path) -> str | None:
    """None when ``path`` is a complete, undamaged archive as torch.save writes it; else what it is
    instead (:func:`archive_problem`, "a zip archive that torch did not write", "damaged: bad CRC")."""
    import zipfile

    what = archive_problem(path)
    if what is not None:
        return what
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist()):
                return "a zip archive that torch did not write"
            damaged = zf.testzip()  # every member's CRC: a torch archive is stored uncompressed, so this is quick
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"damaged: {' '.join(str(exc).split())}"
    return None if damaged is None else f"damaged: bad CRC in {damaged}"


def read_resumable(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    """The checkpoint dict of a run's ``last.pt`` for ``--resume``; YolohandError naming the file,
    saying it is not a readable checkpoint and to start over with ``--force``, when it is truncated,
    damaged, not written by torch or does not unpickle.

    ``trust_pickle``: an ultralytics ``last.pt`` (pickled classes, loaded with ``weights_only=False``:
    the run's own file); otherwise ``weights_only=True`` (the smp/refine families' Lightning state)
    and the yolohand metadata must be there and valid."""
    import pickle

    import torch

    path = Path(path)

    def unreadable(why: str) -> YolohandError:
        return YolohandError(f"{path}: not a readable checkpoint ({why}); it cannot be resumed: start the run over with "
                             "--force")

    if not path.is_file():
        raise YolohandError(f"{path}: nothing to resume (no such file)")
    what = checkpoint_problem(path)
    if what is not None:
        raise unreadable(what)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError:
        if trust_pickle:
            raise unreadable("its pickled data is damaged") from None
        raise unreadable("it holds pickled Python objects, not the training state of a yolohand smp/refine run: an "
                         "ultralytics or whole-model file?") from None
    except Exception as exc:  # noqa: BLE001 - unpickling runs arbitrary code paths; any failure means unreadable
        raise unreadable(" ".join(str(exc).split()[:24]) or type(exc).__name__) from None
    if not isinstance(ckpt, dict):
        raise unreadable(f"holds a {type(ckpt).__name__}, not a checkpoint dict")
    if not trust_pickle:
        if not isinstance(ckpt.get(META_KEY), dict) or "optimizer_states" not in ckpt:
            raise unreadable("not the last.pt of a yolohand smp/refine run: no training state")
        check_meta(path, ckpt[META_KEY])
    return ckpt


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
