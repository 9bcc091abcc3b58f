"""The ultralytics predictor of yolohand: :class:`SoftSegPredictor`, raw instances instead of ``Results``.

ultralytics' ``SegmentationPredictor`` binarises each detection's mask at input resolution and
wraps everything in ``Results``. :class:`SoftSegPredictor` stops after NMS and hands over the
raw :class:`~yolohand.models.yolo.postprocess.Instances` (prototypes, coefficients, input-space
boxes, confidences, classes, per-class scores and the letterbox geometry) for
:func:`yolohand.models.yolo.postprocess.class_crops`, which computes soft masks at full
resolution.

Overridden ultralytics methods (signatures checked by tests/test_contract.py):

- ``postprocess(preds, img, orig_imgs)``: per-class scores ride through NMS as extra channels;
- ``construct_result(pred, img, orig_img, img_path, proto)``: ``pred`` is (N, 6 + M [+ C])
  ``x1 y1 x2 y2 conf cls`` in input pixels, M mask coefficients [, C class scores]; ``proto``
  (M, mh, mw). Like ultralytics' own it drops the detections whose mask is empty
  (``masks.amax((-2, -1)) > 0``), here at prototype resolution (:func:`has_mask`), so the
  per-class top-1 can never pick an empty mask over a lower-confidence one that has a mask.
  The letterbox geometry is the one ultralytics used (:func:`letterbox_of`).

Imported lazily (by :mod:`yolohand.models.yolo.predict` when a network predicts): this module
calls :func:`yolohand.models.yolo.offline.setup_offline` before importing ultralytics.
"""

from __future__ import annotations

from yolohand.models.yolo.offline import setup_offline

setup_offline()  # must precede the first ultralytics import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationPredictor  # noqa: E402
from ultralytics.utils import ops  # noqa: E402

from yolohand.models.yolo import postprocess as pp  # noqa: E402

__all__ = ["SoftSegPredictor", "has_mask", "letterbox_of"]


def has_mask(proto: torch.Tensor, coef: torch.Tensor, boxes: torch.Tensor, input_shape: tuple[int, int]) -> torch.Tensor:
    """bool (N,): whether each detection's mask has a pixel, as ultralytics' ``process_mask`` makes it.

    ``proto`` (M, mh, mw); ``coef`` (N, M); ``boxes`` (N, 4) xyxy in input pixels; ``input_shape``
    (h, w) of the network input. The mask is ``coef @ proto > 0`` cropped to the box at prototype
    resolution (the validator's own mask); computed in float32 (half models give fp16 tensors).
    """
    masks = ops.process_mask(proto.float(), coef.float(), boxes.float(), tuple(input_shape), upsample=False)
    return masks.amax((-2, -1)) > 0


def letterbox_of(orig_shape: tuple[int, int], input_shape: tuple[int, int], imgsz: tuple[int, int]) -> pp.Letterbox:
    """The geometry ultralytics' ``LetterBox(imgsz, auto=...)`` used to make a (h, w) ``input_shape`` input.

    Same as :meth:`~yolohand.models.yolo.postprocess.Letterbox.from_shapes` when the input is
    ``imgsz`` itself; with ``auto=True`` (the minimum rectangle of a same-shape batch) the scale
    comes from ``imgsz``, not from the smaller padded input: e.g. a 129x255 image at imgsz 64 is
    resized to 32x64 inside a 32x64 input, where the input's own ratio would say 32x63.
    """
    H, W = int(orig_shape[0]), int(orig_shape[1])
    ih, iw = int(input_shape[0]), int(input_shape[1])
    r = min(imgsz[0] / H, imgsz[1] / W)
    new_h, new_w = max(round(H * r), 1), max(round(W * r), 1)
    if new_h > ih or new_w > iw:  # not a letterbox of imgsz (e.g. a caller's own input): the input's ratio
        return pp.Letterbox.from_shapes((H, W), (ih, iw))
    top, left = round((ih - new_h) / 2 - 0.1), round((iw - new_w) / 2 - 0.1)
    return pp.Letterbox((H, W), (ih, iw), (new_h / H, new_w / W), (top, left), (new_h, new_w))


def _letterboxed_to(predictor: object, img: torch.Tensor) -> tuple[int, int]:
    """(h, w) the images were letterboxed to: the predictor's ``imgsz`` (set by ultralytics' setup), else the input's."""
    size = getattr(predictor, "imgsz", None)
    if size is None:
        return int(img.shape[2]), int(img.shape[3])
    return (int(size[0]), int(size[-1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


class SoftSegPredictor(SegmentationPredictor):
    """Returns :class:`postprocess.Instances` (raw, after NMS) instead of ``Results`` (module docstring)."""

    def postprocess(self, preds, img, orig_imgs):  # noqa: D102
        # Per-class scores ride through NMS as extra channels after the mask coefficients
        # (merge="assign" needs each box's whole score vector, not just its argmax).
        if isinstance(preds[0], tuple) and not getattr(self.model, "end2end", False):
            (out, proto), nc = preds[0], len(self.model.names)
            preds = ((torch.cat((out, out[:, 4 : 4 + nc]), 1), proto), *preds[1:])
        return super().postprocess(preds, img, orig_imgs)

    def construct_result(self, pred, img, orig_img, img_path, proto):  # noqa: D102
        # pred: (N, 6 + M [+ C]) xyxy (input pixels), conf, cls, coefficients [, class scores]; proto: (M, mh, mw).
        m = proto.shape[0]
        if pred.shape[0]:
            keep = has_mask(proto, pred[:, 6 : 6 + m], pred[:, :4], tuple(img.shape[2:]))
            if not keep.all():  # ultralytics' construct_result keeps only predictions with masks, too
                pred = pred[keep]
        pred = pred.float().cpu().numpy()
        return pp.Instances(
            protos=proto.float().cpu().numpy(),
            coef=np.ascontiguousarray(pred[:, 6 : 6 + m]),
            scores=np.ascontiguousarray(pred[:, 6 + m :]) if pred.shape[1] > 6 + m else None,
            boxes=np.ascontiguousarray(pred[:, :4]),
            conf=np.ascontiguousarray(pred[:, 4]),
            cls=pred[:, 5].astype(np.int64),
            letterbox=letterbox_of(orig_img.shape[:2], tuple(img.shape[2:]), _letterboxed_to(self, img)),
        )
