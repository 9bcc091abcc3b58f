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

#: The five groups Dice is reported by (model cards, issues): where a model loses its Dice.
REPORT_GROUPS: dict[str, tuple[str, ...]] = {
    "fingertips": tuple(f"finger-{i}" for i in (1, 4, 8, 12, 16)),
    "other phalanges": tuple(f"finger-{i}" for i in (2, 5, 6, 9, 10, 13, 14, 17, 18)),
    "metacarpals": tuple(f"finger-{i}" for i in (3, 7, 11, 15, 19)),
    "carpals": CARPALS,
    "radius/ulna": FOREARM,
}


def group_means(per_class: dict[str, float]) -> dict[str, float]:
    """Mean Dice per :data:`REPORT_GROUPS` group of a class name -> Dice mapping."""
    return {g: sum(per_class[c] for c in names) / len(names) for g, names in REPORT_GROUPS.items()}


__all__ = [
    "FINGERS", "CARPALS", "FOREARM", "CLASSES", "NUM_CLASSES", "CLASS_INDEX", "COLORS", "REPORT_GROUPS",
    "group_means",
]
