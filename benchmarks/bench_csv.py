"""Benchmark: read and validate one submission CSV (288 images x 29 classes = 8352 rows).

Ours: ``yolohand.core.submission.iter_submission`` (streaming csv reader; every RLE parsed to runs and
checked: integers, pairs, starts >= 1, lengths > 0, sorted, disjoint, within H*W; class order,
29 contiguous rows per image). Against, in the same process on the same file:

- usual: ``pandas.read_csv``, class-order check, and the competition notebooks' ``rle_decode`` of
  every row into a dense 2048x2048 array (how a CSV is usually "checked": decode everything);
- python: ``pandas.read_csv`` and a per-row pure-Python check of the same RLE rules (no dense
  decode), the cheapest hand-written equivalent of our validation.

    .venv/bin/python benchmarks/bench_csv.py [--images 288] [--repeat 3]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fixtures import bench_parser, kaggle_decode, make_submission  # noqa: E402

from yolohand.core.classes import CLASSES  # noqa: E402
from yolohand.core.submission import iter_submission  # noqa: E402

SHAPE = (2048, 2048)  # the size the fixtures draw at


def check_frame(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["image_name", "class", "rle"]
    assert len(df) % 29 == 0
    assert (df["class"].to_numpy() == np.tile(CLASSES, len(df) // 29)).all()


def usual(path: Path) -> int:
    df = pd.read_csv(path)
    check_frame(df)
    total = 0
    for r in df["rle"]:
        total += int(kaggle_decode(r).any())
    return total


def python_check(path: Path, size: int = SHAPE[0] * SHAPE[1]) -> int:
    df = pd.read_csv(path)
    check_frame(df)
    total = 0
    for r in df["rle"]:
        if not isinstance(r, str):
            continue
        v = [int(x) for x in r.split()]
        assert len(v) % 2 == 0
        prev_end = 0
        for start, length in zip(v[0::2], v[1::2]):
            assert start >= 1 and length >= 1 and start >= prev_end and start + length - 1 <= size
            prev_end = start + length
        total += 1
    return total


def ours(path: Path) -> int:
    total = 0
    for _, runs in iter_submission(path, SHAPE):
        total += sum(r.shape[0] > 0 for r in runs)
    return total


def best_time(fn, path: Path, repeat: int) -> tuple[float, int]:
    best, out = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(path)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = bench_parser(__doc__, naive_images=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--usual-repeat", type=int, default=1, help="passes of the slow dense baseline")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = make_submission(Path(tmp) / "sub.csv", n_images=args.images, seed=0)
        rows = args.images * 29
        mib = path.stat().st_size / 2**20
        t_ours, n_ours = best_time(ours, path, args.repeat)
        t_py, n_py = best_time(python_check, path, args.repeat)
        t_usual, n_usual = best_time(usual, path, args.usual_repeat)
        assert n_ours == n_py == n_usual, (n_ours, n_py, n_usual)

    print(f"read + validate one CSV: {rows} rows ({args.images} images x 29), {mib:.1f} MiB")
    print(f"  usual (pandas + dense rle_decode per row): {t_usual:8.3f} s")
    print(f"  python (pandas + per-row Python checks):   {t_py:8.3f} s")
    print(f"  yolohand iter_submission:                  {t_ours:8.3f} s")
    print(f"  ratio vs usual: {t_usual / t_ours:.1f}x   ratio vs python: {t_py / t_ours:.1f}x")


if __name__ == "__main__":
    main()
