"""Per-class probability thresholds, fitted on out-of-fold probability maps against ground truth.

The competition thresholds every class at 0.5. Top teams gained 0.001-0.003 mDice with one
threshold per class (lower for small or overlapping bones). :func:`fit_thresholds` measures,
for every class and every threshold of :data:`GRID` (0.05 ... 0.95 in steps of 0.05), the mean
Dice over the images, and keeps 0.5 unless another threshold gains more than ``margin`` on that
class and the gain holds on both halves of the images (split by patient): the rule and the
report of :mod:`yolohand.results.choice` (in-sample gain, gain per half, held-out gain).

Memory is flat in the number of images: maps are read one image at a time and only the sums of
Dice per (threshold, class) are kept. Per class, the map's uint8 levels inside the bounding
box of the map and the truth are counted once (a 256-bin histogram inside and outside the
truth), which gives the intersection and predicted area at every threshold at once.

What a threshold means, everywhere (:func:`map_cut`): a pixel is kept when ``u8 >= ceil(255 t)``
on a uint8 map, which is exactly the soft-vote rule of :mod:`yolohand.results.ensemble` with one
map (``u8 >= t * 255``); for 0.5 it is ``u8 >= 128``, the competition's ``p >= 0.5``
(:data:`yolohand.core.probmaps.THRESHOLD_U8`). On float probabilities (``predict``) the same cut
is ``p >= (ceil(255 t) - 0.5) / 255`` (:func:`prob_thresholds`), so a CSV written by predict
equals its saved maps thresholded with the same file; 0.5 stays exactly 0.5.

The JSON file (:func:`write_thresholds`, :func:`load_thresholds`)::

    {"kind": "yolohand-thresholds", "version": 1,
     "thresholds": {"finger-1": 0.45, ..., "Ulna": 0.5},
     "fit": {"probs": [...], "gt": "...", "images": 800, "margin": 0.002, ...},
     "per_class": {"finger-1": {"threshold": 0.45, "best": 0.45, "gain": 0.0031, ...}, ...}}

Only ``thresholds`` is read back (a hand-written ``{"thresholds": {"Pisiform": 0.4}}``, or a
plain ``{"Pisiform": 0.4}``, works too: classes not named keep 0.5).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from yolohand.core import metrics, rle
from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.core.probmaps import iter_probmap_folder, load_probmap
from yolohand.errors import YolohandError
from yolohand.results.choice import Choice, HalfSums, fit_choice, patient_halves

__all__ = [
    "GRID", "DEFAULT_MARGIN", "KIND", "map_cut", "prob_thresholds", "check_thresholds", "load_thresholds",
    "cut_dice", "ThresholdFit", "fit_thresholds", "write_thresholds", "format_fit",
]

#: Candidate thresholds: 0.05, 0.10, ..., 0.95 (exact decimal floats: k / 20).
GRID: tuple[float, ...] = tuple(k / 20 for k in range(1, 20))
#: Keep 0.5 unless the best threshold gains more than this mean Dice on the class.
DEFAULT_MARGIN = 0.002
#: The ``kind`` of a thresholds JSON.
KIND = "yolohand-thresholds"


def map_cut(threshold: float) -> int:
    """The uint8 level a threshold keeps from: ``u8 >= map_cut(t)`` (``ceil(t * 255)``, 128 for 0.5)."""
    return math.ceil(float(threshold) * 255.0)


def prob_thresholds(thresholds: Sequence[float]) -> list[float]:
    """Per-class thresholds for float probabilities that cut where the uint8 maps cut:
    ``(map_cut(t) - 0.5) / 255`` (``floor(p * 255 + 0.5) >= map_cut(t)``); 0.5 stays 0.5."""
    return [(map_cut(t) - 0.5) / 255.0 for t in thresholds]


def check_thresholds(thresholds: Sequence[float], where: str = "thresholds") -> np.ndarray:
    """float64 (29,) after checking there are 29 numbers in (0, 1]; YolohandError otherwise."""
    arr = np.asarray(thresholds, dtype=np.float64)
    if arr.shape != (NUM_CLASSES,):
        raise YolohandError(f"{where}: expected {NUM_CLASSES} thresholds (one per class), got {arr.size}")
    bad = np.flatnonzero(~((arr > 0) & (arr <= 1)))
    if bad.size:
        raise YolohandError(f"{where}: {CLASSES[bad[0]]}: threshold {arr[bad[0]]!r} is not in (0, 1]")
    return arr


def load_thresholds(path: str | os.PathLike) -> np.ndarray:
    """float64 (29,) thresholds in class order from a thresholds JSON (classes not named: 0.5).

    YolohandError naming the file for anything else: not JSON, not a mapping, an unknown class
    name, a value that is not a number in (0, 1].
    """
    from yolohand.data.layout import read_json

    path = Path(path)
    doc = read_json(path)
    table = doc.get("thresholds", doc) if isinstance(doc, dict) else None
    if not isinstance(table, dict):
        raise YolohandError(f"{path}: expected {{\"thresholds\": {{class name: threshold, ...}}}}")
    if "thresholds" not in doc:  # a plain mapping: everything must be a class
        table = {k: v for k, v in table.items() if k not in ("kind", "version")}
    out = np.full(NUM_CLASSES, 0.5)
    for name, value in table.items():
        if name not in CLASS_INDEX:
            from yolohand.config import did_you_mean

            raise YolohandError(f"{path}: unknown class {name!r}{did_you_mean(name, CLASSES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise YolohandError(f"{path}: {name}: threshold {value!r} is not a number in (0, 1]")
        out[CLASS_INDEX[name]] = float(value)
    return out


# ----------------------------------------------------------------------------- scoring


def cut_dice(u8: np.ndarray, truth: Sequence[np.ndarray], cuts: Sequence[int]) -> np.ndarray:
    """float64 (K, C): Dice of each class of one image at each uint8 cut (``u8 >= cut``).

    ``u8``: uint8 (C, H, W) probability map; ``truth``: C canonical Runs (the ground truth);
    ``cuts``: K levels in 1..255. Per class, one histogram of the levels inside the box of the
    map and the truth (outside it both are empty), split by the truth.
    """
    cuts = np.asarray(cuts, dtype=np.int64)
    hw = u8.shape[1:]
    out = np.empty((len(cuts), len(truth)), dtype=np.float64)
    for c, runs in enumerate(truth):
        gt_area = rle.area(runs)
        box = rle.union_boxes([rle.mask_bbox(u8[c]), rle.bbox(runs, hw[1])])
        if box is None:
            out[:, c] = 1.0  # both empty at every cut
            continue
        y0, x0, y1, x1 = box
        crop = u8[c, y0:y1, x0:x1]
        inside = rle.runs_crop(runs, box, hw)
        all_hist = np.bincount(crop.ravel(), minlength=256)
        in_hist = np.bincount(crop[inside], minlength=256)
        at_least_all = np.cumsum(all_hist[::-1])[::-1]  # [v]: pixels with u8 >= v
        at_least_in = np.cumsum(in_hist[::-1])[::-1]
        out[:, c] = metrics.dice_score(at_least_in[cuts], at_least_all[cuts], gt_area)
    return out


def _stems(prob_dirs: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{stem: map path}`` over every folder; YolohandError for an empty folder or a stem in two."""
    found: dict[str, Path] = {}
    for d in prob_dirs:
        listing = iter_probmap_folder(d)
        if not listing:
            raise YolohandError(f"{d}: no .npz probability maps")
        for name, path in listing:
            stem = Path(name).stem
            if stem in found:
                raise YolohandError(f"{path}: the image {stem!r} also has a map in {found[stem].parent} "
                                    "(out-of-fold folders must not overlap)")
            found[stem] = path
    return found


def gt_for_stems(stems: dict[str, Path], gt_root: str | os.PathLike, split: str | None) -> dict:
    """``{stem: ImageRecord}`` of the annotated images the maps are of; YolohandError naming the
    first map whose image has no annotation in ``gt_root`` (``split``: train, test or both)."""
    from yolohand.results.evaluate import _load_gt

    gt = _load_gt(gt_root, split, by_stem=True)
    out = {}
    for stem, path in stems.items():
        if stem not in gt.records:
            why = "has no annotation JSON" if stem in gt.unannotated else "is not an image"
            raise YolohandError(f"{path}: {stem!r} {why} of {gt_root}"
                                + (f" ({split} split)" if split else " (train or test)"))
        out[stem] = gt.records[stem][1]
    return out


# ----------------------------------------------------------------------------- fitting


@dataclass
class ThresholdFit:
    """A fitted threshold per class, with its evidence (:class:`yolohand.results.choice.Choice`
    over :data:`GRID`) and where it came from."""

    thresholds: np.ndarray            # float64 (29,)
    choice: Choice
    grid: tuple[float, ...]
    probs: list[str] = field(default_factory=list)
    gt: str = ""
    split: str | None = None
    seconds: float = 0.0

    def mdice(self) -> tuple[float, float]:
        """(in-sample mDice at 0.5, in-sample mDice at the fitted thresholds)."""
        return float(self.choice.default_score().mean()), float(self.choice.chosen_score().mean())

    def to_dict(self) -> dict:
        """The JSON document (module docstring)."""
        from yolohand import __version__

        ch = self.choice
        at_half, fitted = self.mdice()
        per_class = {}
        for c, name in enumerate(CLASSES):
            per_class[name] = {
                "threshold": float(self.thresholds[c]), "best": self.grid[ch.best[c]],
                "dice_at_0.5": round(float(ch.default_score()[c]), 6), "dice_at_best": round(float(ch.scores[ch.best[c], c]), 6),
                "gain": round(float(ch.gain[c]), 6), "half_gains": [round(float(g), 6) for g in ch.half_gains[:, c]],
                "heldout_gain": round(float(ch.heldout_gain[c]), 6), "why": ch.why(c),
            }
        return {
            "kind": KIND, "version": 1,
            "thresholds": {name: float(t) for name, t in zip(CLASSES, self.thresholds)},
            "rule": "keep p >= t; on uint8 maps u8 >= ceil(255 t)",
            "fit": {
                "probs": self.probs, "gt": self.gt, "split": self.split, "images": ch.n_images,
                "halves": list(ch.half_images), "halves_by": "patient ID, alternating in sorted order",
                "grid": list(self.grid), "margin": ch.margin, "split_half": ch.split_half,
                "mdice_at_0.5": round(at_half, 6), "mdice_fitted": round(fitted, 6),
                "heldout_gain": round(float(np.nanmean(ch.heldout_gain)), 6),
                "yolohand": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "per_class": per_class,
        }


def fit_thresholds(
    prob_dirs: Sequence[str | os.PathLike],
    gt_root: str | os.PathLike,
    split: str | None = None,
    margin: float = DEFAULT_MARGIN,
    split_half: bool = True,
    grid: Sequence[float] = GRID,
    progress: bool = True,
) -> ThresholdFit:
    """Fit one threshold per class on the maps of ``prob_dirs`` (out-of-fold: each image in one
    folder) against the annotations of ``gt_root``.

    ``grid`` must contain 0.5 (the default). Returns the thresholds (0.5 where the rule of
    :mod:`yolohand.results.choice` keeps the default) and the per-class evidence. Streams one
    image at a time. YolohandError for a map whose image the ground truth lacks, maps of a
    wrong size, or (``split_half``) images of a single patient.
    """
    from yolohand.data.layout import image_size
    from yolohand.results.evaluate import check_split, gt_runs

    t0 = time.perf_counter()
    check_split(split)
    grid = tuple(float(t) for t in grid)
    if 0.5 not in grid:
        raise YolohandError("the threshold grid must contain 0.5 (the default)")
    stems = _stems(prob_dirs)
    records = gt_for_stems(stems, gt_root, split)
    halves = patient_halves([r.patient_id for r in records.values()])
    cuts = [map_cut(t) for t in grid]
    sums = HalfSums(len(grid), NUM_CLASSES)
    for stem, path in tqdm(stems.items(), desc="thresholds", unit="img", disable=not progress):
        rec = records[stem]
        u8 = load_probmap(path, shape=image_size(rec.image_path))
        truth, _ = gt_runs(rec.json_path, u8.shape[1:])
        sums.add(halves[rec.patient_id], cut_dice(u8, truth, cuts))
    i_half = grid.index(0.5)
    order = sorted(range(len(grid)), key=lambda k: (abs(grid[k] - 0.5), grid[k]))  # ties: nearest 0.5
    choice = fit_choice(sums, lambda m: np.full(m.shape[1], i_half), margin, order, split_half)
    return ThresholdFit(
        thresholds=np.array([grid[k] for k in choice.chosen]), choice=choice, grid=grid,
        probs=[str(d) for d in prob_dirs], gt=str(gt_root), split=split, seconds=time.perf_counter() - t0,
    )


def write_thresholds(fit: ThresholdFit, out: str | os.PathLike, force: bool = False,
                     inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write ``fit`` as JSON to ``out`` atomically (refused over an input or, without ``force``,
    an existing file); returns the path written."""
    from yolohand.core.atomic import atomic_file
    from yolohand.core.paths import JSON, check_output

    path = check_output(out, JSON, inputs, force, flag="--out")
    with atomic_file(path, force, kind=JSON) as fh:
        fh.write(json.dumps(fit.to_dict(), indent=2) + "\n")
    return path


def format_fit(fit: ThresholdFit) -> str:
    """A plain table: one row per class (threshold, Dice at 0.5, gain, gains per half, held-out gain, why)."""
    ch = fit.choice
    width = max(len(c) for c in CLASSES)
    lines = [f"{'class':<{width}}  thr   best  Dice@0.5    gain   half A   half B  held-out  decision",
             "-" * (width + 72)]
    for c, name in enumerate(CLASSES):
        lines.append(
            f"{name:<{width}}  {fit.thresholds[c]:.2f}  {fit.grid[ch.best[c]]:.2f}  {ch.default_score()[c]:8.4f}"
            f"  {ch.gain[c]:+.4f}  {ch.half_gains[0, c]:+.4f}  {ch.half_gains[1, c]:+.4f}  {ch.heldout_gain[c]:+8.4f}"
            f"  {ch.why(c)}"
        )
    return "\n".join(lines)
