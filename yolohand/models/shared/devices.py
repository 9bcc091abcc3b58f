"""``--device`` for torch: one device for prediction, a list of CUDA indices for training."""

from __future__ import annotations

from yolohand.errors import YolohandError

__all__ = ["torch_device", "devices_of"]


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
    if text == "cpu":
        return None
    try:
        ids = [int(t) for t in text.split(",")]
    except ValueError:
        raise YolohandError(f"--device {device!r}: expected cpu, a GPU index (0) or a list (0,1)") from None
    if not torch.cuda.is_available() or max(ids) >= torch.cuda.device_count() or min(ids) < 0:
        raise YolohandError(f"--device {device!r}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return ids
