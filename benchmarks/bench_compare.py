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

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from _fixtures import H, Timer, W, bench_parser, kaggle_decode, make_submission  # noqa: E402

from yolohand.core.classes import NUM_CLASSES  # noqa: E402
from yolohand.viz.compare import compare_submissions  # noqa: E402


def naive_counts(frame_a, frame_b, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersections and unions of the first ``n_rows`` rows, densely."""
    inter = np.zeros(NUM_CLASSES, np.int64)
    union = np.zeros(NUM_CLASSES, np.int64)
    for i in range(n_rows):
        a = kaggle_decode(frame_a["rle"].iat[i], dtype=bool)
        b = kaggle_decode(frame_b["rle"].iat[i], dtype=bool)
        inter[i % NUM_CLASSES] += np.logical_and(a, b).sum()
        union[i % NUM_CLASSES] += np.logical_or(a, b).sum()
    return inter, union


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pa = make_submission(Path(tmp) / "a.csv", n_images=args.images, seed=1)
        pb = make_submission(Path(tmp) / "b.csv", n_images=args.images, seed=2)
        print(f"made two {args.images}-image CSVs ({args.images * NUM_CLASSES} rows each) "
              f"in {time.perf_counter() - t0:.1f} s")

        with Timer() as ours:
            cmp = compare_submissions(pa, pb, (H, W), top=20, progress=False)
        k = min(args.naive_images, args.images)
        with Timer() as read:
            fa = pd.read_csv(pa, keep_default_na=False)
            fb = pd.read_csv(pb, keep_default_na=False)
        with Timer() as loop:
            inter, union = naive_counts(fa, fb, k * NUM_CLASSES)
        scale = args.images / k
        naive_wall = read.wall + loop.wall * scale
        naive_cpu = read.cpu + loop.cpu * scale

    ours_inter = cmp.inter[:k].sum(axis=0)
    ours_union = cmp.union[:k].sum(axis=0)
    assert np.array_equal(ours_inter, inter) and np.array_equal(ours_union, union), "results differ"
    print(f"mean per-class IoU {cmp.mean_iou():.4f} (subset of {k} images checked equal to the dense way)")
    print(f"ours : wall {ours.wall:7.2f} s   cpu {ours.cpu:7.2f} s")
    print(f"naive: wall {naive_wall:7.2f} s   cpu {naive_cpu:7.2f} s   (dense loop on {k} images, x{scale:.0f})")
    print(f"ratio: wall {naive_wall / ours.wall:6.1f}x   cpu {naive_cpu / ours.cpu:6.1f}x")


if __name__ == "__main__":
    main()
