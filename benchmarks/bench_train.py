"""Wall time of one tiny training epoch on the CPU (what tests/test_train.py used to assert).

    .venv/bin/python benchmarks/bench_train.py [--imgsz 64] [--epochs 1] [--threads 1] [--model yolo11n-seg.yaml]

A synthetic set (3 train IDs + 1 test ID at 256 px, seed 0: the test suite's ``synth_root``) is
converted with 2 folds and fold 0 is trained with yolohand's defaults, ``plots: false``. Printed:
seconds for the whole ``train_fold`` call (model build, data check, epochs, final validation)
and per epoch (results.csv's ``time`` column), wall and CPU.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import Timer  # noqa: E402  (also puts the checkout on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="yolo11n-seg.yaml")
    args = ap.parse_args()

    from yolohand.data.convert import convert_dataset
    from yolohand.data.synth import generate_dataset
    from yolohand.models.train import train_fold

    with tempfile.TemporaryDirectory() as tmp:
        root, yolo = Path(tmp) / "handbone", Path(tmp) / "yolo"
        generate_dataset(root, train_ids=3, test_ids=1, size=256, seed=0, workers=1, progress=False)
        convert_dataset(root, yolo, folds=2, seed=0, imgsz=args.imgsz, workers=1)
        with Timer() as t:
            r = train_fold(0, model=args.model, yolo=yolo, runs=Path(tmp) / "runs", name="bench", imgsz=args.imgsz,
                           epochs=args.epochs, batch=2, device="cpu", threads=args.threads, config={"plots": False})
        with open(Path(r.run_dir) / "results.csv", newline="") as fh:
            rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    per_epoch = float(rows[-1]["time"]) / len(rows) if rows and rows[-1].get("time") else float("nan")
    print(f"train_fold {args.model} imgsz {args.imgsz}, {args.epochs} epoch(s), {args.threads} thread(s): "
          f"{t.wall:.1f} s wall, {t.cpu:.1f} s CPU; {per_epoch:.1f} s per epoch (results.csv); Dice {r.dice:.4f}")


if __name__ == "__main__":
    main()
