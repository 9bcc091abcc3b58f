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
  batch (halved under AMP), plus weights, gradients and two Adam moments (16 bytes a parameter),
  against what the device has free (N CPU processes: N times that against the machine's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolohand.errors import YolohandError
from yolohand.models.shared.devices import local_rank

__all__ = ["Needs", "shard", "probe", "side_multiple", "check_fits", "check_network", "check_run", "drop_last", "free_bytes"]

PROBE = 64  # px side of the probe pass (a multiple of every encoder's stride)
GIB = 2**30


@dataclass(frozen=True)
class Needs:
    """What one network needs: side multiple, minimum training batch, memory model."""

    multiple: int
    min_batch: int  # 2 when a BatchNorm sees a 1 x 1 map
    params: int
    saved_per_pixel: float  # bytes saved for backward per input pixel (per sample)

    def bytes_for(self, imgsz: int, batch: int, amp: bool = False) -> int:
        """Estimated training memory (Adam; activations at half size under AMP) at ``imgsz`` x ``imgsz`` and ``batch``."""
        return int(16 * self.params + self.saved_per_pixel * imgsz * imgsz * batch / (2 if amp else 1))


def shard(n: int, world: int) -> int:
    """Samples of one process when the distributed sampler splits ``n`` over ``world`` (it pads)."""
    return -(-n // max(1, world))


def side_multiple(model: Any, channels: int, base: int = PROBE) -> int:
    """The smallest m (a power of two up to the encoder's output stride) such that a
    (1, channels, base + m, base + m) input gives logits of its own size: some decoders (smp's Unet
    on ResNets) resize to any side, others (Segformer, UPerNet, Hiera) need the stride."""
    import torch

    stride = int(getattr(getattr(model, "encoder", None), "output_stride", 32) or 32)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        for m in (1, 2, 4, 8, 16, 32):
            if m >= stride:
                return stride
            side = base + m
            try:
                with torch.no_grad():
                    out = model(torch.zeros(1, channels, side, side, device=device))
            except Exception:  # noqa: BLE001 - any refusal of that side (timm asserts, smp raises)
                continue
            if tuple(out.shape[-2:]) == (side, side):
                return m
        return stride
    finally:
        model.train(was_training)


def probe(model: Any, channels: int, side: int = PROBE) -> Needs:
    """Probe ``model`` (torch.nn.Module, left as it was found: mode, gradients) with one
    train-mode forward pass of float32 (2, channels, side, side) zeros on its device, and eval-mode
    passes for the side multiple (:func:`side_multiple`)."""
    import torch

    stride = side_multiple(model, channels, side)
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
            model(torch.zeros(2, channels, side, side, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.load_state_dict(state, strict=False)  # the probe must not move BatchNorm statistics
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Needs(stride, 2 if one_by_one else 1, params, saved[0] / (2 * side * side))


def free_bytes(devices: list[int] | None) -> tuple[int, str]:
    """(free bytes, where) of this process's CUDA device (DDP: ``LOCAL_RANK``), or of the machine's
    memory for the CPU."""
    if devices:
        import torch

        index = devices[min(local_rank(), len(devices) - 1)]
        free, _ = torch.cuda.mem_get_info(index)
        return int(free), f"cuda:{index}"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024, "this machine"
    except (OSError, KeyError, ValueError):
        return 1 << 62, "this machine"  # unknown: never refuse


def check_fits(name: str, needs: Needs, imgsz: int, batch: int, n_train: int, devices: list[int] | None,
               amp: bool = False, processes: int = 1) -> None:
    """YolohandError (one line naming ``name``, e.g. ``smp:UPerNet:tu-convnext_tiny``) unless
    the run's ``imgsz``, ``batch`` and ``n_train`` samples (per process) and memory suit the network.
    ``amp``: activations counted at half size; ``processes``: CPU processes sharing the machine."""
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
    need = needs.bytes_for(imgsz, batch, amp) * (1 if devices else processes)
    free, where = free_bytes(devices)
    if need > 0.9 * free:
        kind = "AMP" if amp else "fp32"
        raise YolohandError(f"{name}: --imgsz {imgsz} --batch {batch} needs about {need / GIB:.1f} GiB to train "
                            f"({kind} estimate), {free / GIB:.1f} GiB free on {where}; lower --batch or --imgsz")


def check_network(name: str, model: Any, channels: int, imgsz: int, batch: int, n_train: int,
                  devices: list[int] | None, amp: bool = False, processes: int = 1) -> Needs:
    """Probe ``model`` and :func:`check_fits` it for the run; returns what it needs.

    A network that refuses the 64 px probe (a fixed-size encoder, e.g. a Swin at 224) is probed at
    the run's own ``imgsz``; one that refuses that too is a one-line error.
    """
    try:
        needs = probe(model, channels)
    except Exception:  # noqa: BLE001
        try:
            needs = probe(model, channels, side=imgsz)
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise YolohandError(f"{name}: does not run at --imgsz {imgsz} ({type(exc).__name__}: {first})") from None
    check_fits(name, needs, imgsz, batch, n_train, devices, amp, processes)
    return needs


def check_run(plan: dict[str, Any], model: Any, channels: int, n_train: int, devices: list[int] | None) -> Needs:
    """:func:`check_network` for a semantic family's run plan (:mod:`.plan`): the batch and the
    training samples of one process (the distributed sampler's shard), AMP as the trainer will use it;
    a windowed run (``window`` < ``imgsz``) trains on windows, so its window is what must fit
    (named ``--window`` in the messages)."""
    from yolohand.models.shared.config import amp_on

    args, world = plan["args"], int(plan.get("world", 1))
    name = plan["spec"].text or f"{plan['spec'].family}:{plan['spec'].arch}:{plan['spec'].encoder}"
    size, window = int(args["imgsz"]), int(args.get("window") or 0)
    try:
        return check_network(name, model, channels, min(window, size) if window else size, int(plan["batch"]),
                             shard(n_train, world), devices, amp=amp_on(args, devices is not None),
                             processes=world if devices is None else 1)
    except YolohandError as exc:
        if window and window < size:
            raise YolohandError(str(exc).replace("--imgsz", "--window")) from None
        raise


def drop_last(n_train: int, batch: int, world: int = 1) -> bool:
    """Whether a training loader drops its last batch: only when it would hold 1 sample (BatchNorm on
    a pooled 1 x 1 map cannot train on one), counted on one process's shard of ``n_train``."""
    per_process = shard(n_train, world)
    return per_process > batch and per_process % batch == 1
