"""Pseudo-labels: test predictions turned into polygon JSONs in the competition layout.

``pseudo_labels(pred, images, out)`` reads a submission CSV or a folder of probability maps of
the images under ``images`` (usually ``<root>/test/DCM``) and writes a new dataset root::

    <out>/train/DCM/IDxxx/<name>.png             absolute symlink to the original (or a copy)
    <out>/train/outputs_json/IDxxx/<stem>.json   the competition's JSON schema, one poly_seg per class
    <out>/pseudo_report.json                     every image: kept or why not, confidence, areas

so that ``yolohand convert <out>`` and ``train`` use them like labelled data (``with_train``
links the real training set in beside them; a test ID that also names one of its patients is
written as ``IDxxx-pseudo``, since they are different patients). The original data is never written: the output
may not equal, contain or lie inside any input (:func:`yolohand.core.paths.check_output`; for
images in the competition layout, ``<root>/<split>/DCM``, the whole ``<root>``), and
it is written to a temporary folder renamed into place (:mod:`yolohand.core.atomic`).

Each class's polygon is the outer contour (``cv2.findContours``, external, simple chain) of the
largest connected component of the predicted mask, in integer pixel coordinates: filled back
with ``cv2.fillPoly`` (the ground-truth rasteriser, :meth:`yolohand.data.layout.Annotation.to_runs`)
it gives that component exactly, holes filled.

The confidence rule (an image is kept only when all hold; rejected images are listed in the
report with the reasons):

- every class is present (a component whose contour has >= 3 points);
- the largest component holds at least ``min_component`` of the class's predicted pixels (a
  fragmented mask is an unsure one);
- each class's area lies within a factor ``area_ratio`` of that class's median area over all
  predicted images (a swapped or half-missed bone stands out);
- maps only: the image confidence, the mean over classes of the mean probability inside the
  class's mask, is at least ``min_confidence`` (a CSV carries no probabilities).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from yolohand.core import rle
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.errors import YolohandError

__all__ = [
    "DEFAULT_MIN_CONFIDENCE", "DEFAULT_AREA_RATIO", "DEFAULT_MIN_COMPONENT", "REPORT", "mask_polygon",
    "pseudo_json", "PseudoSummary", "pseudo_labels",
]

#: Maps: keep an image when its mean (over classes) of the mean probability inside each mask reaches this.
DEFAULT_MIN_CONFIDENCE = 0.8
#: Each class's area within this factor of the class's median area over the predicted images.
DEFAULT_AREA_RATIO = 2.0
#: The largest connected component holds at least this share of a class's predicted pixels.
DEFAULT_MIN_COMPONENT = 0.9
#: The report written beside ``train/``.
REPORT = "pseudo_report.json"


def mask_polygon(crop: np.ndarray, y0: int, x0: int) -> tuple[np.ndarray | None, int, int]:
    """(int32 (N, 2) x, y points in image pixels, or None; pixels of the largest component; all pixels).

    ``crop``: bool (h, w) mask whose top-left pixel sits at (y0, x0). The polygon is the outer
    contour of the largest 8-connected component (what ``cv2.fillPoly`` fills back exactly,
    holes filled); None when the mask is empty or the contour has fewer than 3 points.
    """
    total = int(np.count_nonzero(crop))
    if total == 0:
        return None, 0, 0
    padded = np.pad(crop.astype(np.uint8), 1)  # contours never touch the array's edge
    n, labels, stats, _ = cv2.connectedComponentsWithStats(padded, connectivity=8)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    contours, _ = cv2.findContours((labels == big).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=len).reshape(-1, 2)
    if len(contour) < 3:
        return None, int(stats[big, cv2.CC_STAT_AREA]), total
    points = contour.astype(np.int32) + np.array([x0 - 1, y0 - 1], np.int32)
    return points, int(stats[big, cv2.CC_STAT_AREA]), total


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "yolohand-pseudo/" + "/".join(parts)))


def pseudo_json(rel_path: str, polygons: Sequence[np.ndarray | None], hw: tuple[int, int], source: str,
                confidence: float | None) -> dict:
    """The competition JSON of one image (same eight top-level keys as the real files and
    ``yolohand synth``): one ``poly_seg`` annotation per class with a polygon, in class order.
    Ids are name-based UUIDs (the same input gives the same bytes)."""
    name = Path(rel_path).name
    annotations = [
        {"id": f"{c + 1}-{_uuid(rel_path, CLASSES[c])}", "type": "poly_seg", "attributes": {},
         "points": pts.tolist(), "label": CLASSES[c]}
        for c, pts in enumerate(polygons) if pts is not None
    ]
    return {
        "annotations": annotations,
        "attributes": {"pseudo_label": True, "source": source,
                       "confidence": None if confidence is None else round(float(confidence), 6)},
        "file_id": _uuid(rel_path),
        "filename": name,
        "parent_path": "/" + str(Path(rel_path).parent.as_posix()),
        "last_modifier_id": "yolohand-pseudo",
        "metadata": {"height": int(hw[0]), "width": int(hw[1])},
        "last_workers": {},
    }


@dataclass
class _Image:
    """What the rule needs of one predicted image."""

    rel_path: str
    image_path: Path
    areas: np.ndarray                      # int64 (29,): predicted pixels per class
    share: np.ndarray                      # float (29,): largest component / all pixels (1 when empty)
    present: np.ndarray                    # bool (29,): a polygon was made
    confidence: float | None
    class_conf: np.ndarray | None          # float (29,) mean probability inside each mask (maps)
    reasons: list[str] = field(default_factory=list)

    def weakest(self) -> str | None:
        """The present class of lowest mean probability (maps), else None."""
        if self.class_conf is None or not self.present.any():
            return None
        return CLASSES[int(np.argmin(np.where(self.present, self.class_conf, np.inf)))]


@dataclass
class PseudoSummary:
    """What :func:`pseudo_labels` wrote."""

    out: Path
    predicted: int
    kept: int
    rejected: dict[str, int]               # reason kind -> images
    not_predicted: int                     # images under ``images`` without a prediction
    train_linked: int = 0
    renamed_ids: list[str] = field(default_factory=list)  # test IDs that also name a training patient
    confidences: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """Human summary lines."""
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        out = [f"kept {self.kept} of {self.predicted} predicted images; rejected: {why}"]
        if self.confidences:
            c = np.asarray(self.confidences)
            out.append(f"image confidence (mean probability inside the masks): min {c.min():.3f}, "
                       f"median {np.median(c):.3f}, max {c.max():.3f}")
        if self.not_predicted:
            out.append(f"{self.not_predicted} image(s) without a prediction were left out")
        if self.train_linked:
            out.append(f"{self.train_linked} real training image(s) linked in beside them")
        if self.renamed_ids:
            shown = ", ".join(self.renamed_ids[:3]) + (" ..." if len(self.renamed_ids) > 3 else "")
            out.append(f"{len(self.renamed_ids)} test ID(s) also name a training patient ({shown}): written as "
                       "<ID>-pseudo, so the two never share a fold")
        out.append(f"wrote {self.out} (report: {REPORT}) in {self.seconds:.1f} s")
        return out


def _predictions(pred: Path, records: dict, hw_of, cuts: np.ndarray | None) -> Iterator[tuple[str, list, np.ndarray | None]]:
    """(key, per class (bool crop, y0, x0) or None, mean probability inside each mask or None) per
    predicted image; key is the image name (CSV) or stem (maps)."""
    if pred.is_dir():
        from yolohand.core.probmaps import iter_probmap_folder, load_probmap

        for name, path in iter_probmap_folder(pred):
            key = Path(name).stem
            u8 = load_probmap(path, shape=hw_of(key))
            crops, conf = [], np.zeros(NUM_CLASSES)
            for c in range(NUM_CLASSES):
                mask = u8[c] >= cuts[c]
                box = rle.mask_bbox(mask)
                if box is None:
                    crops.append(None)
                    continue
                y0, x0, y1, x1 = box
                crop = mask[y0:y1, x0:x1]
                crops.append((crop, y0, x0))
                conf[c] = float(u8[c, y0:y1, x0:x1][crop].mean()) / 255.0
            yield key, crops, conf
        return
    from yolohand.core.submission import iter_submission

    shapes = {hw_of(k) for k in records}
    for name, runs in iter_submission(pred, max(shapes, key=lambda s: (s[0] * s[1], s))):
        if name not in records:
            yield name, [], None  # reported by the caller
            continue
        hw = hw_of(name)
        crops = []
        for c, r in enumerate(runs):
            if len(r) and int(r[-1, 1]) > hw[0] * hw[1]:
                raise YolohandError(f"{pred}: image {name!r} class {CLASSES[c]}: RLE goes past the image's "
                                    f"{hw[0]}x{hw[1]} pixels")
            box = rle.bbox(r, hw[1])
            if box is None:
                crops.append(None)
                continue
            crops.append((rle.runs_crop(r, box, hw), box[0], box[1]))
        yield name, crops, None


def _judge(images: list[_Image], min_confidence: float | None, area_ratio: float, min_component: float) -> None:
    """Fill each image's ``reasons`` (empty: kept) by the rule of the module docstring."""
    areas = np.stack([im.areas for im in images]).astype(np.float64)
    present = np.stack([im.present for im in images])
    median = np.array([np.median(areas[present[:, c], c]) if present[:, c].any() else 0.0 for c in range(NUM_CLASSES)])
    for im in images:
        missing = [CLASSES[c] for c in np.flatnonzero(~im.present)]
        if missing:
            im.reasons.append(f"missing: {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        frag = [CLASSES[c] for c in np.flatnonzero(im.present & (im.share < min_component))]
        if frag:
            im.reasons.append(f"fragmented: {', '.join(frag[:3])}")
        odd = [CLASSES[c] for c in np.flatnonzero(im.present) if not (
            median[c] / area_ratio <= im.areas[c] <= median[c] * area_ratio)]
        if odd:
            im.reasons.append(f"area: {', '.join(odd[:3])}")
        if min_confidence is not None and im.confidence is not None and im.confidence < min_confidence:
            im.reasons.append(f"confidence: {im.confidence:.3f} < {min_confidence:g}")


def _placements(rel_paths: list[str], train_ids: set[str]) -> dict[str, str]:
    """Where each predicted image (``IDxxx/<name>``) goes under ``<out>/train/DCM``: its own ID
    folder, renamed ``IDxxx-pseudo`` (``-pseudo2``...) when the linked training set has a patient of
    that ID. Test and training IDs name different patients (the phantom's seeds number both from
    ID001): sharing a folder would put a test image in that patient's fold, and in validation."""
    taken = set(train_ids)
    renamed: dict[str, str] = {}
    out = {}
    for rel in rel_paths:
        parts = Path(rel).parts
        if len(parts) < 2:  # no ID folder: placed as it is
            out[rel] = rel
            continue
        pid = parts[0]
        if pid not in renamed:
            new, n = pid, 1
            while new in taken:
                new = f"{pid}-pseudo" + (str(n) if n > 1 else "")
                n += 1
            renamed[pid] = new
            taken.add(new)
        out[rel] = Path(renamed[pid], *parts[1:]).as_posix()
    return out


def _json_place(root: Path, rel_path: str) -> Path:
    """``<root>/train/outputs_json/IDxxx/<stem>.json`` of the image ``IDxxx/<name>``."""
    return root / "train" / "outputs_json" / Path(rel_path).with_suffix(".json")


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copyfile(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def pseudo_labels(
    pred: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    min_confidence: float | None = None,
    area_ratio: float = DEFAULT_AREA_RATIO,
    min_component: float = DEFAULT_MIN_COMPONENT,
    thresholds: Sequence[float] | None = None,
    with_train: str | os.PathLike | None = None,
    copy: bool = False,
    force: bool = False,
    progress: bool = True,
) -> PseudoSummary:
    """Write pseudo-labels of ``images`` from ``pred`` (a submission CSV or a probability-map
    folder) as a dataset root at ``out`` (module docstring).

    ``min_confidence``: maps only (None: :data:`DEFAULT_MIN_CONFIDENCE`); ``thresholds``: per-class
    thresholds for maps (:mod:`yolohand.results.thresholds`; default 0.5); ``with_train``: a dataset
    root whose ``train`` images and JSONs are linked in too; ``copy``: copy the images instead of
    symlinking them. Streams one image at a time (per image only 29 areas and confidences are
    kept). YolohandError before anything is written for bad arguments or a prediction of an image
    that ``images`` lacks.
    """
    from yolohand.core.atomic import atomic_dir
    from yolohand.core.paths import DATASET, check_output
    from yolohand.data.layout import find_images, find_split, image_size

    t0 = time.perf_counter()
    pred, images = Path(pred), Path(images)
    if not pred.exists():
        raise YolohandError(f"{pred}: not found (expected a submission CSV or a folder of .npz maps)")
    maps = pred.is_dir()
    if not maps and (min_confidence is not None or thresholds is not None):
        raise YolohandError("--min-confidence and --thresholds need probability maps (a CSV has no probabilities)")
    if not (area_ratio >= 1 and np.isfinite(area_ratio)):
        raise YolohandError(f"--area-ratio {area_ratio}: must be a number >= 1")
    if not 0 <= min_component <= 1:
        raise YolohandError(f"--min-component {min_component}: must lie in [0, 1]")
    if maps and min_confidence is None:
        min_confidence = DEFAULT_MIN_CONFIDENCE
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise YolohandError(f"--min-confidence {min_confidence}: must lie in [0, 1]")
    cuts = None
    if maps:
        from yolohand.results.thresholds import check_thresholds, map_cut

        ts = check_thresholds(thresholds) if thresholds is not None else np.full(NUM_CLASSES, 0.5)
        cuts = np.array([map_cut(t) for t in ts])
    # Images in the competition layout (<root>/<split>/DCM): the whole dataset root is an input.
    data_root = images.resolve().parents[1] if images.name == "DCM" and len(images.resolve().parents) > 1 else None
    out = check_output(out, DATASET, [pred, images, with_train, data_root], force, flag="--out")
    records = find_images(images)
    by_key = {}
    for rec in records:
        key = rec.stem if maps else rec.name
        if key in by_key:
            raise YolohandError(f"{rec.image_path}: the image name {key!r} appears twice under {images}")
        by_key[key] = rec
    train = find_split(with_train, "train", require_json=True).records if with_train is not None else []
    placed = _placements([r.rel_path for r in records], {r.patient_id for r in train})
    sizes: dict[str, tuple[int, int]] = {}

    def hw_of(key: str) -> tuple[int, int]:
        if key not in by_key:
            raise YolohandError(f"{pred}: {key!r} is not an image under {images}")
        if key not in sizes:
            sizes[key] = image_size(by_key[key].image_path)
        return sizes[key]

    done: list[_Image] = []
    seen: set[str] = set()
    with atomic_dir(out, force, kind=DATASET) as tmp:
        bar = tqdm(desc="pseudo-labels", unit="img", total=len(records), disable=not progress)
        for key, crops, conf in _predictions(pred, by_key, hw_of, cuts):
            rec = by_key.get(key)
            if rec is None:
                hw_of(key)  # raises, naming the image
            if key in seen:
                raise YolohandError(f"{pred}: image {key!r} appears twice")
            seen.add(key)
            polys, areas, share = [], np.zeros(NUM_CLASSES, np.int64), np.ones(NUM_CLASSES)
            for c, item in enumerate(crops):
                if item is None:
                    polys.append(None)
                    continue
                pts, big, total = mask_polygon(*item)
                polys.append(pts)
                areas[c], share[c] = total, big / total
            present = np.array([p is not None for p in polys])
            img_conf = float(conf[present].mean()) if conf is not None and present.any() else None
            done.append(_Image(rec.rel_path, rec.image_path, areas, share, present, img_conf, conf))
            doc = pseudo_json(placed[rec.rel_path], polys, sizes[key], str(pred), img_conf)
            json_path = _json_place(tmp, placed[rec.rel_path])
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            bar.update()
        bar.close()
        if not done:
            raise YolohandError(f"{pred}: no predictions of images under {images}")
        _judge(done, min_confidence, area_ratio, min_component)
        for im in done:
            if im.reasons:
                _json_place(tmp, placed[im.rel_path]).unlink()
            else:
                _place(im.image_path, tmp / "train" / "DCM" / placed[im.rel_path], copy)
        for rec in train:
            _place(rec.image_path, tmp / "train" / "DCM" / rec.rel_path, copy)
            _place(rec.json_path, _json_place(tmp, rec.rel_path), copy)
        rejected: dict[str, int] = {}
        for im in done:
            for r in im.reasons:
                rejected[r.split(":")[0]] = rejected.get(r.split(":")[0], 0) + 1
        report = {
            "source": str(pred), "images": str(images), "with_train": None if with_train is None else str(with_train),
            "rule": {"min_confidence": min_confidence, "area_ratio": area_ratio, "min_component": min_component,
                     "thresholds": None if cuts is None else {n: int(k) for n, k in zip(CLASSES, cuts)}},
            "kept": sum(not im.reasons for im in done), "predicted": len(done),
            "per_image": {im.rel_path: {"kept": not im.reasons, "reasons": im.reasons, "confidence": im.confidence,
                                        "weakest": im.weakest(), "as": placed[im.rel_path]} for im in done},
        }
        (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return PseudoSummary(
        out=out, predicted=len(done), kept=report["kept"], rejected=rejected,
        not_predicted=len(records) - len(done), train_linked=len(train),
        renamed_ids=sorted({Path(im.rel_path).parts[0] for im in done
                            if not im.reasons and placed[im.rel_path] != im.rel_path}),
        confidences=[im.confidence for im in done if im.confidence is not None], seconds=time.perf_counter() - t0,
    )
