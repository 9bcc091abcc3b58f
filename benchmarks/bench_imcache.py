"""Image loading for one epoch: resize cache (.npy at imgsz) vs decoding the 2048 PNGs.

The naive way is what ultralytics' ``BaseDataset.load_image`` does without a cache: ``imread``
(``cv2.IMREAD_COLOR`` by default, ``IMREAD_GRAYSCALE`` with ``channels: 1``) and ``cv2.resize``
of the long side to imgsz (INTER_LINEAR). Also timed: ultralytics' own ``cache='disk'`` (a
full-resolution .npy, resized after loading; the kind of PNG-to-NPY conversion the seed team
reported 54.4 % less data-processing time with). Ours: ``yolohand convert --imgsz N`` writes the
already-resized uint8 grayscale array, so loading is one small read.

    .venv/bin/python benchmarks/bench_imcache.py [--root DATA_ROOT] [--n 48] [--imgsz 1024] [--repeat 2]

Without --root (or when it has no train images) a small synthetic 2048x2048 set is generated
in a temporary folder. Files are read once before timing, so all variants read from the page
cache and the figure is decode/resize cost, not disk speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolohand.data.imcache import load_cached, read_gray_like_ultralytics, resize_long_side, write_cached  # noqa: E402


def _images(root: Path | None, n: int, tmp: Path) -> list[Path]:
    if root is not None and (root / "train" / "DCM").is_dir():
        found = sorted((root / "train" / "DCM").rglob("*.png"))[:n]
        if found:
            return found
    from yolohand.data.synth import generate_dataset

    ids = max(1, (n + 1) // 2)
    print(f"generating {ids * 2} synthetic 2048x2048 images in {tmp} ...", flush=True)
    generate_dataset(tmp / "synth", train_ids=ids, test_ids=0, size=2048, seed=0, progress=False)
    return sorted((tmp / "synth" / "train" / "DCM").rglob("*.png"))[:n]


def _naive(paths: list[Path], imgsz: int, flag: int) -> None:
    for p in paths:
        im = cv2.imdecode(np.fromfile(str(p), np.uint8), flag)
        resize_long_side(im, imgsz)


def _disk_cache(full: list[Path], imgsz: int) -> None:
    for f in full:
        resize_long_side(np.load(f), imgsz)


def _ours(npys: list[Path]) -> None:
    for f in npys:
        load_cached(f)


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="competition-layout root (default: synthetic)")
    ap.add_argument("--n", type=int, default=48, help="images in the 'epoch'")
    ap.add_argument("--imgsz", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes per variant (best is kept)")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one dataloader worker's view
    with tempfile.TemporaryDirectory(prefix="bench_imcache_") as t:
        tmp = Path(t)
        paths = _images(args.root, args.n, tmp)
        t0 = time.perf_counter()
        npys = []
        for i, p in enumerate(paths):
            npys.append(tmp / "cache" / f"{i}.npy")
            write_cached(p, npys[-1], args.imgsz)
        build = time.perf_counter() - t0
        full = []
        for i, p in enumerate(paths):  # ultralytics cache='disk': the decoded full-size image
            full.append(tmp / "full" / f"{i}.npy")
            full[-1].parent.mkdir(exist_ok=True)
            np.save(full[-1], read_gray_like_ultralytics(p))
        for f in [*paths, *npys, *full]:  # warm the page cache for every variant
            Path(f).read_bytes()
        n = len(paths)
        rows = [
            ("naive: PNG decode (color, ultralytics default) + resize",
             _time(lambda: _naive(paths, args.imgsz, cv2.IMREAD_COLOR), args.repeat)),
            ("naive: PNG decode (grayscale, channels: 1) + resize",
             _time(lambda: _naive(paths, args.imgsz, cv2.IMREAD_GRAYSCALE), args.repeat)),
            ("ultralytics cache='disk' style: full-size .npy + resize",
             _time(lambda: _disk_cache(full, args.imgsz), args.repeat)),
            (f"ours: yolohand convert --imgsz {args.imgsz} (.npy at imgsz)", _time(lambda: _ours(npys), args.repeat)),
        ]
        size_ours = sum(f.stat().st_size for f in npys) / n / 2**20
        size_png = sum(p.stat().st_size for p in paths) / n / 2**20
    print(f"{n} images (PNG {size_png:.2f} MiB each), imgsz {args.imgsz}; cache build {build:.1f} s "
          f"({build / n * 1000:.0f} ms/img, once), cache {size_ours:.2f} MiB/img")
    base = rows[1][1]
    ours = rows[-1][1]
    for name, sec in rows:
        print(f"  {name:<62} {sec:7.3f} s  {sec / n * 1000:7.2f} ms/img")
    print(f"ours vs naive grayscale: {base / ours:.0f}x faster, {100 * (1 - ours / base):.1f} % less image-loading time "
          f"(vs color default: {100 * (1 - ours / rows[0][1]):.1f} %; seed team: 54.4 %)")


if __name__ == "__main__":
    main()
