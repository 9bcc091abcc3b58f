"""Postprocessing of one 2048x2048 image: network raw output -> 29 RLE strings.

Ours (yolohand.models.yolo.postprocess): top-1 detection per class, soft mask computed only inside its box
(proto cells under the box, separable bilinear upsampling to the original-resolution crop,
sigmoid), thresholded crop -> runs -> RLE.

The common way (what public YOLO-seg notebooks did): ultralytics ``process_mask`` (all
detections, full proto logits upsampled to the network input, binarised, cropped to the box),
``masks.xy``-style polygon of the largest contour scaled to the original size, ``cv2.fillPoly``
into full-size class masks (detections of one class OR-ed), straightforward full-image RLE.

Raw outputs are built from a synthetic hand (yolohand.data.synth) at 2048: prototype k is the bone
k mask seen at proto resolution (as logits), 3 noise prototypes, coefficients ~one-hot plus
noise, boxes = bone boxes, plus lower-confidence duplicate detections, at imgsz 1024
(protos 32 x 256 x 256). Run: ``.venv/bin/python benchmarks/bench_postprocess.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolohand.core import crops as cr
from yolohand.core.classes import CLASSES, NUM_CLASSES  # noqa: E402
from yolohand.models.yolo import postprocess as pp  # noqa: E402

SIZE, IMGSZ, N_DUP, REPEATS = 2048, 1024, 30, 5


def raw_output(seed: int = 0) -> tuple[pp.Instances, dict[str, np.ndarray]]:
    """Realistic raw outputs for one synthetic 2048 image (protos at imgsz/4)."""
    from yolohand.data.synth import ImageJob, synth_hand

    job = ImageJob("", "", "ID001", "image.png", SIZE, (seed, 1), (seed,), False, False)
    _, polygons = synth_hand(job)
    rng = np.random.default_rng(seed)
    m = IMGSZ // 4
    protos = np.empty((32, m, m), np.float32)
    boxes, cls, conf = [], [], []
    for k, name in enumerate(CLASSES):
        full = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(full, [polygons[name]], 1)
        small = cv2.resize(full.astype(np.float32), (m, m), interpolation=cv2.INTER_AREA)
        protos[k] = cv2.GaussianBlur((small - 0.5) * 12.0, (3, 3), 0)
        x0, y0 = polygons[name].min(0)
        x1, y1 = polygons[name].max(0) + 1
        boxes.append(np.array([x0, y0, x1, y1]) * IMGSZ / SIZE + rng.normal(0, 1.5, 4))
        cls.append(k)
        conf.append(rng.uniform(0.6, 0.95))
    protos[29:] = rng.normal(0, 1, (3, m, m)).astype(np.float32)
    coef = np.zeros((NUM_CLASSES, 32), np.float32)
    coef[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = 1.0
    coef += rng.normal(0, 0.05, coef.shape).astype(np.float32)
    for _ in range(N_DUP):  # duplicates: shifted box, lower confidence
        k = int(rng.integers(0, NUM_CLASSES))
        boxes.append(boxes[k] + rng.normal(0, 4, 4))
        cls.append(k)
        conf.append(rng.uniform(0.05, 0.5))
        coef = np.vstack([coef, coef[k] + rng.normal(0, 0.05, 32).astype(np.float32)])
    inst = pp.Instances(
        protos=protos,
        coef=coef,
        boxes=np.clip(np.array(boxes, np.float32), 0, IMGSZ),
        conf=np.array(conf, np.float32),
        cls=np.array(cls, np.int64),
        letterbox=pp.Letterbox.from_shapes((SIZE, SIZE), (IMGSZ, IMGSZ)),
    )
    return inst, polygons


def ours(inst: pp.Instances) -> list[str]:
    crops = pp.class_crops(inst, merge="top1")
    return cr.crops_to_rles(crops, inst.letterbox.orig_shape, 0.5)


def naive_rle(mask: np.ndarray) -> str:
    """The usual Kaggle snippet."""
    pixels = mask.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def common_way(inst: pp.Instances) -> list[str]:
    import torch
    from ultralytics.utils import ops

    H, W = inst.letterbox.orig_shape
    protos = torch.from_numpy(inst.protos)
    masks = ops.process_mask(protos, torch.from_numpy(inst.coef), torch.from_numpy(inst.boxes), inst.letterbox.input_shape, upsample=True)
    segments = [
        ops.scale_coords(masks.shape[1:], x, (H, W), normalize=False)
        for x in ops.masks2segments(masks, strategy="largest")
    ]
    class_masks = np.zeros((NUM_CLASSES, H, W), np.uint8)
    for seg, c in zip(segments, inst.cls):
        if len(seg):
            cv2.fillPoly(class_masks[int(c)], [seg.astype(np.int32)], 1)
    return [naive_rle(m) for m in class_masks]


def _time(fn, *args) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import torch

    torch.set_num_threads(1)  # both sides single-threaded numpy/torch-CPU: a fair, repeatable comparison
    inst, _ = raw_output()
    ours(inst), common_way(inst)  # warm up (imports, caches)
    t_ours, t_common = _time(ours, inst), _time(common_way, inst)
    from yolohand.core.rle import decode

    a, b = ours(inst), common_way(inst)
    dice = []
    for ra, rb in zip(a, b):
        ma, mb = decode(ra, (SIZE, SIZE)), decode(rb, (SIZE, SIZE))
        dice.append(2 * (ma & mb).sum() / max(ma.sum() + mb.sum(), 1))
    print(f"image {SIZE}x{SIZE}, imgsz {IMGSZ}, {len(inst)} detections ({N_DUP} duplicates), best of {REPEATS}")
    print(f"ours (top-1 soft crops -> RLE):              {t_ours:.3f} s")
    print(f"common (full binary masks, polygon, fillPoly): {t_common:.3f} s")
    print(f"ratio common / ours: {t_common / t_ours:.1f}x")
    print(f"(agreement of the two outputs: mean Dice {np.mean(dice):.4f}; they differ by design)")


if __name__ == "__main__":
    main()
