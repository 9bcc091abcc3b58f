"""The competition data model: finding images and annotations, reading them, ground-truth masks.

Layout (DESIGN.md)::

    <root>/<split>/DCM/IDxxx/image<ts>.png
    <root>/<split>/outputs_json/IDxxx/image<ts>.json     (same relative path, .json)

Images and annotations are paired by relative path, never by the JSON's ``filename``. Image
sizes come from the image file, never from the JSON ``metadata``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from yolohand.core import rle
from yolohand.core.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from yolohand.core.rle import Runs
from yolohand.errors import YolohandError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- finding files


@dataclass(frozen=True)
class ImageRecord:
    """One image of a split, with its annotation file when there is one."""

    rel_path: str  # "ID001/image1661130828152_R.png" (posix, relative to <split>/DCM)
    image_path: Path  # absolute path of the image
    json_path: Path | None  # absolute path of the annotation JSON, None when absent
    patient_id: str  # "ID001" (the folder holding the image)
    name: str  # bare file name "image1661130828152_R.png" (the CSV's image_name)
    stem: str  # "image1661130828152_R"


@dataclass
class DatasetIndex:
    """The images of one split, paired with their annotations, plus what did not pair."""

    root: Path
    split: str
    records: list[ImageRecord]  # sorted by rel_path; for train only those with a JSON
    images_without_json: list[Path] = field(default_factory=list)
    jsons_without_image: list[Path] = field(default_factory=list)


def _record(image_path: Path, rel_path: str, json_path: Path | None) -> ImageRecord:
    return ImageRecord(
        rel_path=rel_path,
        image_path=image_path,
        json_path=json_path,
        patient_id=image_path.parent.name,
        name=image_path.name,
        stem=image_path.stem,
    )


def _walk(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map posix relative path -> absolute path of files under ``folder`` with the suffixes.

    os.walk with followlinks (datasets are often symlinked in); hidden files (``._x.png``
    macOS litter, our own temp files) are skipped.
    """
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            path = Path(dirpath, name)
            found[path.relative_to(folder).as_posix()] = path
    return found


def find_split(root: str | os.PathLike, split: str = "train", require_json: bool | None = None) -> DatasetIndex:
    """Index ``<root>/<split>``: images under DCM paired with JSONs under outputs_json.

    ``require_json`` (default True for "train", False otherwise) keeps only images that have a
    JSON; unpaired images and JSONs are listed in the index, never silently dropped.
    Raises YolohandError when the root or its DCM folder is missing or holds no images.
    """
    root = Path(root).expanduser().resolve()
    if require_json is None:
        require_json = split == "train"
    if not root.is_dir():
        raise YolohandError(f"{root}: dataset root not found")
    dcm = root / split / "DCM"
    if not dcm.is_dir():
        raise YolohandError(f"{dcm}: folder not found (expected <root>/{split}/DCM/IDxxx/*.png)")
    images = _walk(dcm, IMAGE_SUFFIXES)
    if not images:
        raise YolohandError(f"{dcm}: no images found")
    ann_dir = root / split / "outputs_json"
    jsons = _walk(ann_dir, (".json",)) if ann_dir.is_dir() else {}
    # Pair by relative path without suffix: ID001/image1.png <-> ID001/image1.json.
    json_by_key = {rel[: -len(".json")]: path for rel, path in jsons.items()}
    records: list[ImageRecord] = []
    without_json: list[Path] = []
    used: set[str] = set()
    for rel in sorted(images):
        key = rel.rsplit(".", 1)[0]
        json_path = json_by_key.get(key)
        if json_path is None:
            without_json.append(images[rel])
            if require_json:
                continue
        else:
            used.add(key)
        records.append(_record(images[rel], rel, json_path))
    without_image = [json_by_key[k] for k in sorted(json_by_key) if k not in used]
    return DatasetIndex(root, split, records, without_json, without_image)


def find_images(source: str | os.PathLike) -> list[ImageRecord]:
    """Images from a folder (recursive), a single image, or a ``.txt`` list of paths.

    rel_path is relative to the folder; for a single image or a list entry it is
    ``<parent folder>/<name>`` (the IDxxx/name.png convention). Relative paths in a list are
    resolved against the list's folder. Sorted by rel_path; json_path is None.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        found = _walk(source.resolve(), IMAGE_SUFFIXES)
        if not found:
            raise YolohandError(f"{source}: no images (*.png, *.jpg) found")
        return [_record(found[rel], rel, None) for rel in sorted(found)]
    if not source.exists():
        raise YolohandError(f"{source}: not found")
    if source.suffix.lower() == ".txt":
        paths: list[Path] = []
        for lineno, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line).expanduser()
            if not path.is_absolute():
                path = source.parent / path
            if not path.is_file():
                raise YolohandError(f"{source}:{lineno}: {line}: image not found")
            paths.append(path.resolve())
        if not paths:
            raise YolohandError(f"{source}: the list holds no image paths")
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        paths = [source.resolve()]
    else:
        raise YolohandError(f"{source}: not a folder, an image (.png/.jpg) or a .txt list of images")
    records = [_record(p, f"{p.parent.name}/{p.name}", None) for p in paths]
    return sorted(records, key=lambda r: r.rel_path)


# --------------------------------------------------------------------------- annotations


@dataclass
class Polygon:
    """One annotated bone outline."""

    annotation_id: str
    label: str
    class_index: int
    points: np.ndarray  # int32 (N, 2), x, y in image pixels


@dataclass
class Annotation:
    """The valid polygons of one JSON file and every problem found in it."""

    path: Path
    polygons: list[Polygon]
    problems: list[str]  # each "<path>: annotation <id>: <what>" (or "<path>: class <name>: <what>")
    pseudo: bool = False  # written by `yolohand pseudo` (top-level attributes.pseudo_label): not ground truth

    def by_class(self) -> dict[int, list[Polygon]]:
        """Class index -> its polygons (usually exactly one), for classes that have any."""
        out: dict[int, list[Polygon]] = {}
        for poly in self.polygons:
            out.setdefault(poly.class_index, []).append(poly)
        return out

    def to_runs(self, shape: tuple[int, int]) -> list[Runs]:
        """The ground truth as 29 canonical Runs (class order) of an (H, W) image.

        The one path from polygons to masks: each polygon is filled exactly as
        ``cv2.fillPoly(zeros, [points int32], 1)`` on the full image would (inside its bounding
        box, :func:`polygon_crop`), polygons of one class are OR-ed, absent classes are empty.
        """
        h, w = int(shape[0]), int(shape[1])
        per_class: list[list[Runs]] = [[] for _ in range(NUM_CLASSES)]
        for poly in self.polygons:
            crop, y0, x0 = polygon_crop(poly.points, h, w)
            if crop.size:
                per_class[poly.class_index].append(rle.crop_to_runs(crop, y0, x0, (h, w)))
        return [rle.union(runs) for runs in per_class]


def _points_array(raw: object) -> tuple[np.ndarray | None, str | None]:
    """Validate raw JSON points -> (int32 (N, 2), None) or (None, problem)."""
    if not isinstance(raw, list):
        return None, f"points is {type(raw).__name__}, expected a list of [x, y]"
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError, RecursionError):  # ragged or too deep nesting
        return None, "non-numeric or malformed points (expected [[x, y], ...])"
    if arr.size == 0:
        return None, "fewer than 3 points (0)"
    # Numbers only: bool, str and None (object dtype) are rejected, numeric strings included.
    if arr.dtype.kind not in "iuf":
        return None, "non-numeric points (expected [[x, y], ...] numbers)"
    if arr.ndim != 2 or arr.shape[1] != 2:
        return None, f"malformed points, shape {arr.shape} (expected [[x, y], ...])"
    if len(arr) < 3:
        return None, f"fewer than 3 points ({len(arr)})"
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            return None, "non-finite points (NaN or infinity)"
        arr = np.rint(arr)
    if np.abs(arr).max() > 2**30:
        return None, "point coordinates out of range"
    return arr.astype(np.int32, copy=False), None


def read_json(path: str | os.PathLike) -> object:
    """The one JSON reader of annotation files: the parsed document, or YolohandError naming the file.

    Every way a file can fail to be JSON is the one ``not valid JSON`` line: a syntax error (with
    its line), bytes that are not UTF-8, and nesting too deep for the parser (``[[[[...]]]]`` a few
    thousand levels down raises RecursionError inside ``json``).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except OSError as exc:
        raise YolohandError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise YolohandError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise YolohandError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise YolohandError(f"{path}: not valid JSON (nested too deeply to read)") from None
    except ValueError as exc:  # e.g. an integer literal of more digits than Python converts
        raise YolohandError(f"{path}: not valid JSON ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def read_annotation(path: str | os.PathLike) -> Annotation:
    """Read one annotation JSON; validate its structure.

    Raises YolohandError when the file cannot be read, is not JSON, or has no ``annotations``
    list. Everything else is reported in ``.problems`` (one message per problem, naming the
    file and the annotation id): unknown or missing label, class missing or present twice,
    fewer than 3 points, non-numeric / malformed points. Annotations with bad label or points
    are left out of ``.polygons``; duplicates are kept (gt_masks OR-s them).
    """
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise YolohandError(f"{path}: no 'annotations' list at the top level")

    polygons: list[Polygon] = []
    problems: list[str] = []
    first_id: dict[int, str] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            problems.append(f"{path}: annotation #{i}: not an object")
            continue
        ann_id = str(ann["id"]) if "id" in ann else f"#{i}"
        where = f"{path}: annotation {ann_id}"
        label = ann.get("label")
        if not isinstance(label, str) or label not in CLASS_INDEX:
            what = "no label" if label is None else f"unknown label {label!r}"
            problems.append(f"{where}: {what}")
            continue
        points, problem = _points_array(ann.get("points"))
        if problem is not None:
            problems.append(f"{where}: {label}: {problem}")
            continue
        cls = CLASS_INDEX[label]
        if cls in first_id:
            problems.append(f"{where}: class {label} present twice (also annotation {first_id[cls]})")
        else:
            first_id[cls] = ann_id
        polygons.append(Polygon(ann_id, label, cls, points))
    for cls in range(NUM_CLASSES):
        if cls not in first_id:
            problems.append(f"{path}: class {CLASSES[cls]}: missing (no valid annotation)")
    attributes = doc.get("attributes")
    pseudo = isinstance(attributes, dict) and attributes.get("pseudo_label") is True
    return Annotation(path, polygons, problems, pseudo)


# --------------------------------------------------------------------------- images


def unreadable(path: Path, exc: OSError) -> YolohandError:
    """The error for a file that cannot be opened; a dangling symlink is named as one."""
    if path.is_symlink() and not path.exists():
        return YolohandError(f"{path}: broken symlink (points to {os.readlink(path)}, which does not exist)")
    return YolohandError(f"{path}: cannot read ({exc.strerror or exc})")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image. PNG: from the IHDR header (24 bytes read); others: decoded with cv2."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise unreadable(path, exc) from None
    if len(head) == 24 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    return tuple(read_image(path).shape[:2])  # type: ignore[return-value]


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C libraries write to file descriptor 2 inside the block.

    libpng prints ``libpng error: ...`` / ``libpng warning: ...`` itself when OpenCV decodes a
    broken PNG; yolohand reports such a file once, in its own words, so that noise is dropped.
    Python's own ``sys.stderr`` is flushed first and is not written to inside the block.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreter)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image as uint8 (H, W) grayscale.

    3/4-channel -> gray (cv2 BGR weights; equal channels stay exact); 16-bit -> high byte.
    Raises YolohandError naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise unreadable(path, exc) from None
    with quiet_native_stderr():
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise YolohandError(f"{path}: not a readable image (truncated or corrupt)")
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise YolohandError(f"{path}: unsupported number of channels ({channels})")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise YolohandError(f"{path}: unsupported pixel type {img.dtype}")
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------- masks


def polygon_crop(points: np.ndarray, h: int, w: int) -> tuple[np.ndarray, int, int]:
    """Fill a polygon into its bounding box clipped to the image.

    Returns (crop bool (ch, cw), y0, x0): the crop placed at (y0, x0) of an (h, w) image equals
    ``fill_polygon(points, h, w)``; ch or cw is 0 when the polygon lies outside the image.
    Working in the bounding box keeps memory and time proportional to the bone, not the image.
    """
    pts = np.asarray(points, dtype=np.int32).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 0), bool), 0, 0
    x_min, y_min = pts.min(axis=0).tolist()
    x_max, y_max = pts.max(axis=0).tolist()
    x0, y0 = max(x_min, 0), max(y_min, 0)
    x1, y1 = min(x_max + 1, w), min(y_max + 1, h)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((0, 0), bool), 0, 0
    if x_min >= 0 and y_min >= 0 and x_max < w and y_max < h:
        # Inside the image: cv2's fill is translation invariant for integer points.
        crop = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(crop, [(pts - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)], 1)
    else:
        # Crossing the border: let cv2 do its own clipping on a full-size canvas (rare).
        full = np.zeros((h, w), np.uint8)
        cv2.fillPoly(full, [pts.reshape(-1, 1, 2)], 1)
        crop = full[y0:y1, x0:x1]
    return crop.view(bool), y0, x0


def fill_polygon(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool (H, W) mask of a polygon: identical to ``cv2.fillPoly(zeros, [points int32], 1)``."""
    mask = np.zeros((h, w), bool)
    crop, y0, x0 = polygon_crop(points, h, w)
    mask[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return mask


def gt_masks(annotation: Annotation, h: int, w: int) -> np.ndarray:
    """bool (29, H, W) ground truth: each class's polygons filled and OR-ed together."""
    masks = np.zeros((NUM_CLASSES, h, w), bool)
    for poly in annotation.polygons:
        crop, y0, x0 = polygon_crop(poly.points, h, w)
        masks[poly.class_index, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] |= crop
    return masks


__all__ = [
    "Annotation",
    "DatasetIndex",
    "ImageRecord",
    "Polygon",
    "fill_polygon",
    "find_images",
    "find_split",
    "gt_masks",
    "image_size",
    "polygon_crop",
    "read_annotation",
    "read_json",
    "quiet_native_stderr",
    "read_image",
    "IMAGE_SUFFIXES",
    "unreadable",
]
