"""From YOLO-seg raw instance outputs to 29 class probability maps and 29 RLE strings.

numpy (+ OpenCV for the polygon reference only); no torch, no ultralytics. The network side
(:mod:`yolohand.models.yolo.predict`) hands over one :class:`Instances` per image: the prototype masks, and
per detection (after NMS) its box, confidence, class and mask coefficients.

Soft masks at full resolution, computed in box crops
----------------------------------------------------
For detection ``i`` the mask logit at proto resolution is ``coef[i] @ protos`` (what training
optimises through a sigmoid). We

1. undo the letterbox exactly: an original pixel centre ``y + 0.5`` sits at input coordinate
   ``top + (y + 0.5) * gain_y``, i.e. at proto index ``(top + (y + 0.5) * gain_y) / s - 0.5``
   (``s`` = input/proto stride, 4). Sampling bilinearly at those positions is the same as
   cropping the proto region of the unpadded image and resizing it to the original size with
   ``align_corners=False`` (samples are clamped to the unpadded region, so padding never leaks in);
2. evaluate it only inside the detection box (scaled to original coordinates, pixel columns
   ``ceil(x1) .. ceil(x2) - 1`` as ultralytics' ``crop_mask``): the logits of the few proto
   cells under the box are computed, then upsampled by two small interpolation matrices
   ``Ry @ L @ Rx.T`` (separable bilinear), then the sigmoid is applied;
3. keep one crop per class (:class:`Crop` = ``y0, x0`` + float32 ``(h, w)`` probabilities):
   ``merge="assign"`` (the prediction default) gives every class at most one detection and every
   detection at most one class, jointly, checked against the hand's order
   (:mod:`yolohand.models.yolo.assign`; per-class scores from :attr:`Instances.scores`);
   ``merge="top1"`` keeps the most confident detection of the class (ties: the first in NMS
   order), ``merge="union"`` takes the pixel-wise max over all detections of the class.
   ``conf_weight=True`` multiplies a detection's probabilities by its confidence.
   ``mask_threshold`` shifts the logits so that raw sigmoid ``mask_threshold`` becomes 0.5
   (:data:`DEFAULT_MASK_THRESHOLD`: ultralytics' training masks are fat).

Remaining geometric bias, not corrected: ultralytics truncates polygon coordinates to int at
network-input resolution when it rasterises the training targets (and fills with the polygon's
integer vertices as pixel indices). Following that chain, proto cell j stands for original
coordinate (s*j + s/2) / gain; the pixel-centre mapping above puts it 0.5 original pixel
lower-right of that. (ultralytics' own ``masks.xy`` path is off by about 0.5 / gain pixels.)

Never 29 full-size float maps: a full image only exists when ``--save-probs`` asks for it
(:func:`crops_to_probmap`, uint8). Several models / flips average their crops per class over
the union box of the crops (a model that missed the class counts as 0): :func:`average_crops`.

Thresholding is ``p >= threshold`` (0.5), the rule of :mod:`yolohand.core.probmaps` (``u8 >= 128``),
so the CSV and the saved maps agree pixel for pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolohand import defaults as D
from yolohand.core.classes import NUM_CLASSES
from yolohand.core.crops import ClassCrops, Crop
from yolohand.defaults import MASK_THRESHOLD
from yolohand.models.yolo.assign import Anatomy, assign

MERGES = D.MERGES
#: Raw mask probability mapped to 0.5. ultralytics builds the training targets by ``fillPoly`` of
#: int-truncated polygons at network-input resolution (boundary pixels included), so learned masks
#: are fat by about half an input pixel per side (1.5-2 original pixels at imgsz 512 for 2048
#: images); thresholding the raw sigmoid higher undoes it. Measured on a synthetic validation
#: set (benchmarks/quality_predict.py): 0.5 -> 0.909, 0.7 -> 0.919, 0.8 -> 0.923 mDice.
DEFAULT_MASK_THRESHOLD = MASK_THRESHOLD
MASK_MODES = D.MASK_MODES


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits in the network input (ultralytics ``LetterBox`` rules).

    ``orig_shape`` (H, W); ``input_shape`` (h, w) of the padded network input; ``gain`` (gy, gx)
    input pixels per original pixel; ``pad`` (top, left) in input pixels; ``content`` (h, w) of the
    resized image inside the input.
    """

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    gain: tuple[float, float]
    pad: tuple[int, int]
    content: tuple[int, int]

    @classmethod
    def from_shapes(cls, orig_shape: Sequence[int], input_shape: Sequence[int]) -> Letterbox:
        """Geometry as ultralytics computes it (``ops.scale_boxes``): centred, each side rounded."""
        H, W = int(orig_shape[0]), int(orig_shape[1])
        ih, iw = int(input_shape[0]), int(input_shape[1])
        g = min(ih / H, iw / W)
        new_h, new_w = max(round(H * g), 1), max(round(W * g), 1)
        top, left = round((ih - new_h) / 2 - 0.1), round((iw - new_w) / 2 - 0.1)
        return cls((H, W), (ih, iw), (new_h / H, new_w / W), (top, left), (new_h, new_w))

    def boxes_to_orig(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in input pixels (N, 4) -> float64 (N, 4) in original pixels, clipped."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.pad[1]) / self.gain[1]
        b[:, [1, 3]] = (b[:, [1, 3]] - self.pad[0]) / self.gain[0]
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, self.orig_shape[1])
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, self.orig_shape[0])
        return b


@dataclass
class Instances:
    """Raw network output for one image after NMS (all numpy, on the CPU).

    protos: float32 (M, mh, mw) prototype masks; coef: float32 (N, M) mask coefficients;
    boxes: float32 (N, 4) xyxy in network-input pixels; conf: float32 (N,); cls: int64 (N,);
    letterbox: the input geometry; scores: optional float32 (N, C) per-class scores of each box
    (sigmoid outputs; ``conf`` is the ``cls`` entry), used by ``merge="assign"``.
    """

    protos: np.ndarray
    coef: np.ndarray
    boxes: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    letterbox: Letterbox
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.conf.shape[0])




# --------------------------------------------------------------------------- geometry
def _box_pixels(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixel indices i with lo <= i < hi, clipped to [0, size): the range [a, b) (ultralytics' ``crop_mask`` rule)."""
    a = min(max(math.ceil(lo), 0), size)
    b = min(max(math.ceil(hi), 0), size)
    return a, max(a, b)


def _interp_matrix(start: int, n: int, gain: float, pad: float, stride: float, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Bilinear weights for original pixels ``start .. start+n-1`` along one axis.

    Returns (R float32 (n, k), first proto index) such that ``R @ v[first:first+k]`` samples
    ``v`` at proto positions ``(pad + (o + 0.5) * gain) / stride - 0.5`` clamped to [lo, hi]
    (the proto cells of the unpadded image). Same weights as ``F.interpolate(..., 'bilinear',
    align_corners=False)`` of the unpadded proto region.
    """
    o = np.arange(start, start + n, dtype=np.float64)
    src = np.clip((pad + (o + 0.5) * gain) / stride - 0.5, lo, hi)
    i0 = np.floor(src).astype(np.int64)
    w1 = (src - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, hi)
    first = int(i0.min()) if n else lo
    k = int(i1.max()) - first + 1 if n else 1
    R = np.zeros((n, k), dtype=np.float32)
    rows = np.arange(n)
    np.add.at(R, (rows, i0 - first), 1.0 - w1)
    np.add.at(R, (rows, i1 - first), w1)
    return R, first


def _proto_limits(lb: Letterbox, stride_y: float, stride_x: float, mh: int, mw: int) -> tuple[int, int, int, int]:
    """Proto index range [ylo, yhi] x [xlo, xhi] (inclusive) whose cells lie in the unpadded image."""
    top, left = lb.pad
    ch, cw = lb.content
    ylo = min(max(math.ceil(top / stride_y - 0.5), 0), mh - 1)
    yhi = max(min(math.floor((top + ch) / stride_y - 0.5), mh - 1), ylo)
    xlo = min(max(math.ceil(left / stride_x - 0.5), 0), mw - 1)
    xhi = max(min(math.floor((left + cw) / stride_x - 0.5), mw - 1), xlo)
    return ylo, yhi, xlo, xhi


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """In-place float32 sigmoid, stable for large |x|."""
    np.negative(x, out=x)
    np.clip(x, -80.0, 80.0, out=x)
    np.exp(x, out=x)
    x += 1.0
    np.reciprocal(x, out=x)
    return x


def logit(p: float) -> float:
    """log(p / (1 - p)) for p in (0, 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"mask threshold must lie in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


def instance_crop(
    inst: Instances, i: int, box_orig: np.ndarray | None = None, mask_threshold: float = 0.5
) -> Crop | None:
    """Soft probability crop of detection ``i`` at original resolution inside its box.

    ``mask_threshold``: the raw mask probability that becomes 0.5 (logits shifted by
    ``-logit(mask_threshold)`` before the sigmoid; see :data:`DEFAULT_MASK_THRESHOLD`).
    Returns None when the box is empty after clipping. ``box_orig`` (4,) may pass the box
    already scaled to original pixels.
    """
    lb = inst.letterbox
    H, W = lb.orig_shape
    if box_orig is None:
        box_orig = lb.boxes_to_orig(inst.boxes[i : i + 1])[0]
    x0, x1 = _box_pixels(box_orig[0], box_orig[2], W)
    y0, y1 = _box_pixels(box_orig[1], box_orig[3], H)
    if x1 <= x0 or y1 <= y0:
        return None
    m, mh, mw = inst.protos.shape
    sy, sx = lb.input_shape[0] / mh, lb.input_shape[1] / mw
    ylo, yhi, xlo, xhi = _proto_limits(lb, sy, sx, mh, mw)
    Ry, py = _interp_matrix(y0, y1 - y0, lb.gain[0], lb.pad[0], sy, ylo, yhi)
    Rx, px = _interp_matrix(x0, x1 - x0, lb.gain[1], lb.pad[1], sx, xlo, xhi)
    window = inst.protos[:, py : py + Ry.shape[1], px : px + Rx.shape[1]]  # (M, ky, kx)
    logits = (inst.coef[i].astype(np.float32) @ window.reshape(m, -1)).reshape(Ry.shape[1], Rx.shape[1])
    full = Ry @ logits @ Rx.T  # (h, w) logits at original resolution
    if mask_threshold != 0.5:
        full -= np.float32(logit(mask_threshold))
    return Crop(y0, x0, _sigmoid_(full.astype(np.float32, copy=False)))


def polygon_crop(inst: Instances, i: int) -> Crop | None:
    """The common way, for comparison only: binary mask at input resolution (proto logits
    upsampled to the padded input, > 0, cropped to the input-space box), its largest external
    contour scaled to original coordinates, refilled with ``cv2.fillPoly``. Probabilities 0/1."""
    import cv2

    lb = inst.letterbox
    H, W = lb.orig_shape
    ih, iw = lb.input_shape
    m, mh, mw = inst.protos.shape
    bx0, bx1 = _box_pixels(inst.boxes[i, 0], inst.boxes[i, 2], iw)
    by0, by1 = _box_pixels(inst.boxes[i, 1], inst.boxes[i, 3], ih)
    if bx1 <= bx0 or by1 <= by0:
        return None
    # ultralytics: F.interpolate(proto logits, (ih, iw), bilinear, align_corners=False) > 0, then crop.
    sy, sx = ih / mh, iw / mw
    Ry, py = _interp_matrix(by0, by1 - by0, 1.0, 0.0, sy, 0, mh - 1)
    Rx, px = _interp_matrix(bx0, bx1 - bx0, 1.0, 0.0, sx, 0, mw - 1)
    window = inst.protos[:, py : py + Ry.shape[1], px : px + Rx.shape[1]]
    logits = (inst.coef[i].astype(np.float32) @ window.reshape(m, -1)).reshape(Ry.shape[1], Rx.shape[1])
    binary = np.ascontiguousarray((Ry @ logits @ Rx.T) > 0).astype(np.uint8)
    contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return None
    c = contours[int(np.argmax([len(x) for x in contours]))].reshape(-1, 2).astype(np.float64)
    c[:, 0] = ((c[:, 0] + bx0) - lb.pad[1]) / lb.gain[1]  # ops.scale_coords
    c[:, 1] = ((c[:, 1] + by0) - lb.pad[0]) / lb.gain[0]
    c[:, 0] = c[:, 0].clip(0, W)
    c[:, 1] = c[:, 1].clip(0, H)
    pts = c.astype(np.int32)  # fillPoly of truncated coordinates, as a CSV from masks.xy would be
    cx0, cy0 = int(pts[:, 0].min()), int(pts[:, 1].min())
    cx1, cy1 = min(int(pts[:, 0].max()) + 1, W), min(int(pts[:, 1].max()) + 1, H)
    out = np.zeros((max(cy1 - cy0, 1), max(cx1 - cx0, 1)), dtype=np.uint8)
    cv2.fillPoly(out, [pts - [cx0, cy0]], 1)
    return Crop(cy0, cx0, out.astype(np.float32))


# --------------------------------------------------------------------------- per-class selection
def _max_into(a: Crop | None, b: Crop) -> Crop:
    """Pixel-wise max of two crops over their union box (outside a crop counts as 0)."""
    if a is None:
        return b
    y0, x0 = min(a.y0, b.y0), min(a.x0, b.x0)
    y1, x1 = max(a.y1, b.y1), max(a.x1, b.x1)
    if (y0, x0, y1, x1) == (a.y0, a.x0, a.y1, a.x1):
        out = a.probs
    else:
        out = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        out[a.y0 - y0 : a.y1 - y0, a.x0 - x0 : a.x1 - x0] = a.probs
    view = out[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0]
    np.maximum(view, b.probs, out=view)
    return Crop(y0, x0, out, max(a.conf, b.conf))


def class_crops(
    inst: Instances,
    merge: str = "top1",
    conf_weight: bool = False,
    mask_mode: str = "soft",
    num_classes: int = NUM_CLASSES,
    mask_threshold: float = 0.5,
    anatomy: Anatomy | None = None,
) -> ClassCrops:
    """One crop per class (None where the class has no detection).

    merge: "top1" keeps the detection with the highest confidence of each class (only that
    one's mask is computed); "union" the pixel-wise max over all detections of the class;
    "assign" one detection per class and one class per detection, jointly, with the hand's
    order (:func:`yolohand.models.yolo.assign.assign`; per-class scores from ``inst.scores``,
    else each detection's confidence for its own class).
    conf_weight: multiply each detection's probabilities by its confidence.
    mask_mode: "soft" (default) or "polygon" (the common binary-polygon way, for comparison).
    mask_threshold: raw mask probability that becomes 0.5 (soft mode only); the library default
    0.5 is the plain sigmoid, callers pass :data:`DEFAULT_MASK_THRESHOLD`.
    anatomy: the weight of the hand's order for "assign" (None: :class:`assign.Anatomy`'s default).
    """
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
    out: ClassCrops = [None] * num_classes
    n = len(inst)
    if n == 0:
        return out
    cls = np.asarray(inst.cls).astype(np.int64).reshape(-1)
    conf = np.asarray(inst.conf, dtype=np.float32).reshape(-1)
    boxes_orig = inst.letterbox.boxes_to_orig(inst.boxes)
    if merge == "assign":
        return _assigned_crops(inst, boxes_orig, conf_weight, mask_mode, num_classes, mask_threshold, anatomy)
    # Stable sort by descending confidence: top1 = first of each class in this order.
    order = np.argsort(-conf, kind="stable")
    seen: set[int] = set()
    for i in order:
        c = int(cls[i])
        if not 0 <= c < num_classes or (merge == "top1" and c in seen):
            continue
        if mask_mode == "soft":
            crop = instance_crop(inst, int(i), boxes_orig[i], mask_threshold)
        else:
            crop = polygon_crop(inst, int(i))
        if crop is None:
            continue
        crop.conf = float(conf[i])
        if conf_weight:
            crop.probs *= conf[i]
        seen.add(c)
        out[c] = crop if merge == "top1" else _max_into(out[c], crop)
    return out


def class_scores(inst: Instances, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """float32 (N, num_classes): ``inst.scores`` if the network kept them, else one-hot confidences."""
    if inst.scores is not None and inst.scores.shape == (len(inst), num_classes):
        return np.asarray(inst.scores, dtype=np.float32)
    out = np.zeros((len(inst), num_classes), dtype=np.float32)
    cls = np.asarray(inst.cls).astype(np.int64).reshape(-1)
    ok = (cls >= 0) & (cls < num_classes)
    out[np.flatnonzero(ok), cls[ok]] = np.asarray(inst.conf, dtype=np.float32).reshape(-1)[ok]
    return out


def _assigned_crops(
    inst: Instances, boxes_orig: np.ndarray, conf_weight: bool, mask_mode: str, num_classes: int, mask_threshold: float,
    anatomy: Anatomy | None,
) -> ClassCrops:
    """``merge="assign"``: the crop of the detection :func:`assign.assign` gives each class."""
    det, score = assign(boxes_orig, class_scores(inst, num_classes), anatomy if anatomy is not None else Anatomy())
    out: ClassCrops = [None] * num_classes
    for c in np.flatnonzero(det >= 0):
        i = int(det[c])
        crop = instance_crop(inst, i, boxes_orig[i], mask_threshold) if mask_mode == "soft" else polygon_crop(inst, i)
        if crop is None:
            continue
        crop.conf = float(score[c])
        if conf_weight:
            crop.probs *= np.float32(score[c])
        out[c] = crop
    return out
