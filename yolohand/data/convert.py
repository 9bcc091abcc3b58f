"""Convert the competition data (polygon JSONs) into an ultralytics YOLO-seg dataset with K folds.

Output layout (``<out>``, written to a temporary folder and renamed into place)::

    images/IDxxx/<name>.png      -> absolute symlink to the original PNG (images are never copied)
    images/IDxxx/<stem>.npy      resized image cache, only with --imgsz (see yolohand.data.imcache)
    labels/IDxxx/<stem>.txt      one line per instance: ``cls x1 y1 x2 y2 ...`` normalised
    folds/fold{k}/{train,val}/images/IDxxx -> ../../../../images/IDxxx   (relative dir symlinks)
    folds/fold{k}/{train,val}/labels/IDxxx -> ../../../../labels/IDxxx
    folds/fold{k}_{train,val}.txt  absolute paths of folds/fold{k}/{train,val}/images/IDxxx/<name>.png
    folds/fold{k}.yaml             ultralytics data YAML (absolute path/train/val, names, channels)
    folds.json                     {"k", "seed", "folds": [[ID, ...], ...], "images": {ID: [name, ...]}}
    convert_report.json            every skip, warning, repair and drop; per-image fingerprints

Why the per-fold symlink trees: ultralytics finds a label by replacing the last ``/images/``
of the image path with ``/labels/``, and writes its label cache to
``Path(label_files[0]).parent.with_suffix(".cache")`` (ultralytics/data/dataset.py,
``YOLODataset.get_labels``). With one shared labels folder every fold and split would read and
rewrite the same ``labels/IDxxx.cache`` whenever their first image shares an ID folder; under
``folds/fold{k}/{split}/labels/`` each (fold, split) gets its own cache file. The relative
directory symlinks survive the rename of the temporary folder; the image symlinks are absolute.

Labels: points normalised by the image size read from the PNG header (never the JSON
``metadata``), written with :data:`LABEL_DECIMALS` decimals after adding :data:`NUDGE_PX` and
rounding *up* (i.e. p / W rounded up at the 6th decimal): then ``round(v * W)`` and ``int(v * W)`` (ultralytics truncates, in float32) both
give back the original integer pixel, so filling the label polygons at full size reproduces the
JSON-polygon fill exactly unless a polygon was repaired (yolohand.data.repair). The fidelity figure
(mean Dice of label-polygon fills vs JSON-polygon fills over every (image, class) with either
non-empty, computed in bounding-box crops) is printed and stored in the report.

Channels: :data:`CHANNELS` = 1. The X-rays are grayscale (3-channel files have equal channels).
ultralytics 8.4 reads images with ``cv2.IMREAD_GRAYSCALE`` when the data YAML says
``channels: 1`` (``BaseDataset.cv2_flag``) and the predictor reads with the model's ``channels``;
loading 3-channel pretrained weights into a 1-channel model sums the first convolution's filters
(``BaseModel.load``), which is exactly the 3-channel network applied to a gray image repeated 3
times. So nothing is lost, and decoding, augmentation and the resize cache carry 3x less data.
The data YAMLs written here say ``channels: 1``; train reads the channel count from the data
YAML and predict from the checkpoint, so no other module needs CHANNELS.

Bad input (fatal = YolohandError, non-zero exit, nothing written; warning = listed in the
report and counted in the summary):

* fatal, before any work: root or ``<root>/train/DCM`` missing; no images; no image with a JSON;
  an ``--exclude`` entry that matches no image; fewer patient IDs than folds; ``--folds`` < 2;
  ``--imgsz`` not a multiple of 32; the output equals the root, lies inside it or contains it;
  the output exists and ``--force`` is not given, or it is not a previous converted dataset
  (a file, or a folder without ``convert_report.json`` / yolohand's marker), or its place is
  not writable (:func:`yolohand.core.paths.check_output`). Fatal after the work: no image left.
* warning, image skipped: JSON that does not parse (or has no ``annotations`` list); image
  without JSON; unreadable image: every image is decoded in the workers, as ultralytics will
  read it, so a truncated or corrupt PNG (or a broken symlink) is skipped here rather than
  dropped later by ultralytics; no usable polygon left.
* warning, image kept: JSON without image (ignored); unknown label (that annotation is left
  out); class missing or present twice; polygon dropped by the repair (< 3 points, no area,
  outside the image), and then "class missing" when it was the class's only polygon.

Known bad data (``--drop-known-bad``, :data:`KNOWN_BAD`): the two images DESIGN.md names as
mislabelled. ID363 (ring) and ID487 (object on the wrist) are correctly labelled and stay in:
foreign objects also occur in the test set, so they are useful training examples.

Re-running: with ``--force`` and unchanged inputs, labels (and resized images) of images whose
:func:`fingerprint` (SHA-1 of the PNG and of the JSON, converter version, --imgsz) matches the
previous report are hard-linked from the previous output instead of being recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from yolohand.core.atomic import atomic_dir
from yolohand.core.classes import CLASSES
from yolohand.core.paths import YOLO, check_output
from yolohand.data.folds import fold_of, make_folds
from yolohand.data.workers import cv2_single_threaded, start_pool
from yolohand.errors import YolohandError

#: Image channels for training and prediction (grayscale X-rays); see the module docstring.
CHANNELS: int = 1
#: Decimals of the normalised label coordinates.
LABEL_DECIMALS: int = 6
#: Pixels added before rounding up, so that truncation and rounding both recover the integer
#: (a power of two, so (p + NUDGE_PX) / W * 10**6 is practically never an exact integer).
NUDGE_PX: float = 1 / 1024
#: Bump when the label output changes: invalidates reuse of a previous output.
CONVERT_VERSION: int = 3  # 3: pseudo-labelled IDs train in every fold, never validate
#: Fidelity (mean Dice of label fills vs JSON fills) the converter promises.
FIDELITY_BOUND: float = 0.999
#: (patient ID, image stem) -> why it is excluded by --drop-known-bad (DESIGN.md, "Known dirty data").
KNOWN_BAD: dict[tuple[str, str], str] = {
    ("ID058", "image1661392103627"): "mirrored/swapped labels",
    ("ID089", "image1661821711879"): "Trapezium and Trapezoid swapped",
}
REPORT_NAME = "convert_report.json"
KNOWN_BAD_FILE = "known_bad.json"  # a dataset's own list of mislabelled images (yolohand synth writes one)
_SCALE = 10**LABEL_DECIMALS


# --------------------------------------------------------------------------- labels


def normalise_points(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """int64 (M, 2): pixel points -> label coordinates in units of 10**-LABEL_DECIMALS.

    ``ceil((p + NUDGE_PX) / size * 10**6)``: p / size rounded up at the 6th decimal, never below
    the true value, so ``int(v*W)`` and ``round(v*W)`` (also in float32) both give back an integer
    pixel p (v*W - p is between 0.0009 and 0.003 px at 2048).
    """
    size = np.array([w, h], np.float64)
    units = np.ceil((np.asarray(points, np.float64) + NUDGE_PX) / size * _SCALE)
    return np.clip(units, 0, _SCALE).astype(np.int64)


_POW10 = 10 ** np.arange(LABEL_DECIMALS - 1, -1, -1, dtype=np.int64)


def label_line(cls: int, units: np.ndarray) -> str:
    """One label line ``"cls x1 y1 ..."`` from :func:`normalise_points` output (no newline).

    Values below 1 (always, for points inside the image) are formatted as bytes in numpy:
    ``" 0."`` followed by the 6 digits, 10x faster than Python string formatting.
    """
    flat = units.ravel()
    if flat.size and flat.max() < _SCALE and flat.min() >= 0:
        buf = np.empty((flat.size, 3 + LABEL_DECIMALS), np.uint8)
        buf[:, :3] = np.frombuffer(b" 0.", np.uint8)
        buf[:, 3:] = (flat[:, None] // _POW10) % 10 + ord("0")
        return str(cls) + buf.tobytes().decode("ascii")
    parts = [f"{v // _SCALE}.{v % _SCALE:0{LABEL_DECIMALS}d}" for v in flat.tolist()]
    return f"{cls} " + " ".join(parts)


def label_to_pixels(units: np.ndarray, h: int, w: int) -> np.ndarray:
    """int32 (M, 2): label coordinates (units) back to the nearest pixel at full size."""
    return np.rint(units / _SCALE * np.array([w, h], np.float64)).astype(np.int32)


def parse_label_file(path: str | os.PathLike, h: int, w: int) -> list[tuple[int, np.ndarray]]:
    """Read a label file back: list of (class, int32 (M, 2) pixel points rounded at (h, w))."""
    out = []
    for line in Path(path).read_text().splitlines():
        vals = line.split()
        if not vals:
            continue
        xy = np.asarray(vals[1:], np.float64).reshape(-1, 2)
        out.append((int(vals[0]), np.rint(xy * np.array([w, h])).astype(np.int32)))
    return out


# --------------------------------------------------------------------------- fidelity


def _fill_union(
    polys: Sequence[np.ndarray], h: int, w: int, box: tuple[int, int, int, int], inside: bool = False
) -> np.ndarray:
    """OR of the polygon fills restricted to ``box`` = (y0, x0, y1, x1); bool (y1-y0, x1-x0).

    Each polygon is filled on its own (a multi-polygon cv2 call would XOR overlaps), shifted into
    the box when it lies inside the image (cv2's fill is translation invariant for integer
    points), else through :func:`yolohand.data.layout.polygon_crop` (which lets cv2 clip at the border).
    """
    from yolohand.data.layout import polygon_crop

    y0, x0, y1, x1 = box
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for pts in polys:
        if inside or (len(pts) and pts.min() >= 0 and pts[:, 0].max() < w and pts[:, 1].max() < h):
            cv2.fillPoly(out, [np.ascontiguousarray(pts, np.int32)], 1, offset=(-x0, -y0))
        else:
            crop, cy, cx = polygon_crop(pts, h, w)
            if crop.size:
                out[cy - y0 : cy - y0 + crop.shape[0], cx - x0 : cx - x0 + crop.shape[1]] |= crop
    return out.view(bool)


def fill_dice(gt: Sequence[np.ndarray], pred: Sequence[np.ndarray], h: int, w: int) -> float | None:
    """Dice of the fills of two polygon sets (int32 (N, 2) each) in an (h, w) image.

    Computed in the union bounding box (clipped to the image). None when both fills are empty.
    """
    from yolohand.core.metrics import dice_score

    allp = [p for p in (*gt, *pred) if len(p)]
    if not allp:
        return None
    stack = np.concatenate(allp)
    lo, hi = stack.min(0).tolist(), stack.max(0).tolist()
    inside = lo[0] >= 0 and lo[1] >= 0 and hi[0] < w and hi[1] < h  # the usual case: no per-polygon checks
    box = (max(lo[1], 0), max(lo[0], 0), min(hi[1] + 1, h), min(hi[0] + 1, w))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    a = _fill_union(gt, h, w, box, inside)
    b = _fill_union(pred, h, w, box, inside)
    na, nb = cv2.countNonZero(a.view(np.uint8)), cv2.countNonZero(b.view(np.uint8))
    if na == 0 and nb == 0:
        return None
    return float(dice_score(cv2.countNonZero((a & b).view(np.uint8)), na, nb))


# --------------------------------------------------------------------------- one image (worker)


@dataclass
class _Task:
    rel_path: str
    image_path: str
    json_path: str
    tmp_out: str
    imgsz: int | None


def _digest(data: bytes | np.ndarray) -> str:
    return hashlib.sha1(memoryview(data)).hexdigest()


def fingerprint(image_bytes: bytes | np.ndarray, json_bytes: bytes, imgsz: int | None) -> str:
    """What decides reuse: converter version, SHA-1 of the image and of the JSON, --imgsz.

    Content hashes, not sizes and mtimes: a JSON edited in place within one mtime tick (or with
    its mtime restored) must not reuse stale labels. Hashing is cheap next to decoding.
    """
    return f"v{CONVERT_VERSION}:{_digest(image_bytes)}:{_digest(json_bytes)}:{imgsz or 0}"


def _decode(image_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(file bytes uint8 (N,), decoded uint8 (H, W) as ultralytics reads it). YolohandError
    naming the file when it cannot be read or decoded (truncated, corrupt, not an image)."""
    from yolohand.data.imcache import read_gray_like_ultralytics
    from yolohand.data.layout import quiet_native_stderr, unreadable

    path = Path(image_path)
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise unreadable(path, exc) from None
    with quiet_native_stderr():  # libpng prints its own complaint; ours is in the report
        im = read_gray_like_ultralytics(path) if raw.size else None
    if im is None:
        raise YolohandError(f"{path}: not a readable image (empty file)")
    return raw, im


def _labels(ann, h: int, w: int, rel: str) -> dict[str, Any]:
    """Repair and normalise one annotation's polygons: label lines, report entries, fidelity."""
    from yolohand.data.repair import prepare, repair_polygon

    simple, valid = prepare([p.points for p in ann.polygons])
    repairs, drops, lines, removed = [], [], [], 0
    gt_by_class: dict[int, list[np.ndarray]] = {}
    lab_by_class: dict[int, list[np.ndarray]] = {}
    for poly, pts, ok in zip(ann.polygons, simple, valid):
        gt_by_class.setdefault(poly.class_index, []).append(poly.points)
        res = repair_polygon(pts, h, w, bool(ok), points_removed=len(poly.points) - len(pts))
        removed += res.points_removed
        where = {"file": rel, "annotation": poly.annotation_id, "label": poly.label}
        if res.actions:
            repairs.append({**where, "actions": res.actions})
        if res.points is None:
            drops.append({**where, "reason": res.dropped})
            continue
        units = normalise_points(res.points, h, w)
        lines.append(label_line(poly.class_index, units))
        lab_by_class.setdefault(poly.class_index, []).append(label_to_pixels(units, h, w))
    warnings = [f"{ann.path}: annotation {d['annotation']}: {d['label']}: polygon dropped ({d['reason']})"
                for d in drops]
    warnings += [f"{ann.path}: class {CLASSES[c]}: missing (its only polygon was dropped)"
                 for c in sorted(set(gt_by_class) - set(lab_by_class))]
    dice = {}
    for cls in sorted(set(gt_by_class) | set(lab_by_class)):
        d = fill_dice(gt_by_class.get(cls, []), lab_by_class.get(cls, []), h, w)
        if d is not None:
            dice[str(cls)] = round(d, 6)
    return {"lines": lines, "points_removed": removed, "dice": dice, "repairs": repairs, "drops": drops,
            "warnings": warnings}


def _convert_one(task: _Task) -> dict[str, Any]:
    """Convert one image: decode-check it, write its label file (and resized cache); return its
    report entry. Never raises for bad input: a problem that skips the image comes back as
    ``{"skip": msg}``.
    """
    from yolohand.data.layout import read_annotation

    rel = task.rel_path
    try:
        raw, im = _decode(task.image_path)
        json_bytes = Path(task.json_path).read_bytes()
        ann = read_annotation(task.json_path)
    except OSError as exc:
        return {"rel_path": rel, "skip": f"{task.json_path}: cannot read ({exc.strerror or exc})"}
    except YolohandError as exc:
        return {"rel_path": rel, "skip": str(exc)}
    h, w = im.shape[:2]
    lab = _labels(ann, h, w, rel)
    warnings = list(ann.problems) + lab.pop("warnings")
    if not lab["lines"]:
        return {"rel_path": rel, "skip": f"{task.json_path}: no usable polygon", "warnings": warnings,
                "drops": lab["drops"]}
    out = Path(task.tmp_out)
    pid, stem = Path(rel).parent.name, Path(rel).stem
    if task.imgsz:
        from yolohand.data.imcache import resize_long_side

        npy = out / "images" / pid / f"{stem}.npy"
        npy.parent.mkdir(parents=True, exist_ok=True)
        np.save(npy, np.ascontiguousarray(resize_long_side(im, task.imgsz)), allow_pickle=False)
    lines = lab.pop("lines")
    label = out / "labels" / pid / f"{stem}.txt"
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("\n".join(lines) + "\n")
    return {"rel_path": rel, "size": [h, w], "lines": len(lines), **lab, "warnings": warnings,
            "pseudo": ann.pseudo, "fingerprint": fingerprint(raw, json_bytes, task.imgsz)}


# --------------------------------------------------------------------------- selection


def _split_entries(values: Iterable[str]) -> list[str]:
    return [v.strip() for value in values for v in str(value).split(",") if v.strip()]


def _matches(entry: str, rec) -> bool:
    e = entry.strip("/")
    stem_rel = rec.rel_path.rsplit(".", 1)[0]
    return e in (rec.patient_id, rec.rel_path, stem_rel, rec.name, rec.stem)


def read_known_bad(root: str | os.PathLike | None, split: str = "train") -> dict[str, str]:
    """The dataset's own list of mislabelled images, ``<root>/known_bad.json`` (written by
    ``yolohand synth``): rel_path "IDxxx/name.png" -> why, for ``split``; {} when absent.
    """
    path = Path(root) / KNOWN_BAD_FILE if root is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {k.split("/", 1)[1]: str(v) for k, v in images.items() if k.startswith(split + "/")}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise YolohandError(f"{path}: not a known-bad list ({{\"images\": {{\"train/IDxxx/name.png\": why}}}}): {exc}") from None


def select_records(
    records: Sequence, exclude: Iterable[str], drop_known_bad: bool, listed_bad: dict[str, str] | None = None
) -> tuple[list, list[dict]]:
    """Apply --exclude (IDs, names, stems or ID/name paths; comma-separated allowed) and the
    known-bad lists: :data:`KNOWN_BAD` (the real data's) and ``listed_bad`` (the dataset's own
    ``known_bad.json``, see :func:`read_known_bad`). Returns (kept records, excluded entries
    ``{"file", "reason"}``).

    An --exclude entry that matches nothing is fatal (most likely a typo); a known-bad image
    that is not in the dataset is simply not there.
    """
    entries = _split_entries(exclude)
    listed_bad = listed_bad or {}
    excluded: dict[str, str] = {}
    for entry in entries:
        hits = [r for r in records if _matches(entry, r)]
        if not hits:
            raise YolohandError(f"--exclude {entry}: matches no annotated image (give an ID like ID058 or an image name)")
        for r in hits:
            excluded.setdefault(r.rel_path, f"--exclude {entry}")
    if drop_known_bad:
        for r in records:
            for (pid, stem), why in KNOWN_BAD.items():
                if r.patient_id == pid and (r.stem == stem or r.stem.startswith(stem + "_")):
                    excluded.setdefault(r.rel_path, f"known bad: {why}")
            why = listed_bad.get(r.rel_path)
            if why:
                excluded.setdefault(r.rel_path, f"known bad ({KNOWN_BAD_FILE}): {why}")
    kept = [r for r in records if r.rel_path not in excluded]
    return kept, [{"file": k, "reason": v} for k, v in sorted(excluded.items())]


# --------------------------------------------------------------------------- report


@dataclass
class ConvertReport:
    """What a conversion did; ``to_json()`` is convert_report.json, ``lines()`` the summary."""

    root: Path
    out: Path
    k: int
    seed: int
    imgsz: int | None
    n_images: int = 0
    n_ids: int = 0
    label_lines: int = 0
    seconds: float = 0.0
    reused: int = 0
    fidelity: float = float("nan")
    fidelity_min: float = float("nan")
    fold_images: list[int] = field(default_factory=list)
    folds: list[list[str]] = field(default_factory=list)
    train_only: list[str] = field(default_factory=list)  # pseudo-labelled IDs: every fold's training, no validation
    n_train_only_images: int = 0
    skipped: list[dict] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repairs: list[dict] = field(default_factory=list)
    drops: list[dict] = field(default_factory=list)
    points_removed: int = 0
    images: dict[str, dict] = field(default_factory=dict)
    worst: list[dict] = field(default_factory=list)

    def repair_counts(self) -> dict[str, int]:
        """Action name -> number of polygons it was applied to."""
        c: Counter[str] = Counter()
        for r in self.repairs:
            for a in r["actions"]:
                c[a.split(":")[0]] += 1
        return dict(sorted(c.items()))

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.repair_counts().items()) or "none"
        out = [
            f"converted {self.n_images} images ({self.n_ids} IDs) into {self.out} in {self.seconds:.1f} s"
            + (f" ({self.reused} reused from the previous output)" if self.reused else ""),
            f"labels: {self.label_lines} polygons; repaired {len(self.repairs)} ({counts}); "
            f"dropped {len(self.drops)}; {self.points_removed} repeated/collinear points removed",
            f"fidelity: mean Dice {self.fidelity:.6f} (min {self.fidelity_min:.6f}) of label polygons vs JSON "
            f"polygons filled at full size (bound {FIDELITY_BOUND})",
            f"folds: {self.k} (seed {self.seed}), images per fold {self.fold_images}",
            *([f"pseudo-labelled: {self.n_train_only_images} images ({len(self.train_only)} IDs) in every fold's "
               "training, never validated"] if self.train_only else []),
            f"skipped {len(self.skipped)} images, excluded {len(self.excluded)}, {len(self.warnings)} warnings"
            + (f"; see {self.out / REPORT_NAME}" if self.skipped or self.warnings or self.drops else ""),
        ]
        if self.imgsz:
            out.append(f"resize cache: images/IDxxx/*.npy, long side {self.imgsz}, uint8 grayscale")
        for s in self.skipped[:5]:
            out.append(f"warning: skipped {s['file']}: {s['problem']}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CONVERT_VERSION,
            "root": str(self.root),
            "out": str(self.out),
            "options": {"folds": self.k, "seed": self.seed, "imgsz": self.imgsz, "channels": CHANNELS},
            "seconds": round(self.seconds, 3),
            "summary": {
                "images": self.n_images,
                "ids": self.n_ids,
                "label_lines": self.label_lines,
                "repaired": len(self.repairs),
                "repairs_by_action": self.repair_counts(),
                "dropped": len(self.drops),
                "points_removed": self.points_removed,
                "skipped": len(self.skipped),
                "excluded": len(self.excluded),
                "warnings": len(self.warnings),
                "reused": self.reused,
            },
            "fidelity": {"mean_dice": self.fidelity, "min_dice": self.fidelity_min, "bound": FIDELITY_BOUND,
                         "worst": self.worst},
            "fold_images": self.fold_images,
            "train_only": self.train_only,
            "skipped": self.skipped,
            "excluded": self.excluded,
            "warnings": self.warnings,
            "repairs": self.repairs,
            "drops": self.drops,
            "images": self.images,
        }


# --------------------------------------------------------------------------- whole dataset


def _file_fingerprint(rec, imgsz: int | None) -> str | None:
    """:func:`fingerprint` of a record's files as they are now; None when one cannot be read."""
    try:
        return fingerprint(Path(rec.image_path).read_bytes(), Path(rec.json_path).read_bytes(), imgsz)
    except OSError:
        return None


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _previous(out: Path) -> dict[str, dict]:
    """Per-image entries of the previous output's report ({} when none or unreadable)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        doc = json.loads((out / REPORT_NAME).read_text())
        if doc.get("version") == CONVERT_VERSION:
            return dict(doc["images"])
    return {}


def _reuse(rec, old: Path, tmp: Path, imgsz: int | None) -> bool:
    """Hard-link a record's label (and cache) from the previous output ``old`` into ``tmp``."""
    pid, stem = rec.patient_id, rec.stem
    label = old / "labels" / pid / f"{stem}.txt"
    npy = old / "images" / pid / f"{stem}.npy"
    if not label.is_file() or (imgsz and not npy.is_file()):
        return False
    _link(label, tmp / "labels" / pid / f"{stem}.txt")
    if imgsz:
        _link(npy, tmp / "images" / pid / f"{stem}.npy")
    return True


def default_workers() -> int:
    """Worker processes by default: the CPU count (at most 8)."""
    return max(1, min(os.cpu_count() or 1, 8))


def _run_tasks(tasks: list[_Task], workers: int, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="convert", unit="img", disable=not progress or not tasks)
    results = []
    if workers <= 1 or len(tasks) < 8:
        for t in tasks:
            results.append(_convert_one(t))
            bar.update()
    else:
        chunk = max(1, min(16, len(tasks) // (workers * 8)))
        with cv2_single_threaded(), start_pool(workers) as pool:
            for r in pool.imap_unordered(_convert_one, tasks, chunksize=chunk):
                results.append(r)
                bar.update()
    bar.close()
    return results


def _write_folds(tmp: Path, out: Path, records: list, folds: list[list[str]], k: int, seed: int,
                 imgsz: int | None) -> list[int]:
    """Write the per-fold symlink trees, lists, YAMLs and folds.json; return images per fold.

    An ID of ``records`` in no fold (pseudo-labelled only: :func:`pseudo_only_ids`) is in every
    fold's training set and in no validation set."""
    fold_index = fold_of(folds)
    by_id: dict[str, list] = {}
    for r in records:
        by_id.setdefault(r.patient_id, []).append(r)
    fdir = tmp / "folds"
    sizes = []
    for j in range(k):
        members = {"train": [p for p in sorted(by_id) if fold_index.get(p) != j],
                   "val": [p for p in sorted(by_id) if fold_index.get(p) == j]}
        for split, pids in members.items():
            base = fdir / f"fold{j}" / split
            for kind in ("images", "labels"):
                (base / kind).mkdir(parents=True, exist_ok=True)
                for pid in pids:
                    os.symlink(f"../../../../{kind}/{pid}", base / kind / pid, target_is_directory=True)
            final = out / "folds" / f"fold{j}" / split / "images"
            paths = [str(final / pid / r.name) for pid in pids for r in by_id[pid]]
            (fdir / f"fold{j}_{split}.txt").write_text("\n".join(paths) + "\n")
        sizes.append(sum(len(by_id[p]) for p in members["val"]))
        data = {
            "path": str(out),
            "train": str(out / "folds" / f"fold{j}_train.txt"),
            "val": str(out / "folds" / f"fold{j}_val.txt"),
            "names": {i: n for i, n in enumerate(CLASSES)},
            "channels": CHANNELS,
        }
        if imgsz:
            data["cache_imgsz"] = int(imgsz)
        header = (f"# yolohand convert: fold {j} of {k} (seed {seed}); validation IDs are in folds.json.\n"
                  + (f"# images/*.npy hold a cache resized to long side {imgsz}: train with imgsz={imgsz}.\n"
                     if imgsz else ""))
        (fdir / f"fold{j}.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    doc = {"k": k, "seed": seed, "folds": folds, "train_only": sorted(set(by_id) - set(fold_index)),
           "images": {pid: [r.name for r in by_id[pid]] for pid in sorted(by_id)}}
    (tmp / "folds.json").write_text(json.dumps(doc, indent=1) + "\n")
    return sizes


@dataclass
class ConvertPlan:
    """Everything decided before any work: validated options, the records to convert, and the
    report already holding what the index found (unpaired files, exclusions)."""

    root: Path
    out: Path
    imgsz: int | None
    workers: int
    records: list
    report: ConvertReport


def check_convert_args(folds: int, imgsz: int | None, workers: int | None) -> None:
    """YolohandError naming the option when a :func:`convert_dataset` argument is out of range."""
    if imgsz is not None and (imgsz < 32 or imgsz % 32):
        raise YolohandError(f"--imgsz {imgsz}: must be a multiple of 32 and at least 32 (ultralytics' stride)")
    if folds < 2:
        raise YolohandError(f"--folds must be at least 2 (got {folds})")
    if workers is not None and workers < 0:
        raise YolohandError(f"--workers {workers}: must be 0 or more")


def plan_conversion(
    root: str | os.PathLike, out: str | os.PathLike, folds: int = 5, seed: int = 0, imgsz: int | None = None,
    exclude: Iterable[str] = (), drop_known_bad: bool = False, workers: int | None = None, force: bool = False,
) -> ConvertPlan:
    """Validate everything :func:`convert_dataset` needs, without writing: options, the output
    place (:func:`yolohand.core.paths.check_output`: never equal to, inside or around the root),
    the split index, exclusions and the fold count. Raises YolohandError for each fatal case."""
    from yolohand.data.layout import find_split

    check_convert_args(folds, imgsz, workers)
    root = Path(root).expanduser().resolve()
    out = check_output(out, YOLO, inputs=[root], force=force, flag="--out")
    index = find_split(root, "train")
    report = ConvertReport(root, out, folds, seed, imgsz)
    dcm = root / "train" / "DCM"
    for p in index.images_without_json:
        rel = p.relative_to(dcm).as_posix() if p.is_relative_to(dcm) else str(p)
        report.skipped.append({"file": rel, "problem": f"{p}: image without annotation JSON"})
    for p in index.jsons_without_image:
        report.warnings.append(f"{p}: annotation JSON without image (ignored)")
    if not index.records:
        raise YolohandError(f"{root / 'train' / 'outputs_json'}: no annotation JSON matches an image in {dcm}")
    listed = read_known_bad(root) if drop_known_bad else {}
    records, report.excluded = select_records(index.records, exclude, drop_known_bad, listed)
    if not records:
        raise YolohandError(f"{root}: every annotated image is excluded")
    make_folds([r.patient_id for r in records], folds, seed)  # fewer IDs than folds: fail before the long part
    workers = default_workers() if workers is None else max(1, int(workers))
    return ConvertPlan(root, out, imgsz, workers, records, report)


def reuse_previous(plan: ConvertPlan, tmp: Path) -> tuple[dict[str, dict], list[_Task]]:
    """Link what the previous output at ``plan.out`` already holds for unchanged images (same
    :func:`fingerprint`) into ``tmp``; return (their report entries, tasks for the rest)."""
    previous = _previous(plan.out) if plan.out.is_dir() else {}
    results: dict[str, dict] = {}
    tasks = []
    for r in plan.records:
        old = previous.get(r.rel_path)
        fp = _file_fingerprint(r, plan.imgsz) if old is not None else None
        if fp is not None and old.get("fingerprint") == fp and _reuse(r, plan.out, tmp, plan.imgsz):
            results[r.rel_path] = old
            plan.report.reused += 1
        else:
            tasks.append(_Task(r.rel_path, str(r.image_path), str(r.json_path), str(tmp), plan.imgsz))
    return results, tasks


def collect_results(plan: ConvertPlan, results: dict[str, dict]) -> tuple[list, list[tuple[float, str, int]]]:
    """Fold the per-image entries into the report; return (records kept, fidelity values as
    (Dice, rel path, class)). YolohandError when no image could be converted."""
    report = plan.report
    kept, dice_all = [], []
    for r in plan.records:
        res = results[r.rel_path]
        report.warnings.extend(res.get("warnings", []))
        report.drops.extend(res.get("drops", []))
        if "skip" in res:
            report.skipped.append({"file": r.rel_path, "problem": res["skip"]})
            continue
        kept.append(r)
        report.repairs.extend(res["repairs"])
        report.label_lines += res["lines"]
        report.points_removed += res["points_removed"]
        report.images[r.rel_path] = res
        dice_all.extend((d, r.rel_path, int(c)) for c, d in res["dice"].items())
    if not kept:
        first = report.skipped[0] if report.skipped else {"file": str(plan.root), "problem": "nothing to convert"}
        raise YolohandError(f"no image could be converted (first problem: {first['problem']})")
    return kept, dice_all


def pseudo_only_ids(records: list, images: dict[str, dict]) -> tuple[set[str], list[str]]:
    """(IDs whose every image carries pseudo-labels, warnings for IDs that mix both kinds).

    Pseudo-labels (``yolohand pseudo``) are predictions, not ground truth: an ID made only of them
    trains in every fold and never validates, so a fold's Dice scores a model against labels, not
    against another model. An ID mixing both kinds follows its fold like a labelled one."""
    kinds: dict[str, set[bool]] = {}
    for r in records:
        kinds.setdefault(r.patient_id, set()).add(bool(images.get(r.rel_path, {}).get("pseudo")))
    mixed = [f"{pid}: mixes pseudo-labelled and labelled images; it is validated with its fold"
             for pid, k in sorted(kinds.items()) if k == {True, False}]
    return {pid for pid, k in kinds.items() if k == {True}}, mixed


def write_dataset(plan: ConvertPlan, tmp: Path, kept: list, dice_all: list[tuple[float, str, int]]) -> None:
    """Write the image symlinks, the fold trees, lists and YAMLs, and the report into ``tmp``."""
    report = plan.report
    pseudo, mixed = pseudo_only_ids(kept, report.images)
    report.warnings.extend(mixed)
    labelled = [r.patient_id for r in kept if r.patient_id not in pseudo]
    if pseudo and len(set(labelled)) < report.k:  # too few labelled IDs to validate on: fold them all
        report.warnings.append(f"{plan.root}: {len(set(labelled))} labelled patient ID(s) cannot make {report.k} "
                               "folds, so the pseudo-labelled IDs are folded too: validation scores against "
                               "pseudo-labels (link real training data in with pseudo --with-train)")
        pseudo, labelled = set(), [r.patient_id for r in kept]
    fold_ids = make_folds(labelled, report.k, report.seed)
    report.train_only = sorted(pseudo)
    report.n_train_only_images = sum(r.patient_id in pseudo for r in kept)
    for r in kept:  # master image symlinks: absolute, so renaming the folder keeps them valid
        link = tmp / "images" / r.patient_id / r.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.realpath(r.image_path), link)
    report.fold_images = _write_folds(tmp, plan.out, kept, fold_ids, report.k, report.seed, plan.imgsz)
    report.folds = fold_ids
    report.n_images = len(kept)
    report.n_ids = len({r.patient_id for r in kept})
    if dice_all:
        values = np.array([d for d, _, _ in dice_all])
        report.fidelity = float(values.mean())
        report.fidelity_min = float(values.min())
        report.worst = [{"file": f, "class": CLASSES[c], "dice": d} for d, f, c in sorted(dice_all)[:10] if d < 1.0]
    (tmp / REPORT_NAME).write_text(json.dumps(report.to_json(), indent=1) + "\n")


def convert_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    folds: int = 5,
    seed: int = 0,
    imgsz: int | None = None,
    exclude: Iterable[str] = (),
    drop_known_bad: bool = False,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert ``<root>/train`` into a YOLO-seg dataset at ``out`` (see the module docstring):
    :func:`plan_conversion`, :func:`reuse_previous`, the workers, :func:`collect_results`,
    :func:`write_dataset`, all inside one temporary folder renamed into place at the end.

    Raises YolohandError for the fatal problems listed in the module docstring; nothing is
    written then. Returns the report (also written to ``<out>/convert_report.json``).
    """
    t0 = time.perf_counter()
    plan = plan_conversion(root, out, folds, seed, imgsz, exclude, drop_known_bad, workers, force)
    with atomic_dir(plan.out, force, kind=YOLO) as tmp:
        results, tasks = reuse_previous(plan, tmp)
        for res in _run_tasks(tasks, plan.workers, progress):
            results[res["rel_path"]] = res
        kept, dice_all = collect_results(plan, results)
        plan.report.seconds = time.perf_counter() - t0
        write_dataset(plan, tmp, kept, dice_all)
    plan.report.seconds = time.perf_counter() - t0
    return plan.report


def cache_imgsz(data_yaml: str | os.PathLike) -> int | None:
    """The resize-cache size a fold YAML was written with (None: no cache).

    ultralytics loads ``<image>.npy`` instead of the image whenever it exists, so training at
    another imgsz would silently start from the cached size: train with ``imgsz`` equal to it.
    """
    value = read_fold_yaml(data_yaml).get("cache_imgsz")
    if value in (None, 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise YolohandError(f"{data_yaml}: cache_imgsz: {value!r} is not a size in pixels (re-run `yolohand convert`)")
    return value


def read_fold_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a fold YAML written by convert; YolohandError naming the file when it cannot
    be read, is not UTF-8 YAML (random bytes) or not a mapping."""
    from yolohand.config import read_yaml

    data = read_yaml(Path(path))
    if not isinstance(data, dict):
        raise YolohandError(f"{path}: not a fold YAML (expected a mapping such as path:, train:, val:, names:); "
                            "re-run `yolohand convert`")
    return data


__all__ = [
    "CHANNELS", "LABEL_DECIMALS", "NUDGE_PX", "CONVERT_VERSION", "FIDELITY_BOUND", "KNOWN_BAD",
    "REPORT_NAME", "normalise_points", "label_line", "label_to_pixels", "parse_label_file", "fill_dice",
    "fingerprint", "select_records", "ConvertReport", "default_workers", "ConvertPlan",
    "check_convert_args", "plan_conversion", "reuse_previous", "collect_results", "pseudo_only_ids", "write_dataset",
    "convert_dataset", "cache_imgsz", "read_fold_yaml",
]
