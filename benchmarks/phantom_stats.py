"""The phantom against the real data's published statistics, and its rendering speed.

    python benchmarks/phantom_stats.py                 # 40 train + 40 test images at 2048 (xray style)
    python benchmarks/phantom_stats.py --root DIR      # any dataset in the competition layout
    python benchmarks/phantom_stats.py --style flat    # the earlier generator, for comparison

Prints one markdown table (statistic | phantom | real | tolerance | within) and, when it
generated the data, images per second per worker at the size asked for.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from yolohand.data.phantom_stats import compare_table, dataset_stats
from yolohand.data.synth import generate_dataset
from yolohand.errors import YolohandError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="measure this dataset instead of generating one")
    ap.add_argument("--ids", type=int, default=20, help="train IDs and test IDs to generate (2 images each)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--style", default="xray")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "phantom"
            t0 = time.perf_counter()
            s = generate_dataset(root, args.ids, args.ids, args.size, args.seed, args.workers, style=args.style, progress=False)
            dt = time.perf_counter() - t0
            print(f"rendered {s.images} images at {args.size} in {dt:.1f} s with {s.workers} worker(s): "
                  f"{s.images / dt / s.workers:.2f} images/s per worker ({args.style} style, seed {args.seed})")
        try:
            stats = dataset_stats(root, progress=False)
        except YolohandError as exc:
            raise SystemExit(f"error: {exc}") from None
        print(f"{stats['images']:.0f} images measured")
        print("\n".join(compare_table(stats)))


if __name__ == "__main__":
    main()
