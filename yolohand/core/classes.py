"""The 29 hand-bone classes in competition order, and a fixed colour for each."""

from __future__ import annotations

import colorsys

FINGERS: tuple[str, ...] = tuple(f"finger-{i}" for i in range(1, 20))
CARPALS: tuple[str, ...] = (
    "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform",
)
FOREARM: tuple[str, ...] = ("Radius", "Ulna")

#: Class names, index 0..28, in the exact order the submission CSV uses.
CLASSES: tuple[str, ...] = FINGERS + CARPALS + FOREARM
NUM_CLASSES: int = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    # Golden-ratio hue steps give neighbouring classes (adjacent bones) very different hues.
    colours = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        value = 1.0 if i % 2 == 0 else 0.8
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


#: One distinct RGB colour (0..255) per class, same order as CLASSES.
COLORS: tuple[tuple[int, int, int], ...] = _palette(NUM_CLASSES)


__all__ = [
    "FINGERS", "CARPALS", "FOREARM", "CLASSES", "NUM_CLASSES", "CLASS_INDEX", "COLORS",
]
