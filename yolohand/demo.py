"""`make demo`: the whole job end to end on synthetic data, as the commands a user would type.

Each step runs the real CLI in a subprocess and is echoed first, so the log doubles as a
walkthrough. Steps: synthesise -> convert (2 folds) -> fine-tune the shipped demo checkpoint on
each fold -> predict the synthetic test set with each fold (saving probability maps) and with
both folds averaged -> hard-vote the fold CSVs and soft-vote the fold maps -> evaluate every CSV
against the synthetic ground truth -> one summary table.

Run ``python -m yolohand.demo --help`` for the knobs (sizes, epochs, output folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from yolohand.defaults import DEMO_WEIGHTS

# Fine-tuning a trained checkpoint on a dozen images: small batches with one optimizer step each
# (ultralytics' nbs=64 would accumulate a whole epoch into a single step), a low AdamW rate and
# no warm-up (its bias LR of 0.1 would undo the checkpoint in the first epoch).
FINETUNE_CONFIG = """\
batch: 4
nbs: 4
optimizer: AdamW
lr0: 0.0003
warmup_epochs: 0
"""


def _run(args: list[str], log: list[str]) -> float:
    """Run ``yolohand <args>`` in a subprocess, echoing the command; return seconds taken."""
    cmd = [sys.executable, "-m", "yolohand", *args]
    here = str(Path.cwd()) + "/"
    shown = "yolohand " + " ".join(shlex.quote(a.replace(here, "")) for a in args)  # paths as typed from here
    print(f"\n$ {shown}", flush=True)
    log.append(shown)
    t0 = time.perf_counter()
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"demo: step failed (exit {result.returncode}): {shown}")
    return time.perf_counter() - t0


def _weakest(per_class: dict[str, float], n: int = 3) -> str:
    worst = sorted(per_class.items(), key=lambda kv: kv[1])[:n]
    return ", ".join(f"{name} {score:.3f}" for name, score in worst)


def run_demo(
    out: Path,
    train_ids: int = 20,
    test_ids: int = 5,
    size: int = 1024,
    imgsz: int = 512,
    epochs: int = 8,
    folds: int = 2,
    seed: int = 1,
) -> list[dict]:
    """Run every step into ``out`` (replaced if present) and return the summary rows."""
    out = out.resolve()
    data, yolo, runs = out / "handbone", out / "yolo", out / "runs"
    log: list[str] = []
    seconds: dict[str, float] = {}
    if not DEMO_WEIGHTS.is_file():
        raise SystemExit(f"demo: {DEMO_WEIGHTS} is missing (it ships with the repository)")

    _run(["synth", str(data), "--train-ids", str(train_ids), "--test-ids", str(test_ids),
          "--size", str(size), "--seed", str(seed), "--force"], log)
    _run(["convert", "--root", str(data), "--out", str(yolo), "--folds", str(folds), "--imgsz", str(imgsz),
          "--force"], log)
    config = out / "finetune.yaml"
    config.write_text(FINETUNE_CONFIG)
    print(f"\n# {config.name} (ultralytics train arguments for fine-tuning):\n{FINETUNE_CONFIG}", end="")

    fold_weights = []
    for k in range(folds):
        seconds[f"train fold{k}"] = _run(
            ["train", "--fold", str(k), "--yolo", str(yolo), "--runs", str(runs), "--name", "demo",
             "--model", str(DEMO_WEIGHTS), "--imgsz", str(imgsz), "--epochs", str(epochs),
             "--config", str(config), "--device", "cpu", "--force"], log)
        fold_weights.append(runs / "demo" / f"fold{k}" / "weights" / "best.pt")

    source = str(data / "test" / "DCM")
    csvs: dict[str, tuple[Path, float]] = {}
    prob_dirs = []
    for k, w in enumerate(fold_weights):
        csv = out / f"fold{k}.csv"
        prob_dirs.append(out / f"probs_fold{k}")
        t = _run(["predict", "--weights", str(w), "--source", source, "--imgsz", str(imgsz),
                  "--rle", str(csv), "--save-probs", str(prob_dirs[-1]), "--force"], log)
        csvs[f"fold{k}"] = (csv, t)
    both = out / "folds_avg.csv"
    weights_args = [a for w in fold_weights for a in ("--weights", str(w))]
    t = _run(["predict", *weights_args, "--source", source, "--imgsz", str(imgsz),
              "--rle", str(both), "--force"], log)
    csvs["folds averaged (soft)"] = (both, t)
    vote = out / "ensemble.csv"
    t = _run(["ensemble", *(str(csvs[f"fold{k}"][0]) for k in range(folds)),
              "--out", str(vote), "--size", f"{size},{size}", "--force"], log)
    csvs["hard vote of folds"] = (vote, t)
    soft = out / "ensemble_soft.csv"
    t = _run(["ensemble", *(a for d in prob_dirs for a in ("--probs", str(d))),
              "--out", str(soft), "--size", f"{size},{size}", "--force"], log)
    csvs["soft vote of fold maps"] = (soft, t)

    rows = []
    for label, (csv, t) in csvs.items():
        report = csv.with_suffix(".eval.json")
        _run(["evaluate", str(csv), "--gt", str(data), "--json", str(report), "--force"], log)
        result = json.loads(report.read_text())
        rows.append({"source": label, "csv": csv.name, "mean_dice": result["mean_dice"],
                     "weakest": _weakest(result["per_class"]), "seconds": t})
    return rows


def print_table(rows: list[dict]) -> None:
    """Print the per-source summary: mean Dice, three weakest classes, time."""
    width = max(len(r["source"]) for r in rows)
    print("\n" + "=" * 100)
    print(f"{'source':<{width}}  {'mDice':>6}  {'time':>6}  weakest classes")
    for r in rows:
        print(f"{r['source']:<{width}}  {r['mean_dice']:6.4f}  {r['seconds']:5.1f}s  {r['weakest']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (replaced)")
    parser.add_argument("--train-ids", type=int, default=20, help="synthetic train IDs (2 images each)")
    parser.add_argument("--test-ids", type=int, default=5, help="synthetic test IDs (2 images each)")
    parser.add_argument("--size", type=int, default=1024, help="synthetic image size")
    parser.add_argument("--imgsz", type=int, default=512, help="network input size (the checkpoint's)")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs per fold")
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = run_demo(args.out, args.train_ids, args.test_ids, args.size, args.imgsz, args.epochs, args.folds)
    print_table(rows)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; outputs in {args.out.resolve()}")


if __name__ == "__main__":
    main()
