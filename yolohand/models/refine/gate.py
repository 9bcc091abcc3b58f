"""The refiner's per-bone gate: the classes where it must keep the detector's mask (numpy only).

Measured at each end-to-end validation of a refiner trained with a ``detector``
(:mod:`yolohand.models.refine.train`): per class, the mean Dice of the detector's crops alone and of
the refined crops on the same validation images (unseen by both). A class whose refined Dice is
below the detector's by more than ``gate_margin`` is gated: prediction keeps the detector's crop
(:func:`yolohand.models.refine.predict.refine_crops`). The gate is stored in the checkpoint's
metadata under ``gate``: ``{"classes": [...], "margin", "images", "detector": [29], "refined": [29]}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yolohand.core.classes import CLASSES, NUM_CLASSES

__all__ = ["gate_of", "gate_line", "gate_classes"]


def gate_of(detector: np.ndarray, refined: np.ndarray, margin: float) -> dict[str, Any]:
    """The gate from float (n, 29) per-image Dice of the detector's crops and of the refined ones on
    the same images: the classes whose mean refined Dice is below the detector's by more than
    ``margin``, with both per-class means (plain values: stored in the checkpoint's metadata)."""
    det, ref = detector.mean(axis=0), refined.mean(axis=0)
    classes = [int(c) for c in np.flatnonzero(ref < det - margin)]
    return {"classes": classes, "margin": float(margin), "images": int(detector.shape[0]),
            "detector": [float(v) for v in det], "refined": [float(v) for v in ref]}


def gate_line(gate: dict[str, Any] | None, where: str = "") -> str:
    """One line naming a checkpoint's gated classes (``gate`` from its metadata; None: not measured)."""
    if gate is None:
        return f"yolohand: refiner{where} has no gate (not measured against a detector): every class is refined"
    classes = sorted(gate_classes(gate))
    head = f"yolohand: refiner{where} gate"
    if "detector" in gate and "refined" in gate:
        det, ref = np.asarray(gate["detector"]), np.asarray(gate["refined"])
        mixed = np.where(np.isin(np.arange(det.size), classes), det, ref)
        head += (f" (validation, {gate.get('images', '?')} images, margin {gate.get('margin', 0):g}: detector mDice "
                 f"{det.mean():.4f}, refined {ref.mean():.4f}, gated {mixed.mean():.4f})")
        names = [f"{CLASSES[c]} ({ref[c]:.3f} < {det[c]:.3f})" for c in classes]
    else:
        names = [CLASSES[c] for c in classes]
    if not classes:
        return f"{head}: no class gated, every class is refined"
    return f"{head}: keeps the detector's mask for {len(classes)} class{'es' * (len(classes) > 1)}: {', '.join(names)}"


def gate_classes(gate: Any) -> frozenset[int]:
    """The gated class indices of a checkpoint's ``gate`` metadata (None or no key: none)."""
    if not isinstance(gate, dict):
        return frozenset()
    return frozenset(int(c) for c in gate.get("classes", ()) if 0 <= int(c) < NUM_CLASSES)
