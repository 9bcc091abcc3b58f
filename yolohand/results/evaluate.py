"""The competition metric for a submission CSV or a folder of probability maps.

Dice per (image, class) = (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4) on full-resolution binary
masks, averaged over images per class, then over the 29 classes (DESIGN.md). Everything runs
on RLE runs: the prediction's runs come from the CSV (or from thresholding a probability map),
the ground truth's from :meth:`yolohand.data.layout.Annotation.to_runs` (each polygon filled
inside its bounding box) - never a dense 29 x H x W array.

Thresholds: a probability map stores ``u8 = round(p * 255)``; a pixel is predicted when
``p >= 0.5``, which is exactly ``u8 >= 128`` (:data:`yolohand.core.probmaps.THRESHOLD_U8`).

Ground truth comes from a dataset root in the competition layout. Each predicted image is
looked up in the train split, then the test split (images with an annotation JSON); ``split``
forces one. ``fold=k`` keeps only fold k's validation images, read from ``<yolo_dir>/folds.json``
written by ``yolohand convert``. A prediction covering a subset of the ground truth is scored on
that subset (``n_images`` of ``n_gt_images``); one naming an image the ground truth lacks is an
error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from yolohand.core import metrics, rle
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.probmaps import THRESHOLD_U8, iter_probmap_folder, load_probmap
from yolohand.data.layout import DatasetIndex, ImageRecord, find_split, image_size, read_annotation
from yolohand.errors import YolohandError

Shape = tuple[int, int]
SPLITS = ("train", "test")


@dataclass
class EvalResult:
    """Dice of one prediction against the ground truth."""

    per_class: np.ndarray          # float64 (29,): mean Dice over the scored images, per class
    mean: float                    # mean of per_class (the competition's mDice)
    n_images: int                  # images scored
    n_gt_images: int               # ground-truth images in scope (split(s) used, or the fold)
    n_pred_images: int = 0         # images in PRED (more than n_images when --fold skips some)
    pred: str = ""
    gt_root: str = ""
    split: str = ""                # "train", "test" or "train+test"
    fold: int | None = None
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float64 (29,)
    problems: list[str] = field(default_factory=list)  # annotation problems met (not fatal)

    def to_dict(self) -> dict:
        """JSON-ready dict: summary, per-class Dice by name, per-image Dice lists."""
        return {
            "pred": self.pred,
            "gt_root": self.gt_root,
            "split": self.split,
            "fold": self.fold,
            "n_images": self.n_images,
            "n_gt_images": self.n_gt_images,
            "n_pred_images": self.n_pred_images,
            "mean_dice": float(self.mean),
            "per_class": {name: float(d) for name, d in zip(CLASSES, self.per_class)},
            "per_image": {name: [float(d) for d in v] for name, v in self.per_image.items()},
            "problems": list(self.problems),
        }


def to_json(result: EvalResult, indent: int | None = 2) -> str:
    """The result as JSON text (see :meth:`EvalResult.to_dict`)."""
    return json.dumps(result.to_dict(), indent=indent)


def format_table(result: EvalResult, digits: int = 4) -> str:
    """Plain aligned text: a header line, one row per class (name, Dice), then the mean."""
    width = max(len(c) for c in CLASSES + ("mean",))
    where = f"{result.split}" + (f", fold {result.fold}" if result.fold is not None else "")
    lines = [
        f"{result.pred} vs {result.gt_root} ({where}): "
        f"{result.n_images} of {result.n_gt_images} ground-truth images scored"
        + (f" ({result.n_pred_images - result.n_images} predicted images outside the fold skipped)"
           if result.n_pred_images > result.n_images else ""),
        f"{'class':<{width}}  Dice",
        f"{'-' * width}  {'-' * (digits + 2)}",
    ]
    lines += [f"{name:<{width}}  {d:.{digits}f}" for name, d in zip(CLASSES, result.per_class)]
    lines += [f"{'-' * width}  {'-' * (digits + 2)}", f"{'mean':<{width}}  {result.mean:.{digits}f}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ground truth


def gt_runs(json_path: str | os.PathLike, shape: Shape) -> tuple[list[np.ndarray], list[str]]:
    """Ground-truth runs of one annotation JSON: 29 Runs (class order), and its problems.

    :meth:`yolohand.data.layout.Annotation.to_runs`: each polygon filled as cv2.fillPoly does on
    the full image, several polygons of one class OR-ed on runs.
    """
    ann = read_annotation(json_path)
    return ann.to_runs(shape), ann.problems


def image_dice(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], size: int | None = None) -> np.ndarray:
    """float64 (C,): the competition Dice of each class of one image, from C Runs per side.

    All classes in one vectorised pass (:func:`yolohand.core.rle.class_intersections`; ``size``
    = H * W, or found from the runs when None); equal to :func:`yolohand.core.metrics.dice_runs`
    class by class. Two empty masks score 1.
    """
    if len(pred) != len(truth):
        raise ValueError(f"{len(pred)} predicted classes but {len(truth)} in the ground truth")
    inter = rle.class_intersections(pred, truth, size)
    return np.asarray(metrics.dice_score(inter, rle.class_areas(pred), rle.class_areas(truth)), dtype=np.float64)


def read_folds(yolo_dir: str | os.PathLike) -> list[list[str]]:
    """Fold lists from ``<yolo_dir>/folds.json`` (``{"folds": [[id, ...], ...], ...}``)."""
    path = Path(yolo_dir) / "folds.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise YolohandError(f"{path}: not found (run `yolohand convert` first, or pass --yolo DIR)") from None
    except (OSError, ValueError) as exc:
        raise YolohandError(f"{path}: not readable JSON ({exc})") from None
    folds = doc.get("folds") if isinstance(doc, dict) else None
    if not isinstance(folds, list) or not all(isinstance(f, list) for f in folds):
        raise YolohandError(f"{path}: expected {{\"folds\": [[ID, ...], ...]}}")
    return [[str(x) for x in f] for f in folds]


def _in_fold(rec: ImageRecord, members: set[str]) -> bool:
    """A fold lists patient IDs; image rel paths, names or stems are accepted as well."""
    return bool({rec.patient_id, rec.rel_path, rec.name, rec.stem} & members)


@dataclass
class _GroundTruth:
    records: dict[str, tuple[str, ImageRecord]]   # key (name or stem) -> (split, record)
    indexes: dict[str, DatasetIndex]
    unannotated: set[str]                          # keys of images present but without JSON


def check_split(split: str | None) -> tuple[str, ...]:
    """The splits to look in: both for None, else the one named; YolohandError for another name."""
    if split is None:
        return SPLITS
    if split not in SPLITS:
        raise YolohandError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    return (split,)


def _load_gt(root: str | os.PathLike, split: str | None, by_stem: bool) -> _GroundTruth:
    splits = check_split(split)
    if not Path(root).expanduser().is_dir():
        raise YolohandError(f"{root}: dataset root not found (--gt)")
    if not any((Path(root).expanduser() / s / "DCM").is_dir() for s in splits):
        raise YolohandError(f"{root}: not a dataset root: no {' or '.join(f'{s}/DCM' for s in splits)} folder "
                            "(expected <root>/<split>/DCM/IDxxx/*.png, as distributed)")
    records: dict[str, tuple[str, ImageRecord]] = {}
    indexes: dict[str, DatasetIndex] = {}
    unannotated: set[str] = set()
    errors = []
    for s in splits:
        try:
            idx = find_split(root, s, require_json=True)
        except YolohandError as exc:
            errors.append(str(exc))
            continue
        indexes[s] = idx
        for rec in idx.records:
            records.setdefault(rec.stem if by_stem else rec.name, (s, rec))
        for p in idx.images_without_json:
            unannotated.add(p.stem if by_stem else p.name)
    if not indexes:
        raise YolohandError(errors[0] if len(set(errors)) == 1 or len(errors) == 1 else "; ".join(errors))
    if not records:
        raise YolohandError(f"{root}: no annotated images in {' or '.join(splits)} (no outputs_json?)")
    return _GroundTruth(records, indexes, unannotated)


def check_gt_root(root: str | os.PathLike, split: str | None = None) -> None:
    """YolohandError unless ``root`` holds annotated images (in ``split``, or in train or test):
    what ``predict --gt`` checks before inference, so a wrong root fails in seconds, not after."""
    _load_gt(root, split, by_stem=False)


# ----------------------------------------------------------------------------- prediction


def _pred_names(pred: Path) -> tuple[list[str], dict[str, Path] | None]:
    """(image names in PRED order, {name: map path} for a probability folder else None)."""
    if pred.is_dir():
        listing = iter_probmap_folder(pred)
        if not listing:
            raise YolohandError(f"{pred}: no .npz probability maps (and not a CSV)")
        return [name for name, _ in listing], dict(listing)
    if not pred.is_file():
        raise YolohandError(f"{pred}: not found (expected a submission CSV or a folder of .npz maps)")
    from yolohand.core.submission import read_image_names

    names = read_image_names(pred)
    if not names:
        raise YolohandError(f"{pred}: no images (only a header)")
    return names, None


def _pred_runs(
    pred: Path, maps: dict[str, Path] | None, wanted: dict[str, Shape], stream_shape: Shape
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(name, 29 Runs) for the names in ``wanted``, in PRED order."""
    if maps is not None:
        for name, path in maps.items():
            if name in wanted:
                u8 = load_probmap(path, shape=wanted[name])
                yield name, [rle.mask_to_runs(u8[c] >= THRESHOLD_U8) for c in range(NUM_CLASSES)]
        return
    from yolohand.core.submission import iter_submission

    for name, runs in iter_submission(pred, stream_shape):
        if name in wanted:
            h, w = wanted[name]
            for c, r in enumerate(runs):
                if len(r) and int(r[-1, 1]) > h * w:
                    raise YolohandError(
                        f"{pred}: image {name!r} class {CLASSES[c]}: RLE goes past the image's {h}x{w} pixels"
                    )
            yield name, runs


def _check_names(pred: Path, names: list[str], maps: dict[str, Path] | None, gt: _GroundTruth,
                 gt_root: str | os.PathLike) -> None:
    """YolohandError for an image PRED lists twice, or one the ground truth lacks."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise YolohandError(f"{pred}: image #{i + 1} {name!r} appears twice")
        seen.add(name)
        key = _key(name, maps)
        if key not in gt.records:
            counts = ", ".join(f"{s}: {len(ix.records)}" for s, ix in gt.indexes.items())
            why = "has no annotation JSON" if key in gt.unannotated else "is not in the ground truth"
            where = f"{maps[name]}" if maps is not None else f"{pred}: image #{i + 1}"
            raise YolohandError(f"{where}: {name!r} {why} of {gt_root} ({counts} annotated images)")


def _key(name: str, maps: dict[str, Path] | None) -> str:
    """Maps are matched to images by stem, CSV rows by file name."""
    return Path(name).stem if maps is not None else name


def fold_records(gt_root: str | os.PathLike, records: Sequence[ImageRecord], fold: int,
                 yolo_dir: str | os.PathLike | None) -> list[ImageRecord]:
    """The ``records`` (of the train split) in fold ``fold``'s validation set (folds.json)."""
    from yolohand.config import default_path

    folds = read_folds(default_path("yolo", yolo_dir))
    if not 0 <= fold < len(folds):
        raise YolohandError(f"--fold {fold}: folds.json has folds 0..{len(folds) - 1}")
    members = set(folds[fold])
    scope = [r for r in records if _in_fold(r, members)]
    if not scope:
        raise YolohandError(f"fold {fold}: none of its IDs are annotated images of {gt_root}/train")
    return scope


def _scope(gt: _GroundTruth, names: list[str], maps: dict[str, Path] | None, gt_root: str | os.PathLike,
           fold: int | None, yolo_dir: str | os.PathLike | None) -> tuple[list[ImageRecord], list[str]]:
    """(ground-truth records in scope, splits used): the splits PRED's images come from, or the fold."""
    if fold is None:
        used = sorted({gt.records[_key(n, maps)][0] for n in names}, key=SPLITS.index)
        return [r for s in used for r in gt.indexes[s].records], used
    if "train" not in gt.indexes:
        raise YolohandError(f"{gt_root}: --fold needs the train split")
    return fold_records(gt_root, gt.indexes["train"].records, fold, yolo_dir), ["train"]


def _score(pred: Path, maps: dict[str, Path] | None, records: dict[str, ImageRecord], sizes: dict[str, Shape],
           progress: bool) -> tuple[metrics.DiceTable, dict[str, np.ndarray], list[str]]:
    """Dice per (image, class) of the images in ``records``, streamed in PRED order."""
    stream_shape = max(set(sizes.values()), key=lambda s: (s[0] * s[1], s))
    table = metrics.DiceTable()
    per_image: dict[str, np.ndarray] = {}
    problems: list[str] = []
    with tqdm(total=len(records), desc="evaluate", unit="img", disable=not progress) as bar:
        for name, runs in _pred_runs(pred, maps, sizes, stream_shape):
            truth, probs = gt_runs(records[name].json_path, sizes[name])
            problems += probs
            dice = np.array([metrics.dice_runs(p, t) for p, t in zip(runs, truth)], dtype=np.float64)
            table.add(name, dice)
            per_image[name] = dice
            bar.update()
    return table, per_image, problems


def evaluate(
    pred: str | os.PathLike,
    gt_root: str | os.PathLike,
    split: str | None = None,
    fold: int | None = None,
    yolo_dir: str | os.PathLike | None = None,
    shape: Shape | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score ``pred`` (submission CSV or probability-map folder) against ``gt_root``'s annotations.

    ``split``: None looks each image up in train then test; "train"/"test" forces one.
    ``fold``: score only fold ``fold``'s validation images (``<yolo_dir>/folds.json``; yolo_dir
    defaults to the configured ``yolo`` path). ``shape``: assume every image is (H, W) instead
    of reading each PNG header. Raises YolohandError when PRED names an image the ground truth
    lacks, or when nothing is left to score.
    """
    pred = Path(pred)
    check_split(split)
    names, maps = _pred_names(pred)
    gt = _load_gt(gt_root, split, by_stem=maps is not None)
    _check_names(pred, names, maps, gt, gt_root)
    scope, used_splits = _scope(gt, names, maps, gt_root, fold, yolo_dir)
    scope_keys = {_key(r.name, maps) for r in scope}
    scored = [n for n in names if _key(n, maps) in scope_keys and gt.records[_key(n, maps)][0] in used_splits]
    if not scored:
        raise YolohandError(f"{pred}: none of its {len(names)} images are in fold {fold}'s validation set")
    records = {n: gt.records[_key(n, maps)][1] for n in scored}
    sizes = {n: tuple(shape) if shape else image_size(records[n].image_path) for n in scored}
    table, per_image, problems = _score(pred, maps, records, sizes, progress)
    return EvalResult(
        per_class=np.asarray(table.per_class(), dtype=np.float64),
        mean=float(table.mean()),
        n_images=len(per_image),
        n_gt_images=len(scope),
        n_pred_images=len(names),
        pred=str(pred),
        gt_root=str(gt_root),
        split="+".join(used_splits),
        fold=fold,
        per_image=per_image,
        problems=problems,
    )


# ----------------------------------------------------------------------------- ground truth as a CSV


@dataclass
class GtSummary:
    """What :func:`write_gt_submission` wrote."""

    out: Path
    split: str
    images: int
    problems: list[str] = field(default_factory=list)
    fold: int | None = None


def write_gt_submission(
    gt_root: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    fold: int | None = None,
    yolo_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> GtSummary:
    """Write the ground truth of ``<gt_root>/<split>`` as a submission CSV at ``out``.

    Images with an annotation JSON, in the competition's row order (sorted by ``IDxxx/name``),
    29 rows each, RLEs of the polygon fills at each image's own size; streamed (one image in
    memory). ``fold``: only fold ``fold``'s validation images (train split, folds.json from
    ``yolohand convert``). Annotation problems (missing class...) are returned, not fatal.
    """
    from yolohand.core.paths import CSV, check_output
    from yolohand.core.submission import write_submission

    (split,) = check_split(split)
    root = Path(gt_root).expanduser()
    if not root.is_dir():
        raise YolohandError(f"{gt_root}: dataset root not found (--root)")
    out_path = check_output(out, CSV, [root], force, flag="OUT")
    records = find_split(root, split, require_json=True).records
    if not records:
        raise YolohandError(f"{root / split / 'outputs_json'}: no annotated images in the {split} split")
    if fold is not None:
        if split != "train":
            raise YolohandError("--fold selects validation images of the train split (use --split train)")
        records = fold_records(root, records, fold, yolo_dir)
    problems: list[str] = []

    def items(bar: tqdm) -> Iterator[tuple[str, list[np.ndarray]]]:
        for rec in records:
            runs, probs = gt_runs(rec.json_path, image_size(rec.image_path))
            problems.extend(probs)
            yield rec.name, runs
            bar.update()

    with tqdm(total=len(records), desc="ground truth", unit="img", disable=not progress) as bar:
        n = write_submission(out_path, items(bar), force=force)
    return GtSummary(out_path, split, n, problems, fold)
