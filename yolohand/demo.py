"""`make demo`: the whole job end to end on synthetic data, as the commands a user would type.

Each step runs the real CLI in a subprocess and is echoed first, so the log doubles as a
walkthrough. Steps: synthesise -> convert (2 folds) -> fine-tune the shipped demo checkpoint on
each fold -> predict the synthetic test set with each fold (saving probability maps), with
both folds averaged, and with both folds + the shipped demo refiner -> hard-vote the fold CSVs and
soft-vote the fold maps -> fine-tune the shipped smp model on fold 0 and predict -> fuse
YOLO and smp (soft vote of the maps, hard vote of three CSVs), and the refined YOLO with smp (soft
vote, and class-wise with the per-class pick fitted on fold 0's validation images) -> evaluate
every CSV against the synthetic ground truth -> one summary table.

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

from yolohand.defaults import DEMO_REFINER, DEMO_SMP, DEMO_WEIGHTS

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


#: The smp family in the demo: the shipped smp checkpoint fine-tuned on fold 0 (its model card:
#: weights/README.md), as the YOLO steps fine-tune the shipped YOLO, with the loss it was trained
#: with (BCE + Dice 1:1; the from-scratch default weighs BCE at 0.01).
SMP_SPEC = "smp:Unet:mobilenet_v2"
SMP_IMGSZ = 256  # the shipped smp model's plane (trained at 128, then 256: weights/README.md)
SMP_CONFIG = """\
batch: 4
lr0: 0.0005
bce_weight: 1.0
workers: 0
"""


def run_step(args: list[str], log: list[str]) -> float:
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


def _yolo_steps(d: dict, folds: int, imgsz: int, epochs: int, log: list[str]) -> dict[str, tuple[Path, float]]:
    """Fine-tune the shipped YOLO on each fold, predict per fold (+ maps) and averaged, vote."""
    config = d["out"] / "finetune.yaml"
    config.write_text(FINETUNE_CONFIG)
    print(f"\n# {config.name} (ultralytics train arguments for fine-tuning):\n{FINETUNE_CONFIG}", end="")
    for k in range(folds):
        d["seconds"][f"train fold{k}"] = run_step(
            ["train", "--fold", str(k), "--yolo", str(d["yolo"]), "--runs", str(d["runs"]), "--name", "demo",
             "--model", str(DEMO_WEIGHTS), "--imgsz", str(imgsz), "--epochs", str(epochs),
             "--config", str(config), "--device", "cpu", "--force"], log)
        d["yolo_weights"].append(d["runs"] / "demo" / f"fold{k}" / "weights" / "best.pt")
    csvs: dict[str, tuple[Path, float]] = {}
    for k, w in enumerate(d["yolo_weights"]):
        csv = d["out"] / f"fold{k}.csv"
        d["prob_dirs"].append(d["out"] / f"probs_fold{k}")
        t = run_step(["predict", "--weights", str(w), "--source", d["source"], "--imgsz", str(imgsz),
                  "--rle", str(csv), "--save-probs", str(d["prob_dirs"][-1]), "--force"], log)
        csvs[f"fold{k}"] = (csv, t)
    weights_args = [a for w in d["yolo_weights"] for a in ("--weights", str(w))]
    both = d["out"] / "folds_avg.csv"
    csvs["folds averaged (soft)"] = (both, run_step(["predict", *weights_args, "--source", d["source"], "--imgsz", str(imgsz),
                                                 "--rle", str(both), "--force"], log))
    vote = d["out"] / "ensemble.csv"
    csvs["hard vote of folds"] = (vote, run_step(["ensemble", *(str(csvs[f"fold{k}"][0]) for k in range(folds)),
                                              "--out", str(vote), "--size", d["size"], "--force"], log))
    soft = d["out"] / "ensemble_soft.csv"
    csvs["soft vote of fold maps"] = (soft, run_step(["ensemble", *(a for p in d["prob_dirs"] for a in ("--probs", str(p))),
                                                  "--out", str(soft), "--size", d["size"], "--force"], log))
    refined = d["out"] / "refined.csv"
    csvs["refined (folds + demo refiner)"] = (refined, run_step(
        ["predict", *weights_args, "--refiner", str(DEMO_REFINER), "--source", d["source"], "--imgsz", str(imgsz),
         "--rle", str(refined), "--save-probs", str(d["out"] / "probs_refined"), "--force"], log))
    return csvs


def _smp_steps(d: dict, csvs: dict[str, tuple[Path, float]], spec: str, imgsz: int, epochs: int, log: list[str]) -> None:
    """Fine-tune the shipped smp model on fold 0, predict (+ maps), fuse with YOLO both ways."""
    config = d["out"] / "smp.yaml"
    text = SMP_CONFIG + (f"pretrained: {DEMO_SMP}\n" if spec == SMP_SPEC else "")  # another model starts from random weights
    config.write_text(text)
    print(f"\n# {config.name} (smp run arguments):\n{text}", end="")
    d["seconds"]["train smp fold0"] = run_step(
        ["train", "--fold", "0", "--yolo", str(d["yolo"]), "--runs", str(d["runs"]), "--name", "demo-smp", "--model", spec,
         "--imgsz", str(imgsz), "--epochs", str(epochs), "--config", str(config), "--device", "cpu", "--force"], log)
    smp_w, smp_csv, smp_probs = d["runs"] / "demo-smp" / "fold0" / "weights" / "best.pt", d["out"] / "smp.csv", d["out"] / "probs_smp"
    csvs["smp"] = (smp_csv, run_step(["predict", "--weights", str(smp_w), "--source", d["source"], "--rle", str(smp_csv),
                                  "--save-probs", str(smp_probs), "--force"], log))
    soft = d["out"] / "yolo_smp_soft.csv"
    csvs["yolo+smp soft vote"] = (soft, run_step(["ensemble", *(a for p in [*d["prob_dirs"], smp_probs] for a in ("--probs", str(p))),
                                              "--out", str(soft), "--size", d["size"], "--force"], log))
    hard = d["out"] / "yolo_smp_hard.csv"
    csvs["yolo+smp hard vote"] = (hard, run_step(["ensemble", str(d["out"] / "fold0.csv"), str(d["out"] / "fold1.csv"), str(smp_csv),
                                              "--out", str(hard), "--size", d["size"], "--force"], log))
    _refined_smp_steps(d, csvs, smp_w, smp_probs, log)


def _refined_smp_steps(d: dict, csvs: dict[str, tuple[Path, float]], smp_w: Path, smp_probs: Path, log: list[str]) -> None:
    """Fuse the refined YOLO with smp: a plain soft vote, and class-wise (``yolohand pick`` on fold 0's
    validation images, which neither fold 0's YOLO + refiner nor the smp run trained on)."""
    refined_probs = d["out"] / "probs_refined"
    soft = d["out"] / "refined_smp_soft.csv"
    csvs["refined+smp soft vote"] = (soft, run_step(["ensemble", "--probs", str(refined_probs), "--probs", str(smp_probs),
                                                     "--out", str(soft), "--size", d["size"], "--force"], log))
    val, out = str(d["yolo"] / "folds" / "fold0_val.txt"), d["out"]
    run_step(["predict", "--weights", str(d["yolo_weights"][0]), "--refiner", str(DEMO_REFINER), "--source", val,
              "--rle", str(out / "val_refined.csv"), "--save-probs", str(out / "val_probs_refined"), "--force"], log)
    run_step(["predict", "--weights", str(smp_w), "--source", val, "--rle", str(out / "val_smp.csv"),
              "--save-probs", str(out / "val_probs_smp"), "--force"], log)
    patients = {Path(line).parent.name for line in Path(val).read_text().split()}
    guard = [] if len(patients) >= 2 else ["--no-split-half"]  # the split-half guard needs two patients
    run_step(["pick", "--probs", str(out / "val_probs_refined"), "--probs", str(out / "val_probs_smp"), "--gt", str(d["data"]),
              "--split", "train", "-o", str(out / "fusion.yaml"), *guard, "--force"], log)
    fused = out / "refined_smp_classwise.csv"
    csvs["refined+smp class-wise (picked on val)"] = (fused, run_step(
        ["ensemble", "--fusion", str(out / "fusion.yaml"), "--probs", str(refined_probs), "--probs", str(smp_probs),
         "--out", str(fused), "--size", d["size"], "--force"], log))


def _score(d: dict, csvs: dict[str, tuple[Path, float]], log: list[str]) -> list[dict]:
    rows = []
    for label, (csv, t) in csvs.items():
        report = csv.with_suffix(".eval.json")
        run_step(["evaluate", str(csv), "--gt", str(d["data"]), "--json", str(report), "--force"], log)
        result = json.loads(report.read_text())
        rows.append({"source": label, "csv": csv.name, "mean_dice": result["mean_dice"],
                     "weakest": _weakest(result["per_class"]), "seconds": t})
    return rows


def run_demo(
    out: Path,
    train_ids: int = 20,
    test_ids: int = 5,
    size: int = 1024,
    imgsz: int = 512,
    epochs: int = 8,
    folds: int = 2,
    seed: int = 1,
    smp: str | None = SMP_SPEC,
    smp_imgsz: int = SMP_IMGSZ,
    smp_epochs: int = 3,
    style: str = "xray",
) -> list[dict]:
    """Run every step into ``out`` (replaced if present) and return the summary rows.

    ``style``: the synthetic data's style (``yolohand synth --style``); the shipped checkpoints
    were trained on the default (``xray``, phantom version 2), so another style shows how they adapt.

    ``smp`` None leaves the smp family out (its rows and fusions); the yolo+smp hard vote needs 2 folds.
    """
    out = out.resolve()
    for w in (DEMO_WEIGHTS, DEMO_REFINER, DEMO_SMP):
        if not w.is_file():
            raise SystemExit(f"demo: {w} is missing (it ships with the package)")
    d = {"out": out, "data": out / "handbone", "yolo": out / "yolo", "runs": out / "runs", "seconds": {},
         "yolo_weights": [], "prob_dirs": [], "size": f"{size},{size}", "source": str(out / "handbone" / "test" / "DCM")}
    log: list[str] = []
    run_step(["synth", str(d["data"]), "--train-ids", str(train_ids), "--test-ids", str(test_ids),
          "--size", str(size), "--seed", str(seed), "--style", style, "--force"], log)
    run_step(["convert", "--root", str(d["data"]), "--out", str(d["yolo"]), "--folds", str(folds), "--imgsz", str(imgsz),
          "--force"], log)
    csvs = _yolo_steps(d, folds, imgsz, epochs, log)
    if smp and folds >= 2:
        _smp_steps(d, csvs, smp, smp_imgsz, smp_epochs, log)
    return _score(d, csvs, log)


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
    parser.add_argument("--smp", default=SMP_SPEC, help="smp model fine-tuned on fold 0 ('none' to skip the smp rows)")
    parser.add_argument("--smp-imgsz", type=int, default=SMP_IMGSZ, help="smp training size (the shipped model's)")
    parser.add_argument("--smp-epochs", type=int, default=3, help="smp fine-tuning epochs")
    parser.add_argument("--style", default="xray", help="synthetic data style: xray (the phantom) or flat (the earlier look)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    smp = None if args.smp.lower() == "none" else args.smp
    rows = run_demo(args.out, args.train_ids, args.test_ids, args.size, args.imgsz, args.epochs, args.folds,
                    smp=smp, smp_imgsz=args.smp_imgsz, smp_epochs=args.smp_epochs, style=args.style)
    print_table(rows)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; outputs in {args.out.resolve()}")


if __name__ == "__main__":
    main()
