"""Building segmentation_models_pytorch networks offline, and their yolohand checkpoints.

``build_model("UnetPlusPlus", "resnet34", in_channels=1, classes=29)`` never touches the
network: encoder weights are random unless ``encoder_weights`` names a local file (a state dict
of the encoder, or a full model, as saved by torch) or ``"imagenet"`` with the weights already in
the Hugging Face cache (``HF_HUB_OFFLINE=1`` is set before segmentation_models_pytorch is
imported, so a missing cache fails at once instead of retrying for ~25 s). A 3-channel first
convolution loaded into a 1-channel model is summed over its input channels (the same network
applied to a gray image repeated three times).

Checkpoint (``weights/best.pt``): ``{"yolohand": meta, "state_dict": ...}`` where ``meta`` holds
family, arch, encoder, imgsz, channels, names, version (:func:`checkpoint_meta`; an imported
checkpoint also ``mean``, ``std`` and ``model_kwargs``: :mod:`yolohand.models.smp.importer`), read back
with ``torch.load(weights_only=True)`` by :func:`yolohand.models.shared.checkpoint.read_checkpoint`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from yolohand.core.classes import CLASSES
from yolohand.errors import YolohandError

__all__ = ["import_smp", "build_model", "load_pretrained", "export_weights", "model_from_checkpoint"]


def import_smp():
    """segmentation_models_pytorch, imported with the Hugging Face hub offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise YolohandError(f"segmentation_models_pytorch is not installed ({exc}); pip install segmentation-models-pytorch") from None
    return smp


def _check_names(smp, arch: str, encoder: str) -> None:
    archs = {a.lower(): a for a in smp.MODEL_ARCHITECTURES_MAPPING} if hasattr(smp, "MODEL_ARCHITECTURES_MAPPING") else {}
    if archs and arch.lower() not in archs:
        raise YolohandError(f"smp arch {arch!r}: unknown; expected one of {', '.join(sorted(archs.values()))}")
    names = smp.encoders.get_encoder_names()
    if encoder not in names and not encoder.startswith("tu-"):
        import difflib

        close = difflib.get_close_matches(encoder, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise YolohandError(f"smp encoder {encoder!r}: unknown{hint}; see segmentation_models_pytorch's encoder list")


def build_model(arch: str, encoder: str, in_channels: int = 1, classes: int = len(CLASSES),
                encoder_weights: str | None = None, quiet: bool = False, **kwargs: Any):
    """A segmentation_models_pytorch model (torch.nn.Module) with ``classes`` logit channels.

    ``encoder_weights``: None (random), a local file, or a name such as ``"imagenet"`` that must
    already be in the local cache. Prints one line saying where the encoder's weights came from.
    """
    smp = import_smp()
    _check_names(smp, arch, encoder)
    named = encoder_weights if encoder_weights and not Path(str(encoder_weights)).is_file() else None
    try:
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=named, in_channels=in_channels,
                                 classes=classes, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # offline hub miss, bad names
        why = "not in the local cache (nothing is downloaded)" if named else type(exc).__name__
        raise YolohandError(f"smp {arch}/{encoder} encoder_weights={named!r}: {why}: {str(exc).splitlines()[0]}") from None
    if encoder_weights and not named:
        _load_encoder_file(model, Path(str(encoder_weights)))
    source = encoder_weights or "random initialisation (no encoder_weights given; nothing is downloaded)"
    if not quiet:
        print(f"yolohand: {arch}/{encoder} encoder weights: {source}", file=sys.stderr)
    return model


def _load_encoder_file(model, path: Path) -> None:
    """Load an encoder state dict from ``path`` (a ``model.encoder`` or whole-model dict, prefixes allowed)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise YolohandError(f"{path}: not a readable torch state dict ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise YolohandError(f"{path}: expected a state dict of encoder weights")
    state = {k.removeprefix("model.").removeprefix("encoder."): v for k, v in state.items()}
    own = model.encoder.state_dict()
    for k, v in list(state.items()):  # RGB first conv into a gray model: sum the input channels
        if k in own and v.ndim == 4 and v.shape[1] != own[k].shape[1] and own[k].shape[1] == 1:
            state[k] = v.sum(dim=1, keepdim=True)
    missing, _ = model.encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if len(missing) == len(own):
        raise YolohandError(f"{path}: none of its tensors match the encoder's parameter names")


def load_pretrained(model, path: str | os.PathLike, family: str, arch: str, encoder: str) -> None:
    """Start ``model`` from a yolohand checkpoint's weights (fine-tuning); YolohandError if it does not fit."""
    from yolohand.models.shared.checkpoint import read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = (ckpt or {}).get("yolohand", {})
    if (meta.get("family"), meta.get("arch"), meta.get("encoder")) != (family, arch, encoder):
        got = f"{meta.get('family')}:{meta.get('arch')}:{meta.get('encoder')}" if meta else "not a yolohand smp/refine checkpoint"
        raise YolohandError(f"pretrained {path}: expected a {family}:{arch}:{encoder} checkpoint, got {got}")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise YolohandError(f"pretrained {path}: weights do not fit ({str(exc).splitlines()[0]})") from None
    print(f"yolohand: starting from {path} (its epoch {meta.get('epoch', '?')})", file=sys.stderr)


def export_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` (a yolohand smp/refine checkpoint) as a small inference file: metadata and fp16
    weights only (what ultralytics' ``strip_optimizer`` does for YOLO). Loading casts back to fp32."""
    import torch

    from yolohand.core.atomic import atomic_file
    from yolohand.models.shared.checkpoint import read_checkpoint

    ckpt = read_checkpoint(src)
    if ckpt is None:
        raise YolohandError(f"{src}: not a yolohand smp/refine checkpoint")
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    with atomic_file(dst, force=True, mode="wb") as fh:
        torch.save({"yolohand": ckpt["yolohand"], "state_dict": state}, fh)
    return Path(dst)


def model_from_checkpoint(path: Path, ckpt: dict[str, Any], in_channels: int | None = None):
    """(model in eval mode with the checkpoint's weights, meta); YolohandError naming the file.

    The model is built from the meta's arch, encoder, ``channels`` (input channels, default 1),
    class names and ``model_kwargs`` (further smp.create_model arguments of an imported model,
    e.g. ``decoder_attention_type``; default none). How its input is normalised is the caller's
    (:func:`yolohand.models.shared.normalise.meta_normalisation`).
    """
    meta = ckpt["yolohand"]
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise YolohandError(f"{path}: no state_dict in this yolohand checkpoint")
    state = {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("loss")}
    channels = in_channels if in_channels is not None else int(meta.get("channels", 1))
    kwargs = meta.get("model_kwargs") or {}
    model = build_model(meta["arch"], meta["encoder"], in_channels=channels, classes=len(meta.get("names", CLASSES)),
                        quiet=True, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise YolohandError(f"{path}: weights do not fit {meta['arch']}/{meta['encoder']} ({str(exc).splitlines()[0]})") from None
    return model.eval(), meta
