"""The recipe of the shipped checkpoints: ``python -m yolohand.recipes.shipped {yolo,smp,refine,card}``.

Regenerates each checkpoint of ``yolohand/weights`` on the default phantom, as the commands a
user would type (each echoed, like ``make demo``), in a work folder (default ``runs/recipe``):

1. Data (once): ``yolohand synth`` 60 train IDs (120 images) at 1024 px, seed 0, and ``yolohand
   convert`` to 5 folds at 512 px; every model trains on fold 0 (96 images) and validates on its 24.
2. ``yolo``: fine-tunes the current YOLO checkpoint (``--from``, default the shipped one: a
   model that already finds 29 bones learns the new look in minutes, where one from scratch
   needs hours of this 2-core machine) for ``--hours`` (ultralytics' time budget). **Resumable
   over sittings**: a run stopped by the end of a sitting (Ctrl-C, the session's end) is resumed
   where it stopped; a run that spent its budget is continued by a next stage (``yolo-2``,
   ``yolo-3``...) that starts from the best checkpoint so far, so the training adds up.
3. ``smp`` / ``refine``: fine-tune the shipped smp model (256 px plane) / refiner for
   ``--epochs`` (resumed the same way when interrupted; smp in stages like the YOLO's, each
   sitting's stage from the best so far). The refiner learns what the detector really gets wrong: it
   trains on a phantom set of its own (seed 2) that the recipe's YOLO never saw, with that YOLO's
   out-of-sample maps as priors for ``--prior-mix`` of its crops (the rest: degraded ground
   truth), validates behind the same YOLO and gates the bones it would make worse.
4. ``card``: the model cards' figures on unseen phantom images of another seed (20 at 1024 px
   and 10 at 2048 px, seed 1): YOLO, YOLO + refiner, smp, and the soft fusion of the refined
   YOLO with smp, each as mDice and per class group.

``--install`` copies the best checkpoint over the shipped one (``yolohand/weights``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from yolohand.core.classes import REPORT_GROUPS, group_means
from yolohand.defaults import DEMO_REFINER, DEMO_SMP, DEMO_WEIGHTS
from yolohand.demo import FINETUNE_CONFIG, SMP_CONFIG, SMP_IMGSZ, SMP_SPEC, run_step
from yolohand.models.shared.runs import read_rows

DATA = {"train_ids": 60, "size": 1024, "seed": 0, "folds": 5, "imgsz": 512}
UNSEEN = ((1024, 10), (2048, 5))  # (image size, test IDs of 2 images), seed 1
UNSEEN_SEED = 1
REFINE_SPEC = "refine:Unet:mobilenet_v2"  # the shipped refiner's architecture
REFINE_DATA = {"train_ids": 30, "seed": 2}  # the refiner's own images: 60 at 1024 px, unseen by the YOLO
REFINE_IMGSZ = 64  # the shipped refiner's crop size (SMP_IMGSZ: the shipped smp's plane, from the demo)
YOLO_DICE = SMP_DICE = "metrics/dice(M)"  # the validation Dice column of both families' results.csv


def _has(path: Path) -> bool:
    return path.exists() and any(path.iterdir())


def ensure_data(work: Path, log: list[str]) -> Path:
    """The phantom training set and its folds (made once); returns the converted folder."""
    root, yolo = work / "phantom", work / f"yolo{DATA['imgsz']}"
    if not _has(root):
        run_step(["synth", str(root), "--train-ids", str(DATA["train_ids"]), "--test-ids", "2", "--size",
                  str(DATA["size"]), "--seed", str(DATA["seed"]), "--workers", "1"], log)
    if not _has(yolo):
        run_step(["convert", "--root", str(root), "--out", str(yolo), "--folds", str(DATA["folds"]),
                  "--imgsz", str(DATA["imgsz"])], log)
    return yolo


def _finished(run: Path) -> bool:
    """A YOLO run that ended (ultralytics strips last.pt at the end: epoch -1), or has no last.pt."""
    last = run / "weights" / "last.pt"
    if not last.is_file():
        return True
    import torch

    return int(torch.load(last, map_location="cpu", weights_only=False).get("epoch", -1)) < 0


def _stages(work: Path, name: str) -> list[Path]:
    """``<work>/runs/<name>/fold0``, ``<name>-2/fold0``, ... that exist, in order."""
    runs = [work / "runs" / name / "fold0"]
    k = 2
    while (work / "runs" / f"{name}-{k}").exists():
        runs.append(work / "runs" / f"{name}-{k}" / "fold0")
        k += 1
    return [r for r in runs if r.exists()]


def best_dice(run: Path, key: str) -> tuple[float, int]:
    """(best validation Dice, its 1-based epoch) of a run's results.csv; (-1, -1) without rows."""
    rows = [{k.strip(): v for k, v in r.items()} for r in read_rows(run / "results.csv")]
    scored = [(float(r[key]), i + 1) for i, r in enumerate(rows) if r.get(key, "").strip()]
    return max(scored) if scored else (-1.0, -1)


def train_yolo(work: Path, hours: float, start: Path, log: list[str]) -> Path:
    """One sitting of the YOLO recipe (see the module docstring); returns the best best.pt so far."""
    yolo = ensure_data(work, log)
    stages = _stages(work, "yolo")
    common = ["--fold", "0", "--yolo", str(yolo), "--runs", str(work / "runs"), "--imgsz", str(DATA["imgsz"]),
              "--device", "cpu", "--threads", "1"]
    if stages and not _finished(stages[-1]):
        run_step(["train", *common, "--name", stages[-1].parent.name, "--resume"], log)
    else:
        if stages:
            start = max(stages, key=lambda r: best_dice(r, YOLO_DICE))/ "weights" / "best.pt"
        name = "yolo" if not stages else f"yolo-{len(stages) + 1}"
        config = work / f"{name}.yaml"
        config.write_text(FINETUNE_CONFIG.replace("batch: 4\nnbs: 4", "batch: 8\nnbs: 8") + f"time: {hours}\n")
        run_step(["train", *common, "--name", name, "--model", str(start), "--epochs", "200", "--config", str(config)], log)
    stages = _stages(work, "yolo")
    return max(stages, key=lambda r: best_dice(r, YOLO_DICE)) / "weights" / "best.pt"


def _train_lightning(work: Path, name: str, spec: str, config_text: str, imgsz: int, epochs: int,
                     log: list[str], yolo: Path | None = None) -> Path:
    """Fine-tune an smp/refine model on fold 0 of ``yolo`` (default: the recipe's data), resuming an
    interrupted run; returns best.pt."""
    yolo = yolo or ensure_data(work, log)
    run = work / "runs" / name / "fold0"
    common = ["--fold", "0", "--yolo", str(yolo), "--runs", str(work / "runs"), "--name", name, "--device", "cpu",
              "--threads", "1"]
    results = run / "results.csv"
    done = len(read_rows(results)) >= epochs
    if (run / "weights" / "last.pt").is_file() and not done:
        run_step(["train", *common, "--resume"], log)
    elif not done:
        config = work / f"{name}.yaml"
        config.write_text(f"# epochs: {epochs}\n" + config_text)  # the stage's length, for a later sitting
        run_step(["train", *common, "--model", spec, "--imgsz", str(imgsz), "--epochs", str(epochs),
                  "--config", str(config)], log)
    return run / "weights" / "best.pt"


def _planned_epochs(work: Path, name: str) -> int | None:
    """The epochs a Lightning stage was started with: the ``# epochs: N`` line atop its config."""
    config = work / f"{name}.yaml"
    match = re.match(r"# epochs: (\d+)", config.read_text()) if config.is_file() else None
    return int(match.group(1)) if match else None


def train_smp(work: Path, epochs: int, log: list[str], imgsz: int = SMP_IMGSZ) -> Path:
    """One sitting of the smp recipe at ``imgsz``; returns the best best.pt of its stages.

    Like the YOLO's: stages ``smp<imgsz>``, ``smp<imgsz>-2``, ... of ``epochs`` each; an
    interrupted stage is resumed, a finished one is continued by the next, from the best checkpoint
    so far (the first stage from the shipped model). The shipped model's history
    (``yolohand/weights/README.md``): 12 epochs at 128 px (run ``smp``), then ``smp256`` (6 epochs:
    the size change dropped validation Dice to 0.657, back to 0.869) and ``smp256-2`` (20 epochs)."""
    stages = _stages(work, f"smp{imgsz}")
    last = stages[-1] if stages else None
    planned = _planned_epochs(work, last.parent.name) if last is not None else None
    if last is not None and (last / "weights" / "last.pt").is_file() and \
            len(read_rows(last / "results.csv")) < (planned or epochs):
        name, start, epochs = last.parent.name, DEMO_SMP, planned or epochs  # resumed: its own start and length
    else:
        name = f"smp{imgsz}" if not stages else f"smp{imgsz}-{len(stages) + 1}"
        start = max(stages, key=lambda r: best_dice(r, SMP_DICE)) / "weights" / "best.pt" if stages else DEMO_SMP
    _train_lightning(work, name, SMP_SPEC, SMP_CONFIG + f"pretrained: {start}\n", imgsz, epochs, log)
    return max(_stages(work, f"smp{imgsz}"), key=lambda r: best_dice(r, SMP_DICE)) / "weights" / "best.pt"


def train_refiner(work: Path, epochs: int, prior_mix: float, log: list[str]) -> Path:
    """Fine-tune the refiner behind the recipe's YOLO on what that YOLO really gets wrong.

    The refiner trains on a phantom set of its own (seed 2) that the YOLO never saw, so the
    YOLO's maps of those images are out-of-sample predictions: ``priors:`` for a ``prior_mix``
    share of the crops, degraded ground truth for the rest. Its validation runs the same YOLO on
    the set's fold-0 images and gates (keeps YOLO's mask for) each bone the refiner would lower.
    The run is named after the mix and the detector's stage (``refine-mix50`` behind ``yolo``,
    ``refine-mix50-yolo-2`` behind ``yolo-2``), and so are the priors: a better YOLO stage gets a
    refiner of its own, trained on its own errors."""
    detector = train_yolo_best(work)
    stage = detector.parent.parent.parent.name if detector != DEMO_WEIGHTS else "shipped"
    tag = "" if stage == "yolo" else f"-{stage}"  # stage 1 keeps the names it was first trained under
    root, yolo, priors = work / "phantom_refine", work / "yolo_refine", work / f"priors_refine{tag}"
    if not _has(root):
        run_step(["synth", str(root), "--train-ids", str(REFINE_DATA["train_ids"]), "--test-ids", "1", "--size",
                  str(DATA["size"]), "--seed", str(REFINE_DATA["seed"]), "--workers", "1"], log)
    if not _has(yolo):
        run_step(["convert", "--root", str(root), "--out", str(yolo), "--folds", str(DATA["folds"]),
                  "--imgsz", str(DATA["imgsz"])], log)
    if not _has(priors):
        run_step(["predict", "--weights", str(detector), "--source", str(root / "train" / "DCM"), "--device", "cpu",
                  "--rle", str(work / f"priors_refine{tag}.csv"), "--save-probs", str(priors), "--force"], log)
    name = f"refine-mix{round(prior_mix * 100)}{tag}"
    text = (f"pretrained: {DEMO_REFINER}\ndetector: {detector}\npriors: {priors}\nprior_mix: {prior_mix}\n"
            "lr0: 0.001\nbatch: 16\nworkers: 0\n")
    return _train_lightning(work, name, REFINE_SPEC, text, REFINE_IMGSZ, epochs, log, yolo=yolo)


def unseen_sets(work: Path, log: list[str]) -> list[Path]:
    """The unseen phantom sets of the model cards (seed 1): 20 images at 1024 and 10 at 2048."""
    roots = []
    for size, ids in UNSEEN:
        root = work / f"unseen{size}"
        if not _has(root):
            run_step(["synth", str(root), "--train-ids", "1", "--test-ids", str(ids), "--size", str(size),
                      "--seed", str(UNSEEN_SEED), "--workers", "1"], log)
        roots.append(root)
    return roots


def card(work: Path, yolo: Path, refiner: Path, smp: Path, log: list[str]) -> dict[str, dict[str, float]]:
    """Score YOLO, YOLO + refiner, smp and their soft fusion on the unseen sets; print the table.

    Returns row -> {"<size> mDice": ..., group: ... (over both sets, image-weighted)}."""
    rows: dict[str, dict[str, float]] = {}
    for root in unseen_sets(work, log):
        out = work / "card" / root.name
        out.mkdir(parents=True, exist_ok=True)
        source = str(root / "test" / "DCM")
        plain = ["predict", "--weights", str(yolo), "--source", source, "--device", "cpu", "--force"]
        runs = {
            "YOLO": plain + ["--rle", str(out / "yolo.csv")],
            "YOLO + refiner": plain + ["--refiner", str(refiner), "--rle", str(out / "refined.csv"),
                                       "--save-probs", str(out / "probs_refined")],
            "smp": ["predict", "--weights", str(smp), "--source", source, "--device", "cpu", "--force",
                    "--rle", str(out / "smp.csv"), "--save-probs", str(out / "probs_smp")],
        }
        csvs = {}
        for label, args in runs.items():
            run_step(args, log)
            csvs[label] = Path(args[args.index("--rle") + 1])
        fused = out / "fused.csv"
        run_step(["ensemble", "--probs", str(out / "probs_refined"), "--probs", str(out / "probs_smp"),
                  "--out", str(fused), "--force"], log)
        csvs["YOLO + refiner, soft fusion with smp"] = fused
        for label, path in csvs.items():
            report = path.with_suffix(".eval.json")
            run_step(["evaluate", str(path), "--gt", str(root), "--split", "test", "--json", str(report), "--force"], log)
            result = json.loads(report.read_text())
            row = rows.setdefault(label, {})
            row[f"{root.name} mDice"] = result["mean_dice"]
            for g, v in group_means(result["per_class"]).items():
                row.setdefault(g, []).append(v)
    for row in rows.values():
        for g in REPORT_GROUPS:
            row[g] = sum(row[g]) / len(row[g])  # the two sets weigh alike
    print_card(rows)
    return rows


def print_card(rows: dict[str, dict[str, float]]) -> None:
    """The model cards' table in markdown."""
    cols = [f"unseen{s} mDice" for s, _ in UNSEEN] + list(REPORT_GROUPS)
    print("\n| model | " + " | ".join(c.replace("unseen", "").replace(" mDice", " px") for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + " |")


def install(best: Path, target: Path) -> None:
    """Put ``best`` over the shipped checkpoint ``target``: YOLO as ultralytics saved it at the end
    of training (optimizer stripped, fp16), smp/refine as fp16 weights + metadata."""
    if target == DEMO_WEIGHTS:
        shutil.copyfile(best, target)
    else:
        from yolohand.models.shared.network import export_weights

        export_weights(best, target)
    print(f"installed {best} -> {target}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=("yolo", "smp", "refine", "card"))
    ap.add_argument("--work", type=Path, default=Path("runs/recipe"), help="work folder (data, runs, card)")
    ap.add_argument("--hours", type=float, default=1.0, help="yolo: this sitting's time budget")
    ap.add_argument("--epochs", type=int, default=6, help="smp/refine: epochs of the run")
    ap.add_argument("--imgsz", type=int, default=SMP_IMGSZ, help="smp: the plane of this sitting's stage")
    ap.add_argument("--from", dest="start", type=Path, default=DEMO_WEIGHTS, help="yolo: first stage's start")
    ap.add_argument("--prior-mix", type=float, default=0.5,
                    help="refine: share of training crops on the detector's real (out-of-sample) predictions")
    ap.add_argument("--install", action="store_true", help="copy the result over the shipped checkpoint")
    args = ap.parse_args(argv)
    work, log = args.work.resolve(), []
    work.mkdir(parents=True, exist_ok=True)
    if args.model == "yolo":
        best = train_yolo(work, args.hours, args.start, log)
        print(f"best YOLO so far: {best} (validation Dice {best_dice(best.parent.parent, YOLO_DICE)[0]:.4f})")
        if args.install:
            install(best, DEMO_WEIGHTS)
    elif args.model == "smp":
        best = train_smp(work, args.epochs, log, imgsz=args.imgsz)
        if args.install:
            install(best, DEMO_SMP)
    elif args.model == "refine":
        best = train_refiner(work, args.epochs, args.prior_mix, log)
        if args.install:
            install(best, DEMO_REFINER)
    else:
        card(work, DEMO_WEIGHTS, DEMO_REFINER, DEMO_SMP, log)
    sys.stdout.flush()


def train_yolo_best(work: Path) -> Path:
    """The best YOLO of the recipe's stages so far (the refiner's detector); the shipped one without."""
    stages = _stages(work, "yolo")
    return max(stages, key=lambda r: best_dice(r, YOLO_DICE)) / "weights" / "best.pt" if stages else DEMO_WEIGHTS


if __name__ == "__main__":
    main()
