"""``--device`` for torch: one device for prediction, a list of CUDA indices for training, or
``cpu:N``: N training processes on the CPU (DDP over gloo; the smp and refine families)."""

from __future__ import annotations

from yolohand.errors import YolohandError

__all__ = ["torch_device", "devices_of", "cpu_processes", "local_rank", "is_worker"]


def torch_device(device: str | None, half: bool = False):
    """torch.device for ``--device`` (None: CUDA 0 when available); YolohandError when absent."""
    import torch

    text = "" if device is None else str(device).strip().lower()
    if text in ("", "auto"):
        text = "cuda:0" if torch.cuda.is_available() else "cpu"
    elif text.isdigit():
        text = f"cuda:{text}"
    if text != "cpu" and not text.startswith("cuda"):
        raise YolohandError(f"--device {device!r}: expected cpu or a CUDA index (0)")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise YolohandError(f"--device {device!r}: CUDA is not available on this machine")
    if half and not text.startswith("cuda"):
        raise YolohandError("--half needs a CUDA device (fp16 on the CPU is slower and less exact)")
    return torch.device(text)


def devices_of(device: str | None) -> list[int] | None:
    """None for the CPU, else CUDA indices; YolohandError for a device that is not there."""
    import torch

    text = "" if device is None else str(device).strip().lower().removeprefix("cuda:")
    if text in ("", "auto"):
        return [0] if torch.cuda.is_available() else None
    if text == "cpu" or text.startswith("cpu:"):
        cpu_processes(device)  # checks the count
        return None
    try:
        ids = [int(t) for t in text.split(",")]
    except ValueError:
        raise YolohandError(f"--device {device!r}: expected cpu, a GPU index (0) or a list (0,1)") from None
    if not torch.cuda.is_available() or max(ids) >= torch.cuda.device_count() or min(ids) < 0:
        raise YolohandError(f"--device {device!r}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return ids


def cpu_processes(device: str | None) -> int:
    """Training processes on the CPU: N for ``cpu:N`` (DDP over gloo), else 1."""
    text = "" if device is None else str(device).strip().lower()
    if not text.startswith("cpu:"):
        return 1
    count = text.removeprefix("cpu:")
    if not count.isdigit() or int(count) < 1:
        raise YolohandError(f"--device {device!r}: expected cpu:N with N >= 1 training processes (e.g. cpu:2)")
    return int(count)


def local_rank() -> int:
    """This process's rank on its machine: ``LOCAL_RANK``, which Lightning's launcher (and torchrun)
    set in DDP processes; 0 otherwise."""
    import os

    text = os.environ.get("LOCAL_RANK", "")
    return int(text) if text.isdigit() else 0


def is_worker() -> bool:
    """True in a DDP process other than the first (``LOCAL_RANK`` >= 1): it trains its shard and
    leaves the run folder, the summary and the output to rank 0."""
    return local_rank() > 0
