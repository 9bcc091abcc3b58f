"""What a network needs from a run, checked before training: the input multiple, batch >= 2
for BatchNorm on pooled maps, and memory. One line naming the model and the fix when it does not fit.

Found by probing, not by a table, so every arch/encoder pair is covered:

- input multiple: the smallest side step that still gives logits of the input's size (1 for
  decoders that resize, e.g. smp's Unet on ResNets; else the encoder's output stride: 32 for most,
  16 for DeepLabV3Plus); another side fails inside the network or comes back resized;
- batch: a BatchNorm that sees a 1 x 1 map (the image-pooling branch of DeepLabV3Plus' ASPP,
  UPerNet's pyramid pooling) cannot train on one sample (``Expected more than 1 value per
  channel``); found by hooks during one train-mode forward pass of 2 samples at 64 px;
- memory: the activations saved for backward in that pass (``saved_tensors_hooks``, each storage
  once, weights apart) scaled by pixels and
  batch, plus weights, gradients and two Adam moments (16 bytes a parameter), against what the
  device has free: an fp32 estimate (AMP keeps less).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolohand.errors import YolohandError

__all__ = ["Needs", "probe", "side_multiple", "check_fits", "check_network", "free_bytes"]

PROBE = 64  # px side of the probe pass (a multiple of every encoder's stride)
GIB = 2**30


@dataclass(frozen=True)
class Needs:
    """What one network needs: side multiple, minimum training batch, memory model."""

    multiple: int
    min_batch: int  # 2 when a BatchNorm sees a 1 x 1 map
    params: int
    saved_per_pixel: float  # bytes saved for backward per input pixel (per sample)

    def bytes_for(self, imgsz: int, batch: int) -> int:
        """Estimated training memory (fp32, Adam) at ``imgsz`` x ``imgsz`` and ``batch``."""
        return int(16 * self.params + self.saved_per_pixel * imgsz * imgsz * batch)


def side_multiple(model: Any, channels: int) -> int:
    """The smallest m (a power of two up to the encoder's output stride) such that a
    (1, channels, 64 + m, 64 + m) input gives logits of its own size: some decoders (smp's Unet on
    ResNets) resize to any side, others (Segformer, UPerNet, Hiera) need the stride."""
    import torch

    stride = int(getattr(getattr(model, "encoder", None), "output_stride", 32) or 32)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        for m in (1, 2, 4, 8, 16, 32):
            if m >= stride:
                return stride
            side = PROBE + m
            try:
                with torch.no_grad():
                    out = model(torch.zeros(1, channels, side, side, device=device))
            except (RuntimeError, ValueError):
                continue
            if tuple(out.shape[-2:]) == (side, side):
                return m
        return stride
    finally:
        model.train(was_training)


def probe(model: Any, channels: int) -> Needs:
    """Probe ``model`` (torch.nn.Module, left as it was found: mode, gradients) with one
    train-mode forward pass of float32 (2, channels, 64, 64) zeros on the CPU, and eval-mode
    passes for the side multiple (:func:`side_multiple`)."""
    import torch

    stride = side_multiple(model, channels)
    one_by_one: list[Any] = []
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are counted apart
    saved = [0]

    def watch(module, inputs):
        if inputs and inputs[0].dim() == 4 and inputs[0].shape[-1] * inputs[0].shape[-2] == 1:
            one_by_one.append(module)

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:  # each activation once, however many ops keep it
            seen.add(storage.data_ptr())
            saved[0] += storage.nbytes()
        return t

    hooks = [m.register_forward_pre_hook(watch) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    was_training, device = model.training, next(model.parameters()).device
    state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    try:
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.zeros(2, channels, PROBE, PROBE, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.load_state_dict(state, strict=False)  # the probe must not move BatchNorm statistics
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Needs(stride, 2 if one_by_one else 1, params, saved[0] / (2 * PROBE * PROBE))


def free_bytes(devices: list[int] | None) -> tuple[int, str]:
    """(free bytes, where) of the first CUDA device, or of the machine's memory for the CPU."""
    if devices:
        import torch

        free, _ = torch.cuda.mem_get_info(devices[0])
        return int(free), f"cuda:{devices[0]}"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024, "this machine"
    except (OSError, KeyError, ValueError):
        return 1 << 62, "this machine"  # unknown: never refuse


def check_fits(name: str, needs: Needs, imgsz: int, batch: int, n_train: int, devices: list[int] | None) -> None:
    """YolohandError (one line naming ``name``, e.g. ``smp:UPerNet:tu-convnext_tiny``) unless
    the run's ``imgsz``, ``batch`` (per device), ``n_train`` samples and memory suit the network."""
    m = needs.multiple
    if imgsz % m:
        lo, hi = max(m, imgsz // m * m), (imgsz // m + 1) * m
        raise YolohandError(f"{name}: --imgsz {imgsz} is not a multiple of {m} (its encoder's output stride); "
                            f"use {lo} or {hi}")
    smallest = min(batch, n_train)
    if smallest < needs.min_batch:
        what = f"--batch {batch}" if batch < 2 else f"{n_train} training sample(s)"
        raise YolohandError(f"{name}: {what}: its head applies BatchNorm to a 1x1 pooled map, which needs at least 2 "
                            "samples per training batch; use --batch 2 or more")
    need = needs.bytes_for(imgsz, batch)
    free, where = free_bytes(devices)
    if need > 0.9 * free:
        raise YolohandError(f"{name}: --imgsz {imgsz} --batch {batch} needs about {need / GIB:.1f} GiB to train "
                            f"(fp32 estimate), {free / GIB:.1f} GiB free on {where}; lower --batch or --imgsz")


def check_network(name: str, model: Any, channels: int, imgsz: int, batch: int, n_train: int,
                  devices: list[int] | None) -> Needs:
    """Probe ``model`` and :func:`check_fits` it for the run; returns what it needs."""
    needs = probe(model, channels)
    check_fits(name, needs, imgsz, batch, n_train, devices)
    return needs
