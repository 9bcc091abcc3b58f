"""Hard vote of three 288-image submission CSVs: `yolohand.results.ensemble.hard_vote` vs the usual dense loop.

Ours: ``hard_vote`` end to end (check the inputs agree, stream and validate all three CSVs,
vote on runs, write the CSV atomically).

Naive: what ensembling notebooks usually do: read the CSVs with pandas, then for every row
decode each input mask to a dense 2048x2048 array (the usual ``rle_decode``), ``np.sum`` the list
of masks, threshold (>= 2 of 3), re-encode with the usual flatten/pad/diff ``rle_encode``, and
write with pandas. The dense loop is timed on the first ``--naive-images`` images and
extrapolated linearly to all images (it is per-row work of fixed cost); reading the three CSVs
is timed in full. A lean variant of the same dense loop (one uint8 accumulator summed in place)
is timed too, on ``--lean-images`` images, as a second, harder reference. The output rows of the
subsets are checked equal to ours.

Both wall-clock and CPU (process) time are printed: on a shared machine the CPU ratio is the
steadier figure.

Run: ``.venv/bin/python benchmarks/bench_vote.py [--images 288] [--naive-images 16]``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from _fixtures import H, Timer, W, bench_parser, kaggle_decode, kaggle_encode, make_submission  # noqa: E402

from yolohand.core.classes import NUM_CLASSES  # noqa: E402
from yolohand.results.ensemble import hard_vote  # noqa: E402


def naive_vote(frames, n_rows: int) -> list[tuple[str, str, str]]:
    """The usual notebook loop over the first ``n_rows`` rows: per row, a list of dense masks,
    ``np.sum(masks, axis=0)``, threshold at a strict majority, ``astype(uint8)``, encode."""
    import pandas as pd

    out = []
    need = len(frames) // 2 + 1
    for i in range(n_rows):
        masks = []
        for df in frames:
            rle = df.iloc[i]["rle"]
            masks.append(np.zeros((H, W), np.uint8) if pd.isna(rle) else kaggle_decode(rle))
        vote = np.sum(masks, axis=0)
        row = frames[0].iloc[i]
        out.append((row["image_name"], row["class"], kaggle_encode((vote >= need).astype(np.uint8))))
    return out


def lean_vote(frames, n_rows: int) -> list[str]:
    """The same dense loop written lean: one uint8 accumulator summed in place, columns as arrays."""
    rles = [df["rle"].to_numpy() for df in frames]
    need = len(frames) // 2 + 1
    out = []
    for i in range(n_rows):
        total = np.zeros((H, W), dtype=np.uint8)
        for col in rles:
            total += kaggle_decode(col[i])
        out.append(kaggle_encode(total >= need))
    return out


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--lean-images", type=int, default=8, help="images the lean dense loop is timed on")
    args = ap.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Timer() as made:
            inputs = [make_submission(tmp / f"model{k}.csv", args.images, seed=k, jitter=3.0) for k in range(3)]
        mb = sum(p.stat().st_size for p in inputs) / 2**20
        print(f"fixtures: 3 CSVs x {args.images * NUM_CLASSES} rows ({args.images} images, {mb:.0f} MiB) "
              f"written in {made.wall:.1f} s")

        with Timer() as ours:
            summary = hard_vote(inputs, tmp / "ours.csv", progress=False)
        print(f"ours : hard_vote, {summary.images} images, {summary.rows} rows: "
              f"{ours.wall:.2f} s wall, {ours.cpu:.2f} s CPU")

        with Timer() as read:
            frames = [pd.read_csv(p, keep_default_na=True) for p in inputs]
        n_sub = min(args.naive_images, args.images)
        with Timer() as loop:
            rows = naive_vote(frames, n_sub * NUM_CLASSES)
            pd.DataFrame(rows, columns=["image_name", "class", "rle"]).to_csv(tmp / "naive.csv", index=False)
        scale = args.images / n_sub
        naive, naive_cpu = read.wall + loop.wall * scale, read.cpu + loop.cpu * scale
        print(f"naive: pandas read of the 3 CSVs {read.wall:.2f} s (all rows) + dense decode/sum/threshold/"
              f"encode/write loop {loop.wall:.2f} s on {n_sub} of {args.images} images, extrapolated "
              f"linearly x{scale:.1f} -> {naive:.1f} s wall, {naive_cpu:.1f} s CPU")

        ours_rows = pd.read_csv(tmp / "ours.csv", nrows=n_sub * NUM_CLASSES, keep_default_na=False)
        same = all(a == b for a, b in zip(ours_rows["rle"].tolist(), (r[2] for r in rows)))
        print(f"check: the {n_sub * NUM_CLASSES} naive rows {'equal' if same else 'DIFFER FROM'} ours")
        print(f"ratio: {naive / ours.wall:.0f}x wall, {naive_cpu / ours.cpu:.0f}x CPU "
              f"(target >= 50x; ours {'under' if ours.wall < 30 else 'OVER'} 30 s)")

        n_lean = min(args.lean_images, args.images)
        with Timer() as lean_t:
            lean_rows = lean_vote(frames, n_lean * NUM_CLASSES)
        scale = args.images / n_lean
        lean, lean_cpu = read.wall + lean_t.wall * scale, read.cpu + lean_t.cpu * scale
        same = same and lean_rows == [r[2] for r in rows[: len(lean_rows)]]
        print(f"lean : the dense loop with an in-place uint8 sum (no np.sum over a list, no .iloc): "
              f"{lean_t.wall:.2f} s on {n_lean} images, extrapolated -> {lean:.1f} s wall, {lean_cpu:.1f} s CPU; "
              f"ratio {lean / ours.wall:.0f}x wall, {lean_cpu / ours.cpu:.0f}x CPU")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
