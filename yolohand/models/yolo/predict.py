"""Predict with YOLO-seg checkpoints: soft 29-channel probabilities, one instance per bone, RLE CSV.

The ultralytics-facing half of prediction; the numeric half is :mod:`yolohand.models.yolo.postprocess`.

- Weights: given paths (several = averaged), else the newest ``best.pt`` under the runs folder,
  else the shipped demo checkpoint ``weights/yolohand-synth-n.pt``. A missing file is a
  YolohandError, never a download (ultralytics would fetch any unknown ``*.pt`` name).
- Images are read with :func:`yolohand.data.layout.read_image` (uint8 grayscale) and handed to
  ultralytics as arrays: its loader turns them into what the model was trained on (3-channel
  BGR with equal channels, as ``cv2.imread`` reads a gray PNG, or 1 channel for a
  ``channels: 1`` model). An unreadable image yields no crops (its rows are written empty).
- :class:`SoftSegPredictor` stops ultralytics after NMS: instead of binarised masks it returns
  the raw :class:`~yolohand.models.yolo.postprocess.Instances` (protos, coefficients, input-space boxes,
  confidences, classes and the letterbox geometry) for :func:`postprocess.class_crops`.
- NMS is per class (``agnostic_nms=False``: overlapping bones of different classes both
  survive), ``max_det=300``, low ``conf`` (default :data:`DEFAULT_CONF`): top-1 per class removes
  the duplicates, and a class is rarely missed.
- ``tta``: the horizontally flipped image is predicted too and its maps flipped back; all
  runs (models x flips) are averaged per class (:func:`postprocess.average_crops`); by default a
  run that missed a class is left out of that class's mean (``missing="skip"``: every bone is in
  every image, so a miss is a failure; measured +0.002-0.004 mDice over counting it as 0), and
  so is a run whose top-1 crop barely overlaps the most confident run's (box IoU < ``agree_iou``,
  0.3): it picked a different bone, and averaging the two would erase both.
- Defaults chosen by measurement (benchmarks/quality_predict.py, 16 synthetic 2048 px images,
  yolo11n-seg at imgsz 512): soft masks, top-1 per class, no confidence weighting, conf 0.01 (0.05 gave 0.0014-0.0038 less, more misses),
  raw mask probability 0.8 mapped to 0.5 (:data:`postprocess.DEFAULT_MASK_THRESHOLD`), TTA off
  (it doubles the time for a gain within noise there; turn it on for final submissions).
- Streams image by image (``batch`` images at a time): memory does not grow with the number of
  images.
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

from yolohand.core.classes import NUM_CLASSES
from yolohand.data.layout import ImageRecord, find_images, read_image

#: The shipped demo checkpoint (trained on synthetic data), used when no run has a best.pt.
from yolohand.defaults import DEMO_WEIGHTS  # noqa: E402
from yolohand.errors import YolohandError
from yolohand.models.yolo import postprocess as pp

#: Detection confidence threshold before top-1 per class (low on purpose, see module docstring).
DEFAULT_CONF = 0.01
DEFAULT_IOU = 0.7
DEFAULT_MAX_DET = 300
DEFAULT_MERGE = "top1"
DEFAULT_CONF_WEIGHT = False


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
    raise YolohandError(
        f"{runs_dir}: no best.pt found and the demo checkpoint {DEMO_WEIGHTS} is missing; pass --weights"
    )


# --------------------------------------------------------------------------- ultralytics side
def _predictor_class():
    """SoftSegPredictor, defined lazily so importing this module does not import ultralytics."""
    global _SOFT_PREDICTOR
    if _SOFT_PREDICTOR is not None:
        return _SOFT_PREDICTOR
    from yolohand.models.yolo.offline import setup_offline

    setup_offline()
    from ultralytics.models.yolo.segment import SegmentationPredictor

    class SoftSegPredictor(SegmentationPredictor):
        """Returns :class:`postprocess.Instances` (raw, after NMS) instead of ``Results``."""

        def construct_result(self, pred, img, orig_img, img_path, proto):  # noqa: D102
            # pred: (N, 6 + M) xyxy (input pixels), conf, cls, coefficients; proto: (M, mh, mw).
            pred = pred.float().cpu().numpy()
            return pp.Instances(
                protos=proto.float().cpu().numpy(),
                coef=np.ascontiguousarray(pred[:, 6:]),
                boxes=np.ascontiguousarray(pred[:, :4]),
                conf=np.ascontiguousarray(pred[:, 4]),
                cls=pred[:, 5].astype(np.int64),
                letterbox=pp.Letterbox.from_shapes(orig_img.shape[:2], tuple(img.shape[2:])),
            )

    _SOFT_PREDICTOR = SoftSegPredictor
    return SoftSegPredictor


_SOFT_PREDICTOR = None


@dataclass
class Network:
    """One loaded checkpoint and its prediction settings."""

    path: Path
    model: object  # ultralytics.YOLO
    args: dict

    @property
    def imgsz(self) -> int | list:
        return self.args.get("imgsz") or self.model.overrides.get("imgsz", 640)

    def __call__(self, images: list[np.ndarray]) -> list[pp.Instances]:
        """Raw instances for each image (uint8 (H, W) gray or (H, W, 3) BGR arrays)."""
        if not images:
            return []
        return list(self.model.predict(source=images, predictor=_predictor_class(), stream=False, **self.args))


def load_network(
    path: str | os.PathLike,
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    device: str | None = None,
    batch: int = 1,
    max_det: int = DEFAULT_MAX_DET,
) -> Network:
    """Load a segmentation checkpoint (YolohandError if missing or not a segmentation model).

    ``imgsz`` None: the size the checkpoint was trained at.
    """
    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: weights file not found (nothing is downloaded)")
    _predictor_class()  # sets the offline environment before ultralytics is imported
    from ultralytics import YOLO

    try:
        model = YOLO(str(path))
    except Exception as exc:  # corrupt / not a checkpoint
        raise YolohandError(f"{path}: cannot load as a YOLO checkpoint ({type(exc).__name__}: {exc})") from None
    head = type(model.model.model[-1]).__name__ if hasattr(model.model, "model") else ""
    if "Segment" not in head:
        raise YolohandError(f"{path}: a '{model.task}' model ({head} head), expected a segmentation (-seg) model")
    model.task = "segment"
    names = getattr(model, "names", {}) or {}
    if len(names) != NUM_CLASSES:
        warnings.warn(f"{path}: the model has {len(names)} classes, expected {NUM_CLASSES}", stacklevel=2)
    args = dict(
        conf=conf,
        iou=iou,
        max_det=max_det,
        agnostic_nms=False,  # overlapping bones of different classes must both survive
        retina_masks=False,
        verbose=False,
        save=False,
        batch=max(1, batch),
    )
    if imgsz is not None:
        args["imgsz"] = imgsz
    if device is not None:
        args["device"] = device
    return Network(path, model, args)


# --------------------------------------------------------------------------- per image
@dataclass
class Settings:
    """Postprocessing choices (see :mod:`yolohand.models.yolo.postprocess`)."""

    merge: str = DEFAULT_MERGE
    conf_weight: bool = DEFAULT_CONF_WEIGHT
    tta: bool = False
    mask_mode: str = "soft"
    threshold: float = 0.5
    mask_threshold: float = pp.DEFAULT_MASK_THRESHOLD  # raw mask probability mapped to 0.5
    missing: str = "skip"  # averaging: a run (model or flip) that missed a class is left out ("zero": counts 0)
    agree_iou: float = pp.DEFAULT_AGREE_IOU  # averaging: a run whose crop's box IoU with the most confident is lower picked another bone: a miss


def predict_crops(networks: Sequence[Network], images: list[np.ndarray], settings: Settings) -> list[pp.ClassCrops]:
    """Class crops for each image, averaged over the networks (and the flip when ``tta``)."""
    if not images:
        return []
    batch = list(images)
    if settings.tta:
        batch += [np.ascontiguousarray(im[:, ::-1]) for im in images]
    runs: list[list[pp.ClassCrops]] = [[] for _ in images]
    n = len(images)
    for net in networks:
        for j, inst in enumerate(net(batch)):
            crops = pp.class_crops(inst, settings.merge, settings.conf_weight, settings.mask_mode,
                                   mask_threshold=settings.mask_threshold)
            if j >= n:  # flipped copy: mirror back
                crops = pp.flip_crops(crops, images[j - n].shape[1])
            runs[j % n].append(crops)
    return [pp.average_crops(r, settings.missing, settings.agree_iou) for r in runs]


@dataclass
class Prediction:
    """One image's result: ``crops`` is None when the image could not be read (``error`` says why)."""

    record: ImageRecord
    shape: tuple[int, int] | None
    crops: pp.ClassCrops | None
    error: str | None = None


def predict_probs(
    records: Sequence[ImageRecord],
    networks: Sequence[Network],
    settings: Settings = Settings(),
    batch: int = 1,
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
        for k, crops in zip(ok, predict_crops(networks, images, settings)):
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
            f"output: {self.output}",
        ]
        out += [f"  unreadable: {u}" for u in self.unreadable]
        if self.probs_dir is not None:
            out.append(f"probability maps: {self.probs_dir}")
        if self.mean_dice is not None:
            out.append(f"mean Dice vs ground truth: {self.mean_dice:.4f}")
        return out


def predict_to_submission(
    out: str | os.PathLike,
    source: str | os.PathLike | None = None,
    weights: Sequence[str | os.PathLike] | None = None,
    runs: str | os.PathLike | None = None,
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    device: str | None = None,
    batch: int = 1,
    max_det: int = DEFAULT_MAX_DET,
    settings: Settings = Settings(),
    save_probs: str | os.PathLike | None = None,
    gt: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Predict every image of ``source`` into the submission CSV ``out`` (29 rows per image).

    ``source`` None: ``<root>/test/DCM`` (config default root). ``save_probs``: also write uint8
    (29, H, W) maps, one ``.npz`` per image (:mod:`yolohand.core.probmaps`). ``gt``: score the CSV at
    the end against that dataset root (:func:`yolohand.results.evaluate.evaluate`). Outputs are written
    atomically and refuse to overwrite without ``force``.
    """
    from tqdm.auto import tqdm

    from yolohand.config import default_path
    from yolohand.core.atomic import atomic_dir, check_writable
    from yolohand.core.probmaps import probmap_path, save_probmap
    from yolohand.core.submission import SubmissionWriter

    t0 = time.perf_counter()
    out = Path(out)
    check_writable(out, force)  # fail before loading anything
    if save_probs is not None:
        check_writable(save_probs, force)
    paths, where = resolve_weights(weights, runs)
    if source is None:
        source = default_path("root") / "test" / "DCM"
    records = find_images(source)
    networks = [load_network(p, imgsz, conf, iou, device, batch, max_det) for p in paths]
    summary = PredictSummary(output=out.resolve(), weights=paths, weights_source=where)
    empty = [""] * NUM_CLASSES
    with ExitStack() as stack:
        writer = stack.enter_context(SubmissionWriter(out, force=force))
        probs_tmp = stack.enter_context(atomic_dir(save_probs, force)) if save_probs is not None else None
        bar = tqdm(total=len(records), desc="predict", unit="img", disable=not progress)
        for p in predict_probs(records, networks, settings, batch):
            if p.crops is None:
                warnings.warn(f"skipped (29 empty rows written): {p.error}", stacklevel=2)
                summary.unreadable.append(p.error or str(p.record.image_path))
                writer.write_image(p.record.name, empty)
                summary.empty_rows += NUM_CLASSES
            else:
                rles = pp.crops_to_rles(p.crops, p.shape, settings.threshold)
                writer.write_image(p.record.name, rles)
                n_empty = sum(1 for r in rles if not r)
                summary.empty_rows += n_empty
                summary.detected.append(NUM_CLASSES - n_empty)
                if probs_tmp is not None:
                    save_probmap(probmap_path(probs_tmp, p.record.name), pp.crops_to_probmap(p.crops, p.shape))
            summary.n_images += 1
            bar.update(1)
        bar.close()
    if save_probs is not None:
        summary.probs_dir = Path(save_probs).resolve()
    if gt is not None:
        from yolohand.results.evaluate import evaluate, format_table

        result = evaluate(out, gt, progress=progress)
        summary.eval_table = format_table(result)
        summary.mean_dice = float(result.mean)
    summary.seconds = time.perf_counter() - t0
    return summary
