"""Image sizes given as text (``--size 2048,2048`` on the command line, the app's size box)."""

from __future__ import annotations

from yolohand.errors import YolohandError

__all__ = ["MAX_SIDE", "parse_size"]

#: Largest image side accepted (the competition's images are 2048).
MAX_SIDE = 65536


def parse_size(text: str | tuple[int, int] | None, flag: str = "--size") -> tuple[int, int] | None:
    """``"2048,2048"`` or ``"2048x2048"`` -> ``(2048, 2048)`` (H, W); None -> None.

    Both sides must be whole numbers in 1..:data:`MAX_SIDE`; ``flag`` names the option in errors.
    """
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).lower().replace("x", ",").split(",")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise YolohandError(f"{flag} {text!r}: expected H,W, e.g. 2048,2048") from None
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise YolohandError(f"{flag} {text!r}: height and width must be between 1 and {MAX_SIDE}")
    return h, w
