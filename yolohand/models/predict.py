"""Predict with checkpoints of any family into a submission CSV (29 rows per image) and maps.

The family of each checkpoint is recognised from the file (:func:`yolohand.models.family.load_network`),
so ``-w yolo.pt -w unet.pt`` averages a YOLO and an SMP model like two folds. Every family's network
turns a batch of images into :data:`~yolohand.core.crops.ClassCrops` (29 probability windows per
image); from there on everything is shared (:mod:`yolohand.core.crops`):

- ``tta``: the horizontally flipped image is predicted too and its crops flipped back;
- ``tta_scales``: each network predicts at every scale (its input size times s: YOLO's imgsz, the
  smp plane), each scale a run like the flip; refiners run once, on the average; ``(1,)`` is the
  plain path exactly;
- all runs (checkpoints x flips) are averaged per class (:func:`~yolohand.core.crops.average_crops`):
  by default a run that missed a class is left out of that class's mean (``missing="skip"``:
  every bone is in every image, so a miss is a failure; measured +0.002-0.004 mDice over counting
  it as 0), and so is a run whose crop barely overlaps the most confident run's (box IoU <
  ``agree_iou``, 0.3): it picked a different bone, and averaging the two would erase both;
- refiners (``--refiner``, the ``refine`` family) then re-segment each class's crop at full
  resolution; several are averaged;
- ``p >= threshold`` -> RLE rows; ``--save-probs`` -> uint8 maps (the probmaps format).

Weights: given paths, else the newest ``best.pt`` under the runs folder, else the shipped demo
checkpoint (:data:`yolohand.defaults.DEMO_WEIGHTS`). A missing file is a YolohandError, never a
download. Streams ``batch`` images at a time: memory does not grow with the number of images.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolohand.core import crops as cr
from yolohand.core.classes import NUM_CLASSES
from yolohand.data.layout import ImageRecord, find_images, read_image
from yolohand.defaults import DEMO_WEIGHTS
from yolohand.errors import YolohandError
from yolohand.models.shared.settings import Network, Refiner, Settings

__all__ = [
    "Settings", "Network", "Refiner", "newest_best", "resolve_weights", "predict_crops", "Prediction",
    "predict_probs", "PredictSummary", "predict_to_submission",
]


# --------------------------------------------------------------------------- weights
def newest_best(runs: str | os.PathLike) -> Path | None:
    """The most recently modified ``best.pt`` anywhere under ``runs`` (None if there is none)."""
    runs = Path(runs)
    if not runs.is_dir():
        return None
    found = [p for p in runs.rglob("best.pt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_weights(
    weights: Sequence[str | os.PathLike] | None, runs: str | os.PathLike | None = None
) -> tuple[list[Path], str]:
    """(checkpoint paths, where they came from). Raises YolohandError for a missing file.

    Given paths must exist (no download). With none given: the newest ``best.pt`` under
    ``runs`` (config default ``runs/``), else :data:`DEMO_WEIGHTS`.
    """
    if weights:
        paths = []
        for w in weights:
            p = Path(w).expanduser()
            if not p.is_file():
                raise YolohandError(f"{p}: weights file not found (nothing is downloaded; give a path to a .pt file)")
            paths.append(p.resolve())
        return paths, "given"
    from yolohand.config import default_path

    runs_dir = default_path("runs", runs)
    best = newest_best(runs_dir)
    if best is not None:
        return [best], f"newest best.pt under {runs_dir}"
    if DEMO_WEIGHTS.is_file():
        return [DEMO_WEIGHTS], f"shipped demo checkpoint (no best.pt under {runs_dir})"
    raise YolohandError(f"{runs_dir}: no best.pt found and the demo checkpoint {DEMO_WEIGHTS} is missing; pass --weights")


# --------------------------------------------------------------------------- per image
def predict_crops(
    networks: Sequence[Network], images: list[np.ndarray], settings: Settings, refiners: Sequence[Refiner] = ()
) -> list[cr.ClassCrops]:
    """Class crops for each image, averaged over the networks (and the flip when ``tta``), then refined."""
    if not images:
        return []
    batch = list(images)
    if settings.tta:
        batch += [np.ascontiguousarray(im[:, ::-1]) for im in images]
    runs: list[list[cr.ClassCrops]] = [[] for _ in images]
    n = len(images)
    for net in networks:
        for scale in settings.tta_scales:
            out = net.crops(batch, settings) if scale == 1 else net.crops(batch, settings, scale=scale)
            for j, crops in enumerate(out):
                if j >= n:  # flipped copy: mirror back
                    crops = cr.flip_crops(crops, images[j - n].shape[1])
                runs[j % n].append(crops)
    merged = [cr.average_crops(r, settings.missing, settings.agree_iou) for r in runs]
    if refiners:
        merged = [_refine(img, crops, refiners) for img, crops in zip(images, merged)]
    return merged


def _refine(image: np.ndarray, crops: cr.ClassCrops, refiners: Sequence[Refiner]) -> cr.ClassCrops:
    """The mean of the refiners' crops (each keeps the prior's classes, so averaging is aligned)."""
    refined = [r.refine(image, crops) for r in refiners]
    return cr.average_crops(refined, "zero") if len(refined) > 1 else refined[0]


@dataclass
class Prediction:
    """One image's result: ``crops`` is None when the image could not be read (``error`` says why)."""

    record: ImageRecord
    shape: tuple[int, int] | None
    crops: cr.ClassCrops | None
    error: str | None = None


def predict_probs(
    records: Sequence[ImageRecord],
    networks: Sequence[Network],
    settings: Settings = Settings(),
    batch: int = 1,
    refiners: Sequence[Refiner] = (),
) -> Iterator[Prediction]:
    """Stream :class:`Prediction` objects in ``records`` order, ``batch`` images at a time."""
    batch = max(1, int(batch))
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        images, ok, out = [], [], []
        for rec in chunk:
            try:
                img = read_image(rec.image_path)
            except YolohandError as exc:
                out.append(Prediction(rec, None, None, str(exc)))
                continue
            out.append(Prediction(rec, img.shape[:2], None))
            ok.append(len(out) - 1)
            images.append(img)
        for k, crops in zip(ok, predict_crops(networks, images, settings, refiners)):
            out[k].crops = crops
        yield from out


# --------------------------------------------------------------------------- to a submission
@dataclass
class PredictSummary:
    """What a :func:`predict_to_submission` run did."""

    output: Path
    n_images: int = 0
    detected: list[int] = field(default_factory=list)  # classes with a non-empty mask, per readable image
    empty_rows: int = 0
    unreadable: list[str] = field(default_factory=list)  # "<path>: <why>"
    seconds: float = 0.0
    weights: list[Path] = field(default_factory=list)
    weights_source: str = ""
    refiners: list[Path] = field(default_factory=list)
    probs_dir: Path | None = None
    eval_table: str | None = None
    mean_dice: float | None = None

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        per = np.mean(self.detected) if self.detected else 0.0
        out = [
            f"images: {self.n_images}"
            + (f" ({len(self.unreadable)} unreadable, skipped: 29 empty rows each)" if self.unreadable else ""),
            f"classes detected per image: {per:.2f} of {NUM_CLASSES} on average",
            f"empty rows: {self.empty_rows} of {self.n_images * NUM_CLASSES}",
            f"seconds: {self.seconds:.1f} ({self.seconds / max(self.n_images, 1):.2f} per image)",
            "weights ({}): {}".format(self.weights_source, ", ".join(str(w) for w in self.weights)),
        ]
        if self.refiners:
            out.append("refiners: " + ", ".join(str(r) for r in self.refiners))
        out.append(f"output: {self.output}")
        out += [f"  unreadable: {u}" for u in self.unreadable]
        if self.probs_dir is not None:
            out.append(f"probability maps: {self.probs_dir}")
        if self.mean_dice is not None:
            out.append(f"mean Dice vs ground truth: {self.mean_dice:.4f}")
        return out


def _write_one(p: Prediction, writer, probs_dir: Path | None, threshold: float | Sequence[float],
               summary: PredictSummary) -> None:
    """Write one image's 29 rows (and its map) and count it in ``summary``."""
    from yolohand.core.probmaps import probmap_path, save_probmap

    if p.crops is None:
        warnings.warn(f"skipped (29 empty rows written): {p.error}", stacklevel=3)
        summary.unreadable.append(p.error or str(p.record.image_path))
        writer.write_image(p.record.name, [""] * NUM_CLASSES)
        summary.empty_rows += NUM_CLASSES
    else:
        rles = cr.crops_to_rles(p.crops, p.shape, threshold)
        writer.write_image(p.record.name, rles)
        n_empty = sum(1 for r in rles if not r)
        summary.empty_rows += n_empty
        summary.detected.append(NUM_CLASSES - n_empty)
        if probs_dir is not None:
            save_probmap(probmap_path(probs_dir, p.record.name), cr.crops_to_probmap(p.crops, p.shape))
    summary.n_images += 1


def predict_to_submission(
    out: str | os.PathLike,
    source: str | os.PathLike | None = None,
    weights: Sequence[str | os.PathLike] | None = None,
    runs: str | os.PathLike | None = None,
    settings: Settings = Settings(),
    save_probs: str | os.PathLike | None = None,
    gt: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    refiners: Sequence[str | os.PathLike] = (),
    batch: int = 1,
    thresholds: Sequence[float] | None = None,
    **load: object,
) -> PredictSummary:
    """Predict every image of ``source`` into the submission CSV ``out`` (29 rows per image).

    ``source`` None: ``<root>/test/DCM`` (config default root). ``save_probs``: also write uint8
    (29, H, W) maps, one ``.npz`` per image (:mod:`yolohand.core.probmaps`). ``gt``: score the CSV
    at the end against that dataset root (:func:`yolohand.results.evaluate.evaluate`).
    ``refiners``: ``refine``-family checkpoints applied after averaging. ``thresholds``: one
    threshold per class (29,) instead of ``settings.threshold``, cut as the uint8 maps cut
    (:func:`yolohand.results.thresholds.prob_thresholds`: the CSV equals the saved maps thresholded
    by ``ensemble --thresholds`` with the same file; all 0.5 is the plain path). ``**load``: loading
    options passed to every family's loader (``imgsz``, ``device``, ``conf``, ``iou``, ``max_det``,
    ``half``). Outputs are written atomically and refuse to overwrite without ``force``.
    """
    from tqdm.auto import tqdm

    from yolohand.config import default_path
    from yolohand.core.atomic import atomic_dir
    from yolohand.core.paths import PROBMAPS, check_submission_outputs
    from yolohand.core.submission import SubmissionWriter
    from yolohand.models.family import load_network, load_refiner

    t0 = time.perf_counter()
    cut = settings.threshold
    if thresholds is not None:
        from yolohand.results.thresholds import check_thresholds, prob_thresholds

        cut = prob_thresholds(check_thresholds(thresholds))
    source = source if source is not None else default_path("root") / "test" / "DCM"
    paths, where = resolve_weights(weights, runs)
    # Every check before loading anything: output places (kind, writable, clear of the inputs), ground truth.
    out, _ = check_submission_outputs(out, save_probs, [source, *paths, *refiners, gt], force, flag="--rle")
    if gt is not None:
        from yolohand.results.evaluate import check_gt_root

        check_gt_root(gt)
    records = find_images(source)
    networks = [load_network(p, batch=batch, **load) for p in paths]
    stages = [load_refiner(Path(r), **load) for r in refiners]
    summary = PredictSummary(output=out.resolve(), weights=paths, weights_source=where, refiners=[r.path for r in stages])
    with ExitStack() as stack:
        writer = stack.enter_context(SubmissionWriter(out, force=force))
        probs_tmp = stack.enter_context(atomic_dir(save_probs, force, kind=PROBMAPS)) if save_probs is not None else None
        bar = tqdm(total=len(records), desc="predict", unit="img", disable=not progress)
        for p in predict_probs(records, networks, settings, batch, stages):
            _write_one(p, writer, probs_tmp, cut, summary)
            bar.update(1)
        bar.close()
    if summary.detected and not any(summary.detected):  # NaN weights, a broken export: say so, not just 29 x N empty rows
        warnings.warn(f"{', '.join(str(w) for w in paths)}: every mask is empty in all {len(summary.detected)} readable "
                      "images: check the model (weights that are NaN, or trained on other images)", stacklevel=2)
    if save_probs is not None:
        summary.probs_dir = Path(save_probs).resolve()
    if gt is not None:
        from yolohand.results.evaluate import evaluate, format_table

        result = evaluate(out, gt, progress=progress)
        summary.eval_table = format_table(result)
        summary.mean_dice = float(result.mean)
    summary.seconds = time.perf_counter() - t0
    return summary
