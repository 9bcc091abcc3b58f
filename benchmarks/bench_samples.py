"""One epoch of semantic-model sample loading: the sample cache vs PNG decode + 29 fillPoly per sample.

The naive way, as the seed team's first loader did: for each sample, decode the 2048 px PNG,
read its annotation JSON, fill the 29 polygons at full size, resize image and masks to the
training size. Ours (:mod:`yolohand.data.samples`): a uint8 S x S image and packbits masks per
image, built once; an epoch reads two small .npy files and unpacks the bits. The seed team
reported 54.4 % less data-processing time going from PNG to NPY.

    .venv/bin/python benchmarks/bench_samples.py [--n 24] [--imgsz 512] [--size 2048]

A synthetic dataset is generated and converted in a temporary folder (``--size`` px images).
Files are read once before timing, so both ways read from the page cache: the figure is decode
and rasterising cost, not disk speed. One torch/OpenCV thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolohand.core.classes import CLASS_INDEX, NUM_CLASSES  # noqa: E402
from yolohand.data.samples import build_sample_cache, load_sample  # noqa: E402


def naive_sample(png: Path, js: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode, fill 29 polygons at full size, resize: what a loader without a cache does per sample."""
    im = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    masks = np.zeros((NUM_CLASSES, *im.shape), np.uint8)
    for ann in json.loads(js.read_text())["annotations"]:
        cv2.fillPoly(masks[CLASS_INDEX[ann["label"]]], [np.asarray(ann["points"], np.int32)], 1)
    small = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
    out = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks])
    return small, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="images (an epoch)")
    ap.add_argument("--imgsz", type=int, default=512)
    ap.add_argument("--size", type=int, default=2048, help="side of the synthetic images")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    from yolohand.data.convert import convert_dataset
    from yolohand.data.synth import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root, yolo = Path(tmp) / "raw", Path(tmp) / "yolo"
        generate_dataset(root, train_ids=max(1, a.n // 2), test_ids=0, size=a.size, seed=0, workers=1)
        convert_dataset(root, yolo, folds=2, workers=1, progress=False)
        images = sorted((yolo / "images").rglob("*.png"))[: a.n]
        pairs = [(p.resolve(), root / "train" / "outputs_json" / p.parent.name / f"{p.stem}.json") for p in images]
        for png, js in pairs:  # warm the page cache for both ways
            png.read_bytes(), js.read_bytes()
        t0 = time.perf_counter()
        samples = build_sample_cache(images, Path(tmp) / "cache", a.imgsz, progress=False)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in samples:
            load_sample(s, a.imgsz)
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        for png, js in pairs:
            naive_sample(png, js, a.imgsz)
        naive = time.perf_counter() - t0
    n = len(samples)
    print(f"{n} samples of {a.size} px images at imgsz {a.imgsz} (one epoch), 1 thread")
    print(f"  naive (PNG decode + 29 fillPoly + resize): {naive:.3f} s  ({1000 * naive / n:.1f} ms/sample)")
    print(f"  sample cache (2 .npy reads + unpackbits along the class axis):  {cached:.3f} s  ({1000 * cached / n:.2f} ms/sample)")
    print(f"  ratio naive / cached: {naive / cached:.1f}x  ({100 * (1 - cached / naive):.1f} % less time; "
          f"seed team PNG -> NPY: 54.4 % less)")
    print(f"  one-time cache build: {build:.3f} s ({1000 * build / n:.1f} ms/sample)")


if __name__ == "__main__":
    main()
