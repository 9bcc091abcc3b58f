"""Importing a user's own segmentation_models_pytorch model as a yolohand smp checkpoint.

Scripts outside yolohand (the competition's "baseline/seed" ones) save either the whole model
object (``torch.save(model, path)``: a pickle, which runs code from the file when loaded) or its
weights (``torch.save(model.state_dict(), path)``). Those models take the X-ray read by cv2 as
colour (three equal channels), divided by 255 (no mean/std), resized to a square input size, and
give 29 logit channels (multilabel, sigmoid). :func:`import_checkpoint` writes the same weights
as a yolohand checkpoint (``{"yolohand": meta, "state_dict": ...}``, loadable with
``torch.load(weights_only=True)``) whose meta says how to feed the model: ``imgsz``, ``channels``
(the gray image repeated), ``mean``/``std`` (:mod:`yolohand.models.shared.normalise`) and
``model_kwargs`` (smp.create_model options that differ from the defaults, e.g.
``decoder_attention_type``), so ``yolohand predict -w imported.pt -w own.pt`` fuses them.

Every import is verified before anything is written: one image is predicted by the original
model with the baseline's preprocessing (:func:`reference_probs`) and by the new checkpoint
read back the way ``predict`` reads it (``weights_only=True``, the smp network's loader and
preprocessing); the largest
probability difference must stay within ``tolerance``.
"""

from __future__ import annotations

import inspect
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolohand.core.classes import NUM_CLASSES
from yolohand.core.paths import OutputKind, check_output
from yolohand.errors import YolohandError
from yolohand.models.shared.checkpoint import META_KEY, ModelSpec, archive_problem, read_checkpoint
from yolohand.models.shared.normalise import Level, describe

__all__ = [
    "CHECKPOINT", "DEFAULT_TOLERANCE", "Source", "ImportResult", "load_source", "recognise", "model_kwargs",
    "reference_probs", "verification_image", "import_checkpoint",
]

#: Largest |p_original - p_imported| accepted by the round-trip check.
DEFAULT_TOLERANCE = 1e-4
#: smp.create_model arguments that the import sets itself (never stored as ``model_kwargs``).
_OWN_ARGS = ("encoder_name", "encoder_weights", "in_channels", "classes", "activation", "aux_params")
#: Prefixes that wrappers add to every key of a state dict (DataParallel, yolohand/Lightning, torch.compile).
_PREFIXES = ("module.", "model.", "_orig_mod.")


def _is_yolohand_checkpoint(path: Path) -> bool:
    try:
        return read_checkpoint(path) is not None
    except YolohandError:
        return False


#: The output of ``yolohand import``: replaced with ``--force`` only when it is a yolohand checkpoint.
CHECKPOINT = OutputKind("checkpoint", False, "smp/refine checkpoint", _is_yolohand_checkpoint)


@dataclass
class Source:
    """What a file held: ``model`` (the unpickled smp model, eval mode; None for a state dict) and
    ``state`` (name -> tensor, wrapper prefixes removed); ``what`` describes it for messages."""

    model: Any
    state: dict[str, Any]
    what: str


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_checkpoint` wrote and measured.

    ``max_dp``: the largest |p_original - p_yolohand| over the 29 x imgsz x imgsz probabilities
    of the verification image (``image`` says which one).
    """

    src: Path
    dst: Path
    source: str
    arch: str
    encoder: str
    params: int
    imgsz: int
    channels: int
    mean: Level
    std: Level
    max_dp: float
    tolerance: float
    image: str
    seconds: float
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The summary printed by ``yolohand import``."""
        feed = "the gray image repeated" if self.channels > 1 else "the gray image"
        extra = f", {', '.join(f'{k}={v!r}' for k, v in self.model_kwargs.items())}" if self.model_kwargs else ""
        return [
            f"imported {self.src} ({self.source}) as smp:{self.arch}:{self.encoder}{extra}",
            f"  {self.params / 1e6:.2f} M parameters, imgsz {self.imgsz}, {self.channels} channel(s) ({feed}), "
            f"input {describe(self.mean, self.std)}",
            f"  round trip on {self.image}: max |dp| {self.max_dp:.2e} (tolerance {self.tolerance:.0e}), "
            f"original model vs the checkpoint through yolohand's loader",
            *(f"  note: {n}" for n in self.notes),
            f"wrote {self.dst} in {self.seconds:.1f} s; use it like any smp checkpoint: yolohand predict -w {self.dst} ...",
        ]


# --------------------------------------------------------------------------- reading the source
def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without a prefix every key shares (``module.``, ``model.``, ``_orig_mod.``)."""
    state = dict(state)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _tensor_dict(obj: Any) -> dict[str, Any] | None:
    """A state dict found in ``obj`` (itself, or its ``state_dict``/``model_state_dict``/``model``
    entry), None when there is none."""
    import torch

    def is_state(d: Any) -> bool:
        return isinstance(d, Mapping) and bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in d.items())

    if is_state(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if is_state(obj.get(key)):
                return dict(obj[key])
    return None


def _unwrap(obj: Any) -> Any:
    """The model inside ``obj``: DataParallel's ``.module``, a dict's ``"model"`` module."""
    import torch

    if isinstance(obj, Mapping) and isinstance(obj.get("model"), torch.nn.Module):
        obj = obj["model"]
    while isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        obj = obj.module
    return obj


def load_source(src: Path, *, trust_pickle: bool = False) -> Source:
    """Read ``src``: a state dict (loaded with ``weights_only=True``) or, with ``trust_pickle``, a
    pickled smp model (``weights_only=False``: runs code from the file). YolohandError naming the
    file for anything else: not a torch file, a pickle without ``trust_pickle``, not an smp model.
    """
    import torch

    what = archive_problem(src)
    if what is not None:
        raise YolohandError(f"{src}: not a torch file ({what}); expected a model or a state_dict saved with torch.save")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise YolohandError(f"{src}: a pickled Python object (e.g. a whole model saved with torch.save(model)); "
                                "loading it runs code from the file: pass --trust-pickle if you trust where it "
                                "came from, or save model.state_dict() and pass --model smp:ARCH:ENCODER") from None
        obj = _unpickle(src)
    except Exception as exc:  # damaged archive, missing records...
        raise YolohandError(f"{src}: unreadable torch file ({type(exc).__name__}: {_first_line(exc)})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get(META_KEY), Mapping):
        raise YolohandError(f"{src}: already a yolohand checkpoint; nothing to import (use it with -w as it is)")
    state = _tensor_dict(obj)
    if state is not None:
        return Source(None, _strip_prefixes(state), "a state_dict")
    model = _unwrap(obj)
    if not _is_smp_model(model):
        kind = f"a dict with keys {', '.join(map(repr, list(obj)[:5]))}" if isinstance(obj, Mapping) else \
            f"a pickled {type(model).__module__}.{type(model).__qualname__}"
        raise YolohandError(f"{src}: holds {kind}, not a segmentation_models_pytorch model or a state_dict")
    model = model.float().eval()  # a model saved in half precision is verified (and stored) in float32
    return Source(model, _strip_prefixes(model.state_dict()), "a pickled smp model")


def _unpickle(src: Path) -> Any:
    import torch

    from yolohand.models.shared.network import import_smp

    import_smp()  # the pickle names smp's classes: import them with the hub offline
    try:
        return torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:  # a class from the user's own code, another smp version...
        raise YolohandError(f"{src}: cannot unpickle ({type(exc).__name__}: {_first_line(exc)}); save "
                            "model.state_dict() instead and pass --model smp:ARCH:ENCODER") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _is_smp_model(obj: Any) -> bool:
    from yolohand.models.shared.network import import_smp

    return isinstance(obj, import_smp().base.SegmentationModel)


# --------------------------------------------------------------------------- recognising the model
def recognise(model: Any) -> ModelSpec | None:
    """``smp:ARCH:ENCODER`` of an smp model object (arch as smp.create_model spells it, e.g.
    ``UnetPlusPlus``), None when the class is not one of smp's own or the encoder is not recorded.

    The encoder comes from the model's hub config (``model.config["encoder_name"]``, smp >= 0.4),
    else from ``model.name`` (``"u-resnet18"``: smp's ``<arch prefix>-<encoder>``).
    """
    from yolohand.models.shared.network import import_smp

    smp = import_smp()
    arch = type(model).__name__
    if smp.MODEL_ARCHITECTURES_MAPPING.get(arch.lower()) is not type(model):
        return None  # a subclass may change forward(): rebuilding it as its parent would not be the same model
    encoder = (getattr(model, "config", None) or {}).get("encoder_name")
    if not encoder and "-" in str(getattr(model, "name", "")):
        encoder = str(model.name).split("-", 1)[1]
    return ModelSpec("smp", arch, encoder, f"smp:{arch}:{encoder}") if encoder else None


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (what the checkpoint stores); ValueError for non-plain values."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(type(value).__name__)


def model_kwargs(model: Any) -> dict[str, Any]:
    """The smp.create_model options of ``model`` that differ from its class's defaults (plain
    values), e.g. ``{"decoder_attention_type": "scse"}``; {} when the model keeps no config."""
    config = dict(getattr(model, "config", None) or {})
    params = inspect.signature(type(model).__init__).parameters
    out = {}
    for key, value in config.items():
        if key in _OWN_ARGS or key.startswith("_"):
            continue
        default = params[key].default if key in params else inspect.Parameter.empty
        try:
            value = _plain(value)
        except ValueError as exc:
            raise YolohandError(f"model option {key}={value!r} ({exc}) cannot be stored in a checkpoint") from None
        if default is inspect.Parameter.empty or value != _plain(default):
            out[key] = value
    return out


def _fit_problem(model: Any, state: Mapping[str, Any]) -> str | None:
    """Why ``state`` does not load into ``model`` (missing/unexpected keys, shapes), None if it does."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {k!r} {tuple(state[k].shape)} where "
                     f"{tuple(own[k].shape)} is expected")
    return "; ".join(parts) or None


def _classes(state: Mapping[str, Any]) -> int | None:
    """Output channels of the segmentation head in ``state`` (None when it has no such key)."""
    w = state.get("segmentation_head.0.weight")
    return None if w is None else int(w.shape[0])


# --------------------------------------------------------------------------- verification
def verification_image(image: str | os.PathLike | None, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(gray uint8 (H, W) as yolohand reads it, colour uint8 (H, W, 3) as cv2.imread gives it, a
    description). None: one synthetic radiograph of ``size`` px (:mod:`yolohand.data.phantom`,
    seed 0; deterministic), whose colour version is the gray image in three equal channels."""
    import cv2

    from yolohand.data.layout import read_image

    if image is None:
        from yolohand.data.phantom import xray_hand
        from yolohand.data.synth import ImageJob

        gray = xray_hand(ImageJob("", "", "ID001", "image.png", int(size), (0,), (0,), False, False)).image
        return gray, np.repeat(gray[..., None], 3, axis=2), f"a synthetic X-ray ({size} px, seed 0)"
    path = Path(image)
    gray = read_image(path)
    colour = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    return gray, colour, str(path)


def reference_probs(model: Any, colour: np.ndarray, imgsz: int, channels: int, mean: Level, std: Level) -> np.ndarray:
    """float32 (29, imgsz, imgsz) sigmoid probabilities of the user's own model, preprocessed the
    baseline's way: uint8 (H, W, 3) colour image (equal channels for an X-ray; channel 0 alone
    for a 1-channel model), cv2.resize to imgsz x imgsz with INTER_AREA, / 255, (x - mean) / std
    per channel, (1, C, S, S) float32, forward on the CPU (eval mode), sigmoid."""
    import cv2
    import torch

    small = cv2.resize(colour, (imgsz, imgsz), interpolation=cv2.INTER_AREA).reshape(imgsz, imgsz, -1)[..., :channels]
    m, s = (np.asarray(v, dtype=np.float32).reshape(-1) for v in (mean, std))
    x = (small.astype(np.float32) / 255.0 - m) / s
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        out = model.eval()(x)
    out = out[0] if isinstance(out, (tuple, list)) else out  # (masks, labels) with a classification head
    return torch.sigmoid(out.float())[0].numpy()


def _yolohand_probs(path: Path, gray: np.ndarray) -> np.ndarray:
    """float32 (29, S, S) probabilities of the checkpoint at ``path`` through yolohand's loader: the
    steps of :func:`yolohand.models.family.load_network` for an smp file (a family does not import
    the dispatch module), then the network's own preprocessing and forward."""
    import torch

    from yolohand.models.shared.checkpoint import family_of
    from yolohand.models.smp.predict import load_network

    ckpt = read_checkpoint(path)  # weights_only=True: what predict and ensemble read
    if family_of(path, ckpt) != "smp":
        raise YolohandError(f"{path}: written as an smp checkpoint but not read back as one (a yolohand bug)")
    net = load_network(path, ckpt, device="cpu")
    return torch.sigmoid(net.logits([gray]))[0].cpu().numpy()


# --------------------------------------------------------------------------- the import
def _levels(name: str, value: Level, channels: int) -> Level:
    """``value`` checked: finite, one number or ``channels`` numbers (std: > 0)."""
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) not in (1, channels):
        raise YolohandError(f"--{name} {value!r}: expected one number or {channels} (one per channel)")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or (name == "std" and min(values) <= 0):
        raise YolohandError(f"--{name} {value!r}: expected finite numbers" + (" > 0" if name == "std" else ""))
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def _resolve_spec(src: Path, source: Source, spec: ModelSpec | None) -> ModelSpec:
    """The smp:ARCH:ENCODER to build: ``spec`` (--model) or, for a pickled model, recognised from it."""
    if spec is not None and spec.family != "smp":
        raise YolohandError(f"--model {spec.text!r}: expected smp:ARCH:ENCODER, e.g. smp:Unet:resnet18")
    found = recognise(source.model) if source.model is not None else None
    if source.model is not None and found is None and spec is None:
        raise YolohandError(f"{src}: a {type(source.model).__name__} whose arch/encoder cannot be recognised; "
                            "pass --model smp:ARCH:ENCODER")
    if spec is None and found is None:
        raise YolohandError(f"{src}: {source.what} holds weights only; pass --model smp:ARCH:ENCODER "
                            "(the arch and encoder it was built with, e.g. smp:Unet:resnet18)")
    if spec is not None and found is not None and (spec.arch.lower(), spec.encoder) != (found.arch.lower(), found.encoder):
        raise YolohandError(f"{src}: the model is {found.text}, not --model {spec.text}")
    return found or spec


def import_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    imgsz: int,
    spec: ModelSpec | None = None,
    channels: int | None = None,
    mean: Level = 0.0,
    std: Level = 1.0,
    trust_pickle: bool = False,
    image: str | os.PathLike | None = None,
    force: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ImportResult:
    """Write the smp model in ``src`` as a yolohand smp checkpoint at ``dst``, verified first.

    ``src``: ``torch.save(model)`` (needs ``trust_pickle``) or ``torch.save(model.state_dict())``
    (needs ``spec``, from ``parse_model("smp:ARCH:ENCODER")``); 29 output classes. ``imgsz``: the
    square input size it was trained at (a multiple of 32). ``channels``: input channels, each the
    gray image (None: the pickled model's own, else 3). ``mean``/``std``: its input normalisation
    in 0..1 units, one number or one per channel (the baseline's: 0 and 1). ``image``: the
    verification image (None: a synthetic X-ray). ``force``: replace ``dst`` if it is a previous
    yolohand checkpoint. Refuses (YolohandError naming the file, nothing written) when the
    probabilities of the original and the written checkpoint differ by more than ``tolerance``.
    """
    from yolohand.models.shared.checkpoint import checkpoint_meta

    start = time.perf_counter()
    if int(imgsz) < 32 or int(imgsz) % 32:
        raise YolohandError(f"--imgsz {imgsz}: smp encoders need a multiple of 32 (the size the model was trained at)")
    if channels is not None and channels not in (1, 3):
        raise YolohandError(f"--channels {channels}: expected 1 or 3 (the gray image, or it repeated in 3 channels)")
    src, imgsz = Path(src), int(imgsz)
    if not src.is_file():
        raise YolohandError(f"{src}: " + ("is a folder, not a checkpoint file" if src.is_dir() else "file not found"))
    if image is not None and not Path(image).is_file():
        raise YolohandError(f"{image}: verification image not found")
    dst = check_output(dst, CHECKPOINT, [src, image], force, flag="DST")  # before any work
    source = load_source(src, trust_pickle=trust_pickle)
    spec = _resolve_spec(src, source, spec)
    kwargs, channels, notes = _model_options(src, source, channels)
    mean, std = _levels("mean", mean, channels), _levels("std", std, channels)
    model = _rebuild(src, spec, source.state, channels, kwargs)
    meta = checkpoint_meta("smp", type(model).__name__, spec.encoder, imgsz, channels, mean=mean, std=std,
                           model_kwargs=kwargs, imported_from=src.name)
    max_dp, image_text = _verify_and_write(src, dst, model if source.model is None else source.model, model, meta, image,
                                       tolerance, force)
    return ImportResult(src, dst, source.what, meta["arch"], spec.encoder, sum(int(p.numel()) for p in model.parameters()),
                        imgsz, channels, mean, std, max_dp, tolerance, image_text, time.perf_counter() - start, kwargs,
                        tuple(notes))


def _model_options(src: Path, source: Source, channels: int | None) -> tuple[dict[str, Any], int, list[str]]:
    """(smp.create_model options to store, input channels, notes) of what ``src`` held."""
    if source.model is None:
        return {}, 3 if channels is None else channels, []
    config = getattr(source.model, "config", None) or {}
    if config.get("activation") is not None:
        raise YolohandError(f"{src}: the model ends in activation={config['activation']!r}; yolohand needs its "
                            "logits (it applies the sigmoid itself): rebuild it with activation=None")
    own = config.get("in_channels")  # None for a model without smp's hub config: --channels, else 3
    if own is not None and channels is not None and channels != int(own):
        raise YolohandError(f"{src}: the model takes {own} input channel(s), not --channels {channels}")
    if own is not None:
        channels = int(own)
    channels = 3 if channels is None else channels
    notes = ["its classification head (aux_params) is left out: only the masks are predicted"] \
        if config.get("aux_params") is not None else []
    return model_kwargs(source.model), channels, notes


def _rebuild(src: Path, spec: ModelSpec, state: dict[str, Any], channels: int, kwargs: dict[str, Any]):
    """The model as yolohand builds it (:func:`yolohand.models.shared.network.build_model`) with
    ``state`` loaded (a classification head left out), in eval mode; YolohandError if it does not fit."""
    from yolohand.models.shared.network import build_model

    state = {k: v for k, v in state.items() if not k.startswith("classification_head.")}
    classes = _classes(state)
    if classes is not None and classes != NUM_CLASSES:
        raise YolohandError(f"{src}: the model has {classes} output classes; yolohand needs {NUM_CLASSES} "
                            "(the bones in class order, multilabel)")
    model = build_model(spec.arch, spec.encoder, in_channels=channels, classes=NUM_CLASSES, quiet=True, **kwargs)
    problem = _fit_problem(model, state)
    if problem:
        raise YolohandError(f"{src}: its weights do not fit smp:{spec.arch}:{spec.encoder} with {channels} input "
                            f"channel(s): {problem} (check --model and --channels)")
    model.load_state_dict(state)
    return model.eval()


def _verify_and_write(src: Path, dst: Path, original: Any, model: Any, meta: dict[str, Any],
                      image: str | os.PathLike | None, tolerance: float, force: bool) -> tuple[float, str]:
    """Save ``model`` with ``meta`` to a temporary file, predict the verification image with it
    (read back as predict reads it) and with ``original`` (:func:`reference_probs`); within
    ``tolerance``, copy the file to ``dst`` atomically. (max |dp|, the image's description)."""
    import torch

    from yolohand.core.atomic import atomic_file
    from yolohand.interrupts import check as check_interrupt

    imgsz, channels = meta["imgsz"], meta["channels"]
    gray, colour, image_text = verification_image(image, min(2 * imgsz, 2048))
    reference = reference_probs(original, colour, imgsz, channels, meta["mean"], meta["std"])
    with tempfile.TemporaryDirectory(prefix="yolohand-import-") as tmp:
        staged = Path(tmp) / "checkpoint.pt"
        torch.save({META_KEY: meta, "state_dict": model.state_dict()}, staged)
        max_dp = float(np.abs(_yolohand_probs(staged, gray).astype(np.float64) - reference).max())
        if not max_dp <= tolerance:  # NaN fails too
            unequal = colour.ndim == 3 and not (colour == colour[..., :1]).all()
            hint = ("the image's colour channels differ, while yolohand feeds the gray image repeated: verify on a "
                    "gray X-ray" if unequal else "the model rebuilt from its arch, encoder and options computes "
                    "otherwise (an option smp does not record, or another smp version)")
            raise YolohandError(f"{src}: the imported checkpoint predicts {image_text} differently from the original "
                                f"model (max |dp| {max_dp:.2e} > {tolerance:.0e}); nothing written: {hint}")
        check_interrupt()  # a Ctrl-C a library swallowed while the models were built: nothing is written
        with open(staged, "rb") as fh_in, atomic_file(dst, force=force, mode="wb", kind=CHECKPOINT) as fh_out:
            shutil.copyfileobj(fh_in, fh_out)
    return max_dp, image_text
