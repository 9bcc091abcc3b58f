"""Pseudo-labels, measured on the phantom: does an smp model gain from test images labelled by the
recipe's best fusion?  ``python benchmarks/pseudo_labels.py [--epochs 5]``

Needs the shipped recipe's work folder (``python -m yolohand.recipes.shipped card`` has run):
its seed-0 training set and fold split, its unseen seed-1 test set at 1024 px and the card's
fused prediction of that set (YOLO + refiner, soft fusion with smp: the teacher).

Two arms start from the shipped smp checkpoint and train the same epochs, same config, at its
128 px (run it with ``OMP_NUM_THREADS=1`` for one thread):

* ``base``: fold 0 of the recipe's data (96 labelled images);
* ``pseudo``: the same 96 plus the 20 unseen test images, labelled by ``yolohand pseudo`` from
  the teacher's CSV (``convert`` keeps them out of validation, so both arms validate on the same
  24 images).

Both then predict the 20 test images (transductive, as the competition's teams used it) and are
scored against their ground truth; the difference is a paired bootstrap over images. The
validation Dice of each run (fold 0's 24 labelled images, never pseudo-labelled) shows whether
a gain carries over to images that were not pseudo-labelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolohand.defaults import DEMO_SMP  # noqa: E402
from yolohand.demo import SMP_CONFIG, SMP_SPEC, run_step  # noqa: E402
from yolohand.recipes.shipped import SMP_IMGSZ, best_dice  # noqa: E402
from yolohand.results.paired import load_per_image, paired_delta, verdict  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=Path("runs/recipe"), help="the shipped recipe's work folder")
    ap.add_argument("--work", type=Path, default=Path("runs/pseudo"))
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    recipe, work, log = args.recipe.resolve(), args.work.resolve(), []
    teacher = recipe / "card" / "unseen1024" / "fused.csv"
    test = recipe / "unseen1024"
    if not teacher.is_file():
        raise SystemExit(f"{teacher}: missing; run `python -m yolohand.recipes.shipped card` first")
    root, yolo = work / "root", work / "yolo"
    if not (root / "pseudo_report.json").is_file():
        run_step(["pseudo", str(teacher), "--images", str(test / "test" / "DCM"), "-o", str(root),
                  "--with-train", str(recipe / "phantom"), "--force"], log)
    if not (yolo / "folds.json").is_file():
        run_step(["convert", "--root", str(root), "--out", str(yolo), "--folds", "5", "--imgsz", "512",
                  "--force"], log)
    base_val = (recipe / "yolo512" / "folds" / "fold0_val.txt").read_text().split()
    ours_val = (yolo / "folds" / "fold0_val.txt").read_text().split()
    if [Path(p).name for p in base_val] != [Path(p).name for p in ours_val]:
        raise SystemExit("the two arms' fold-0 validation sets differ")
    config = work / "smp.yaml"
    config.write_text(SMP_CONFIG + f"pretrained: {DEMO_SMP}\n")
    rows = {}
    for arm, data in (("base", recipe / "yolo512"), ("pseudo", yolo)):
        run = work / "runs" / arm / "fold0"
        if not (run / "weights" / "best.pt").is_file():
            run_step(["train", "--fold", "0", "--yolo", str(data), "--runs", str(work / "runs"), "--name", arm,
                      "--model", SMP_SPEC, "--imgsz", str(SMP_IMGSZ), "--epochs", str(args.epochs),
                      "--config", str(config), "--device", "cpu", "--threads", "1", "--force"], log)
        csv, report = work / f"{arm}.csv", work / f"{arm}.eval.json"
        run_step(["predict", "--weights", str(run / "weights" / "best.pt"), "--source", str(test / "test" / "DCM"),
                  "--device", "cpu", "--rle", str(csv), "--force"], log)
        run_step(["evaluate", str(csv), "--gt", str(test), "--split", "test", "--json", str(report), "--force"], log)
        rows[arm] = {"test": json.loads(report.read_text())["mean_dice"], "val": best_dice(run, "metrics/dice(M)")[0]}
    teacher_eval = json.loads(teacher.with_suffix(".eval.json").read_text())["mean_dice"]
    d = paired_delta(load_per_image(work / "base.eval.json"), load_per_image(work / "pseudo.eval.json"))
    print(f"\nteacher (refined YOLO + smp, soft): {teacher_eval:.4f} on the 20 pseudo-labelled test images")
    print(f"| smp, +{args.epochs} epochs from the shipped checkpoint | 20 test images (pseudo-labelled) | fold-0 val (24, "
          "labelled) |")
    print("|---|---|---|")
    for arm, r in rows.items():
        print(f"| {arm} | {r['test']:.4f} | {r['val']:.4f} |")
    print(f"\npseudo - base on the test images: {d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}] "
          f"(paired bootstrap, {d.n_images} images): {verdict(d.low, d.high)}")


if __name__ == "__main__":
    main()
