"""Benchmark: RLE-encode the 29 masks of 20 synthetic-like 2048x2048 hands.

Ours (yolohand.core.rle.encode: bounding box first, diff of that box only) against the straightforward
encoder every competition notebook uses (flatten the whole mask, pad, diff, pair). Both run in this
process on the same masks; the outputs are checked to be identical.

    .venv/bin/python benchmarks/bench_rle.py [--images 20] [--size 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fixtures import kaggle_encode, make_bone_masks  # noqa: E402

from yolohand.core import rle  # noqa: E402


def best_time(fn, stacks, repeat: int) -> float:
    """Best of ``repeat`` passes over all masks, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for masks in stacks:
            for m in masks:
                fn(m)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    stacks = [make_bone_masks(rng, args.size, args.size) for _ in range(args.images)]
    n = sum(len(s) for s in stacks)
    for masks in stacks:  # same strings, or the comparison is void
        for m in masks:
            assert rle.encode(m) == kaggle_encode(m)

    t_ours = best_time(rle.encode, stacks, args.repeat)
    t_naive = best_time(kaggle_encode, stacks, args.repeat)
    print(f"encode {n} masks ({args.images} images x 29, {args.size}x{args.size}), best of {args.repeat}:")
    print(f"  naive (flatten, pad, diff): {t_naive:8.3f} s  ({t_naive / n * 1e3:6.2f} ms/mask)")
    print(f"  yolohand.core.rle.encode:        {t_ours:8.3f} s  ({t_ours / n * 1e3:6.2f} ms/mask)")
    print(f"  ratio: {t_naive / t_ours:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
