"""Per-class IoU of two 288-image (8352-row) submissions: `yolohand.viz.compare` vs the dense way.

Ours: ``compare_submissions`` end to end (stream and validate both CSVs in lockstep, per-class
intersections on runs for all 29 classes of an image in one vectorised pass, keep the 20
least-agreeing pairs).

Naive: what the seed team's Streamlit tool did: read both CSVs with pandas, decode every mask
to a dense 2048x2048 array, and count ``a & b`` / ``a | b`` per class. The dense loop is timed
on the first ``--naive-images`` images and extrapolated linearly (fixed work per row); reading
the CSVs is timed in full. Per-class intersections and unions of the subset are checked equal
to ours.

Wall-clock and CPU (process) time are both printed: on a shared machine the CPU figure is the
steadier one.

Run: ``.venv/bin/python benchmarks/bench_compare.py [--images 288] [--naive-images 16]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from _fixtures import make_submission  # noqa: E402

from yolohand.core.classes import NUM_CLASSES  # noqa: E402
from yolohand.viz.compare import compare_submissions  # noqa: E402

H = W = 2048


def naive_decode(rle, shape=(H, W)) -> np.ndarray:
    """The usual Kaggle rle_decode: bool (H, W)."""
    img = np.zeros(shape[0] * shape[1], dtype=bool)
    if isinstance(rle, str) and rle.strip():
        s = rle.split()
        starts, lengths = (np.asarray(x, dtype=int) for x in (s[0::2], s[1::2]))
        starts -= 1
        for lo, hi in zip(starts, starts + lengths):
            img[lo:hi] = True
    return img.reshape(shape)


def naive_counts(frame_a, frame_b, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersections and unions of the first ``n_rows`` rows, densely."""
    inter = np.zeros(NUM_CLASSES, np.int64)
    union = np.zeros(NUM_CLASSES, np.int64)
    for i in range(n_rows):
        a = naive_decode(frame_a["rle"].iat[i])
        b = naive_decode(frame_b["rle"].iat[i])
        inter[i % NUM_CLASSES] += np.logical_and(a, b).sum()
        union[i % NUM_CLASSES] += np.logical_or(a, b).sum()
    return inter, union


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=288)
    ap.add_argument("--naive-images", type=int, default=16)
    args = ap.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pa = make_submission(Path(tmp) / "a.csv", n_images=args.images, seed=1)
        pb = make_submission(Path(tmp) / "b.csv", n_images=args.images, seed=2)
        print(f"made two {args.images}-image CSVs ({args.images * NUM_CLASSES} rows each) "
              f"in {time.perf_counter() - t0:.1f} s")

        w0, c0 = clocks()
        cmp = compare_submissions(pa, pb, (H, W), top=20, progress=False)
        w1, c1 = clocks()
        ours_wall, ours_cpu = w1 - w0, c1 - c0

        k = min(args.naive_images, args.images)
        w0, c0 = clocks()
        fa = pd.read_csv(pa, keep_default_na=False)
        fb = pd.read_csv(pb, keep_default_na=False)
        w1, c1 = clocks()
        inter, union = naive_counts(fa, fb, k * NUM_CLASSES)
        w2, c2 = clocks()
        scale = args.images / k
        naive_wall = (w1 - w0) + (w2 - w1) * scale
        naive_cpu = (c1 - c0) + (c2 - c1) * scale

    ours_inter = cmp.inter[:k].sum(axis=0)
    ours_union = cmp.union[:k].sum(axis=0)
    assert np.array_equal(ours_inter, inter) and np.array_equal(ours_union, union), "results differ"
    print(f"mean per-class IoU {cmp.mean_iou():.4f} (subset of {k} images checked equal to the dense way)")
    print(f"ours : wall {ours_wall:7.2f} s   cpu {ours_cpu:7.2f} s")
    print(f"naive: wall {naive_wall:7.2f} s   cpu {naive_cpu:7.2f} s   (dense loop on {k} images, x{scale:.0f})")
    print(f"ratio: wall {naive_wall / ours_wall:6.1f}x   cpu {naive_cpu / ours_cpu:6.1f}x")


if __name__ == "__main__":
    main()
