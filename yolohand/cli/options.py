"""CLI helpers shared by the commands: the one parser of each option format, and typer options
built on them.

Parsers raise :class:`yolohand.errors.YolohandError` (one ``error:`` line when called from a
command); as typer ``parser=`` callbacks they raise ``typer.BadParameter`` instead, which click
prints as ``Invalid value for '--size': ...`` with exit code 2, before the command starts.
Library functions validate their own arguments (ranges, choices) once; commands declare the
same bounds with typer's ``min=``/``max=`` and enums so that ``--help`` shows them.
No heavy imports here: ``yolohand --help`` stays fast.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from typing import Any

import typer

from yolohand.core.sizes import MAX_SIDE, parse_size  # noqa: F401  (the one parser, shared with the app)
from yolohand.errors import YolohandError


class Split(str, enum.Enum):
    """``--split``: the dataset split (yolohand.results.evaluate.SPLITS)."""

    train = "train"
    test = "test"


def parse_fold(text: str | int | None) -> int | str | None:
    """``"all"`` -> None (every fold); ``"3"`` -> 3; ``"none"`` -> ``"none"`` (train on every training
    image, no validation: smp and refine). Fold numbers start at 0."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    if isinstance(text, str) and text.strip().lower() == "none":
        return "none"
    try:
        value = int(text)
    except ValueError:
        raise YolohandError(f"--fold {text!r}: expected a fold number (0, 1, ...), 'all' or 'none'") from None
    if value < 0:
        raise YolohandError(f"--fold {value}: fold numbers start at 0")
    return value


def parse_numbers(text: str | None, flag: str = "--weights", example: str = "1,2,1") -> list[float] | None:
    """``"1,2,1"`` -> ``[1.0, 2.0, 1.0]``; None or "" -> None. Each must be a finite number."""
    if text is None or not text.strip():
        return None
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise YolohandError(f"{flag} {text!r}: expected comma-separated numbers, e.g. {example}") from None
    if not all(math.isfinite(v) for v in values):
        raise YolohandError(f"{flag} {text!r}: {flag.lstrip('-')} must be finite numbers")
    return values


def parse_scales(text: str | tuple | None) -> tuple[float, ...]:
    """``--tta-scales "0.8,1,1.25"`` -> ``(0.8, 1.0, 1.25)``; None or "" -> ``(1.0,)`` (no multi-scale TTA)."""
    if isinstance(text, tuple):
        return text
    values = parse_numbers(text, "--tta-scales", "0.8,1,1.25")
    if values is None:
        return (1.0,)
    if not all(0 < v <= 8 for v in values) or len(set(values)) != len(values):
        raise YolohandError(f"--tta-scales {text!r}: expected distinct scales in (0, 8], e.g. 0.8,1,1.25")
    return tuple(values)


def parse_weights(text: str | None) -> list[float] | None:
    """``--weights "1,2,1"`` -> ``[1.0, 2.0, 1.0]``; None or "" -> None (:func:`parse_numbers`)."""
    return parse_numbers(text)


def check_device(text: str | None) -> str | None:
    """``--device``: cpu, ``cpu:N`` (N CPU processes), mps, a CUDA index (``0``), a list (``0,1``) or ``cuda:N``; a CUDA device
    must exist here (checked with torch, imported only when a GPU is named). None -> None."""
    if text is None:
        return None
    value = str(text).strip().lower().replace(" ", "")
    if value == "cpu":
        return value
    if value == "mps":  # Apple's GPU: ultralytics would quietly train on the CPU where there is none
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise YolohandError(f"--device {text!r}: no Apple MPS device is available here; use --device cpu"
                                " (or a CUDA index)")
        return value
    if value.startswith("cpu:"):  # N training processes on the CPU (smp, refine)
        from yolohand.models.shared.devices import cpu_processes

        cpu_processes(value)
        return value
    indices = value.removeprefix("cuda:").removeprefix("cuda") or "0"
    if not re.fullmatch(r"\d+(,\d+)*", indices):
        raise YolohandError(f"--device {text!r}: expected cpu, mps, a GPU index (0), a list (0,1) or cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise YolohandError(f"--device {text!r}: no CUDA GPU is available here; use --device cpu")
    wanted = [int(i) for i in indices.split(",")]
    if max(wanted) >= count:
        raise YolohandError(f"--device {text!r}: GPU {max(wanted)} does not exist ({count} GPU(s): 0..{count - 1})")
    return indices


def choice(flag: str, choices: tuple[str, ...]) -> Callable[[str | None], str | None]:
    """A parser accepting one of ``choices`` (for choices the library defines and validates too)."""

    def parse(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise YolohandError(f"{flag} {value!r}: expected one of {', '.join(choices)}")
        return value

    return parse


def as_param(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A typer ``parser=`` from one of the parsers above (YolohandError -> typer.BadParameter)."""

    def param(value: Any) -> Any:
        try:
            return parse(value)
        except YolohandError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[-1]) from None

    return param


def size_option(default: str | None, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """``--size H,W`` parsed by :func:`parse_size` (the value reaching the command is (H, W) or None)."""
    return typer.Option(default, "--size", parser=as_param(parse_size), metavar="H,W", help=help,
                        show_default=default is not None)


def format_size(shape: tuple[int, int]) -> str:
    """``(2048, 1024)`` -> ``"2048,1024"`` (what :func:`parse_size` reads back)."""
    return f"{shape[0]},{shape[1]}"


__all__ = ["MAX_SIDE", "Split", "as_param", "check_device", "choice", "format_size", "parse_fold", "parse_numbers",
           "parse_scales", "parse_size", "parse_weights", "size_option"]
