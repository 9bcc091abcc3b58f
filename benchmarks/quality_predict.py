"""Quality of the prediction choices, measured with `yolohand evaluate` on annotated images.

Runs the network once per (checkpoint, flip) per image, keeps the raw instances, and scores
every postprocessing variant from them (the network part is identical across variants):

- mask: soft (sigmoid of upsampled logits in the box) vs polygon (binary at input resolution,
  largest contour, fillPoly: the common way, i.e. ``masks.xy`` refilled);
- conf: the network runs at --conf (0.01); each variant keeps detections >= its own conf
  (default 0.05);
- mask threshold: the raw sigmoid level mapped to 0.5 (0.8 by default, see postprocess);
- merge: top1 (most confident detection per class) vs union (pixel-wise max);
- conf-weight on/off; --conf 0.25 (ultralytics' default) vs the low default (filtering the
  NMS output by confidence afterwards is exact: NMS only lets higher-confidence boxes suppress);
- TTA (horizontal flip) on/off; one checkpoint vs the average of all given.

Usage (the README table came from this)::

    .venv/bin/python benchmarks/quality_predict.py --root ROOT --split test \
        --weights A.pt --weights B.pt [--imgsz N] [--limit N]

ROOT is a dataset in the competition layout with annotations for the split (``yolohand synth``
writes test annotations too). Prints a Markdown table: mDice, the weakest class, how many
(image, class) rows came out empty, postprocessing seconds per image.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolohand.core import crops as cr
from yolohand.core.classes import CLASSES, NUM_CLASSES  # noqa: E402
from yolohand.data.layout import find_split, read_image  # noqa: E402
from yolohand.models.yolo import postprocess as pp  # noqa: E402
from yolohand.models.yolo import predict as P  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    mask_mode: str = "soft"
    merge: str = "top1"
    conf_weight: bool = False
    conf: float = P.DEFAULT_CONF  # detections kept (the network ran at --conf, lower)
    tta: bool = False
    models: str = "first"  # "first" or "all"
    threshold: float = 0.5
    mask_threshold: float = pp.DEFAULT_MASK_THRESHOLD  # raw sigmoid level mapped to 0.5 (logit shift)
    missing: str = "zero"  # average_crops: a run that missed the class counts 0, or is skipped
    agree_iou: float = 0.0  # average_crops: a run whose box IoU with the most confident is lower counts as missed


def variants(n_models: int) -> list[Variant]:
    v = [
        Variant("polygon, union (the common way)", mask_mode="polygon", merge="union", conf=0.25),
        Variant("polygon, top1", mask_mode="polygon"),
        Variant("soft, top1 (default: mask threshold 0.8, conf 0.01)"),
        Variant("soft, top1, mask threshold 0.5 (plain sigmoid)", mask_threshold=0.5),
        Variant("soft, top1, mask threshold 0.4", mask_threshold=0.4),
        Variant("soft, top1, mask threshold 0.7", mask_threshold=0.7),
        Variant("soft, top1, mask threshold 0.9", mask_threshold=0.9),
        Variant("soft, union", merge="union"),
        Variant("soft, top1, conf-weight", conf_weight=True),
        Variant("soft, union, conf-weight", merge="union", conf_weight=True),
        Variant("soft, top1, conf 0.25", conf=0.25),
        Variant("soft, top1, conf 0.05", conf=0.05),
        Variant("soft, top1, TTA flip", tta=True),
        Variant("soft, top1, TTA flip, missing skipped", tta=True, missing="skip"),
        Variant("soft, top1, TTA flip, missing skipped, agree IoU 0.3 (--tta default)", tta=True, missing="skip",
                agree_iou=0.3),
    ]
    if n_models > 1:
        v += [
            Variant(f"soft, top1, {n_models} checkpoints averaged", models="all"),
            Variant(f"soft, top1, {n_models} checkpoints averaged, missing skipped", models="all", missing="skip"),
            Variant(f"soft, top1, {n_models} checkpoints averaged, missing skipped, agree IoU 0.3 (default)",
                    models="all", missing="skip", agree_iou=0.3),
            Variant(f"soft, top1, {n_models} checkpoints + TTA", models="all", tta=True),
            Variant(f"soft, top1, {n_models} checkpoints + TTA, missing skipped", models="all", tta=True, missing="skip"),
            Variant(f"soft, top1, {n_models} checkpoints + TTA, missing skipped, agree IoU 0.3", models="all", tta=True,
                    missing="skip", agree_iou=0.3),
        ]
    return v


def _filter(inst: pp.Instances, conf: float) -> pp.Instances:
    keep = inst.conf >= conf
    return replace(inst, coef=inst.coef[keep], boxes=inst.boxes[keep], conf=inst.conf[keep], cls=inst.cls[keep])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--weights", action="append", required=True, type=Path)
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--conf", type=float, default=0.01, help="network conf: the lowest a variant can use")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from yolohand.core.submission import SubmissionWriter
    from yolohand.results.evaluate import evaluate

    records = find_split(args.root, args.split, require_json=True).records[: args.limit]
    nets = [P.load_network(w, args.imgsz, args.conf, device=args.device) for w in args.weights]
    # raw[i] = (shape, [[plain, flipped] per model])
    raw = []
    t0 = time.perf_counter()
    for rec in records:
        img = read_image(rec.image_path)
        flipped = np.ascontiguousarray(img[:, ::-1])
        raw.append((img.shape, [net([img, flipped]) for net in nets]))
    t_net = (time.perf_counter() - t0) / max(len(records), 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, v in enumerate(variants(len(nets))):
            csv = Path(tmp) / f"v{k}.csv"
            t_pp, empty = 0.0, 0
            with SubmissionWriter(csv) as out:
                for rec, (shape, per_model) in zip(records, raw):
                    t1 = time.perf_counter()
                    runs = []
                    for plain, flipped in per_model if v.models == "all" else per_model[:1]:
                        runs.append(pp.class_crops(_filter(plain, v.conf), v.merge, v.conf_weight, v.mask_mode, mask_threshold=v.mask_threshold))
                        if v.tta:
                            crops = pp.class_crops(_filter(flipped, v.conf), v.merge, v.conf_weight, v.mask_mode,
                                                   mask_threshold=v.mask_threshold)
                            runs.append(cr.flip_crops(crops, shape[1]))
                    rles = cr.crops_to_rles(cr.average_crops(runs, v.missing, v.agree_iou), shape, v.threshold)
                    t_pp += time.perf_counter() - t1
                    empty += sum(1 for r in rles if not r)
                    out.write_image(rec.name, rles)
            res = evaluate(csv, args.root, split=args.split, progress=False)
            worst = int(np.argmin(res.per_class))
            rows.append((v.name, res.mean, f"{CLASSES[worst]} {res.per_class[worst]:.4f}", empty, t_pp / len(records)))
    print(f"{len(records)} images of {args.root} ({args.split}), weights: {', '.join(str(w) for w in args.weights)}, "
          f"imgsz {nets[0].imgsz()}, network conf {args.conf}; network {t_net:.2f} s/image (plain + flip, per model)")
    print()
    print(f"| variant | mDice | weakest class | empty rows (of {len(records) * NUM_CLASSES}) | postprocess s/img |")
    print("|---|---|---|---|---|")
    for name, mean, worst, empty, secs in rows:
        print(f"| {name} | {mean:.4f} | {worst} | {empty} | {secs:.3f} |")


if __name__ == "__main__":
    main()
