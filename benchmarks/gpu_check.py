"""`make gpu-check`: the GPU paths, timed, in at most about 8 minutes on one large GPU; one table.

    .venv/bin/python benchmarks/gpu_check.py [--out DIR] [--budget 480] [--table gpu_check.md] [--smoke]

Steps (each a row: seconds, a per-unit figure, peak GPU memory of this process, a result):

1. synth 40 IDs (30 train + 10 test, 80 images) at 2048 px;
2. convert, 2 folds, resize cache ``--imgsz 1024``;
3. train yolo11s-seg 5 epochs at 1024 on each fold (seconds per epoch, the Dice it reports);
4. predict the 20 test images at 2048 with both folds + flip TTA, fp32 and ``--half`` (s/image);
5. evaluate both CSVs (mDice);
6. with 2+ GPUs: 2 epochs with ``--device 0,1`` (DDP) and the Dice it reports (not nan);
7. the smp family (``smp:UnetPlusPlus:resnet34``, 3 epochs at 1024, then predict + evaluate) and the
   refiner (``refine:Unet:resnet18`` trained on fold 0, then predict with ``--refiner``), when those
   families are installed (a row says why one is skipped);
8. last, the smp leaderboard techniques: 1024 windows of the full 2048 images, CLAHE 2.0, the last 2
   epochs averaged, 3 epochs; predicted by sliding windows with flip and 3-scale TTA; evaluated.

A step that fails becomes a ``failed: ...`` row and the others still run; steps that would
overrun ``--budget`` seconds are skipped with a note. Exit 0 when no row failed, 1 otherwise.
Without CUDA it says so in one line and exits 2 (nothing is run); ``--smoke`` runs the same
chain at toy sizes on the CPU, to test this script where no GPU is at hand. Peak memory is torch's
``max_memory_allocated`` on GPU 0 in this process (DDP workers are other processes: "-").
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

YOLO_MODEL, SMP_MODEL, REFINE_MODEL = "yolo11s-seg.yaml", "smp:UnetPlusPlus:resnet34", "refine:Unet:resnet18"
PREDICT_BATCH = 8  # images per forward pass (x2 with TTA)


@dataclass(frozen=True)
class Sizes:
    """What the check runs; :data:`SMOKE` is the same chain at toy sizes on the CPU (tests this script)."""

    train_ids: int = 30
    test_ids: int = 10
    size: int = 2048
    imgsz: int = 1024
    epochs: int = 5
    ddp_epochs: int = 2
    smp_epochs: int = 3
    refine_epochs: int = 3
    refine_imgsz: int | None = None  # the refiner's crop size: its family default
    device: str = "0"


SMOKE = Sizes(train_ids=2, test_ids=1, size=256, imgsz=64, epochs=1, ddp_epochs=1, smp_epochs=1, refine_epochs=1,
              refine_imgsz=64, device="cpu")


@dataclass
class Row:
    """One line of the table."""

    step: str
    seconds: float | None = None
    per: str = ""
    memory: str = ""
    result: str = ""


class Check:
    """Runs steps against a time budget and collects their rows; ``z`` the sizes, ``out`` the work folder."""

    def __init__(self, budget: float, z: Sizes, out: Path) -> None:
        self.budget, self.start, self.rows, self.z = budget, time.perf_counter(), [], z
        self.cuda = z.device != "cpu"
        self.out, self.root, self.yolo, self.runs = out, out / "handbone", out / "yolo", out / "runs"

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def step(self, name: str, fn: Callable[[], tuple[str, str, object]], need: float = 0.0, memory: bool = True):
        """Run ``fn() -> (per-unit text, result text, value)``; return the value (None when skipped or failed)."""
        import torch

        if self.left() < need:
            self.skip(name, f"needs ~{need:.0f} s, {max(self.left(), 0):.0f} s of the budget left")
            return None
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(0)
        t0 = time.perf_counter()
        try:
            per, result, value = fn()
        except Exception as exc:  # noqa: BLE001 - a failed step is a row, the check goes on
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            self.rows.append(Row(name, time.perf_counter() - t0, result=f"failed: {text[:150]}"))
            return None
        if self.cuda:
            torch.cuda.synchronize()
        peak = f"{torch.cuda.max_memory_allocated(0) / 2**30:.1f} GiB" if memory and self.cuda else "-"
        self.rows.append(Row(name, time.perf_counter() - t0, per, peak, result))
        return value

    def skip(self, name: str, why: str) -> None:
        self.rows.append(Row(name, result=f"skipped: {why}"))

    def table(self, header: str) -> str:
        lines = [header, "", "| step | s | per unit | peak GPU mem | result |", "|---|---:|---|---|---|"]
        for r in self.rows:
            secs = f"{r.seconds:.1f}" if r.seconds is not None else ""
            lines.append(f"| {r.step} | {secs} | {r.per} | {r.memory} | {r.result} |")
        return "\n".join(lines)

    # ------------------------------------------------------------------------- the work of the steps
    def train(self, fold: int, model: str, epochs: int, name: str, device: str | None = None, imgsz: int | None = -1,
              **options):
        """Train one fold (``imgsz`` -1: the check's imgsz; None: the family's default); ``options``: run arguments."""
        from yolohand.models.train import train_fold

        t0 = time.perf_counter()
        r = train_fold(fold, model=model, yolo=self.yolo, runs=self.runs, name=name, epochs=epochs, force=True,
                       imgsz=self.z.imgsz if imgsz == -1 else imgsz, device=device or self.z.device, **options)
        per = _seconds_per_epoch(Path(r.run_dir) / "results.csv", time.perf_counter() - t0)
        return f"{per:.1f} s/epoch", f"Dice {r.dice:.4f} (best epoch {r.best_epoch} of {r.epochs})", r

    def predict(self, weights: list, csv_name: str, refiners=(), scales=(1.0,), **load):
        from yolohand.models.predict import Settings, predict_to_submission

        s = predict_to_submission(self.out / csv_name, source=self.root / "test" / "DCM", weights=weights,
                                  settings=Settings(tta=True, tta_scales=scales), refiners=refiners, batch=PREDICT_BATCH,
                                  device=self.z.device, force=True, progress=False, **load)
        per_image = s.seconds / max(s.n_images, 1)
        at = f" at scales {','.join(f'{v:g}' for v in scales)}" if len(scales) > 1 else ""
        return f"{per_image:.3f} s/image", f"{s.n_images} images, {len(weights)} model(s) + flip TTA{at}", self.out / csv_name

    def evaluate(self, csvs: dict[str, Path]):
        from yolohand.results.evaluate import evaluate

        scores = {name: evaluate(path, self.root, split="test", progress=False).mean for name, path in csvs.items()}
        return "", ", ".join(f"{k} mDice {v:.4f}" for k, v in scores.items()), scores


def _seconds_per_epoch(results_csv: Path, wall: float) -> float:
    """From results.csv's cumulative ``time`` column when there is one, else wall time / epochs."""
    with open(results_csv, newline="") as fh:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    if rows and rows[-1].get("time"):
        return float(rows[-1]["time"]) / len(rows)
    return wall / max(len(rows), 1)


def _data_rows(c: Check) -> bool:
    from yolohand.data.convert import convert_dataset
    from yolohand.data.synth import generate_dataset

    z, cores = c.z, os.cpu_count() or 1

    def synth():
        generate_dataset(c.root, train_ids=z.train_ids, test_ids=z.test_ids, size=z.size, seed=0, workers=cores,
                         progress=False)
        return "", f"{2 * (z.train_ids + z.test_ids)} images ({cores} workers)", True

    def convert():
        convert_dataset(c.root, c.yolo, folds=2, seed=0, imgsz=z.imgsz, workers=min(8, cores))
        return "", f"2 folds, cache {z.imgsz} px", True

    ok = c.step(f"synth {z.train_ids + z.test_ids} IDs at {z.size}", synth, memory=False)
    return bool(ok and c.step(f"convert --imgsz {z.imgsz}", convert, memory=False))


def _yolo_rows(c: Check) -> list:
    """Train both folds, predict fp32 and half, evaluate; return the fold results."""
    z, folds = c.z, []
    for k in (0, 1):
        r = c.step(f"train {YOLO_MODEL} fold {k}, {z.epochs} epochs at {z.imgsz}",
                   lambda k=k: c.train(k, YOLO_MODEL, z.epochs, "yolo11s"), need=60)
        if r is not None:
            folds.append(r)
    if len(folds) < 2:
        c.skip("predict / evaluate", "needs both folds trained")
        return folds
    weights, csvs = [r.best for r in folds], {}
    for label, load in (("fp32", {}), ("half", {"half": True})):
        if label == "half" and not c.cuda:
            c.skip("predict --half", "CPU (smoke run)")
            continue
        path = c.step(f"predict {2 * z.test_ids} images at {z.size}, 2 folds + TTA, {label}",
                      lambda load=load, label=label: c.predict(weights, f"yolo_{label}.csv", **load), need=30)
        if path is not None:
            csvs[label] = path
    if csvs:
        c.step("evaluate", lambda: c.evaluate(csvs), need=10, memory=False)
    return folds


def _ddp_row(c: Check) -> None:
    import torch

    name = f"train --device 0,1 (DDP), {c.z.ddp_epochs} epochs"
    gpus = torch.cuda.device_count() if c.cuda else 0
    if gpus < 2:
        c.skip(name, f"{gpus} GPU")
        return
    c.step(name, lambda: c.train(0, YOLO_MODEL, c.z.ddp_epochs, "ddp", device="0,1"), need=90, memory=False)


def _imports(c: Check, module: str, step: str) -> bool:
    """Whether ``module`` imports; a skipped row saying why when not."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001
        c.skip(step, f"{module} does not import ({type(exc).__name__}: {exc})")
        return False
    return True


def _technique_rows(c: Check) -> None:
    """The leaderboard techniques of the smp family (README, "Leaderboard techniques"), after every other
    row so that the budget drops them first: windows of imgsz
    cut from the full-resolution images, CLAHE 2.0, the last 2 epochs averaged; predicted by sliding
    windows (stride imgsz / 2, from the checkpoint) with flip and 3-scale TTA."""
    z = c.z
    r = c.step(f"train {SMP_MODEL} --window {z.imgsz} (full-res plane) --clahe 2.0 --swa 2, {z.smp_epochs} epochs",
               lambda: c.train(0, SMP_MODEL, z.smp_epochs, "smp_win", imgsz=None, window=z.imgsz, clahe="2.0",
                               swa_epochs=min(2, z.smp_epochs)), need=90)
    path = c.step("predict windowed smp + TTA 0.8,1,1.25", need=60,
                  fn=lambda: c.predict([r.best], "smp_win.csv", scales=(0.8, 1.0, 1.25))) if r else None
    if path is not None:
        c.step("evaluate windowed smp", lambda: c.evaluate({"smp windowed": path}), need=10, memory=False)


def _family_rows(c: Check, folds: list) -> None:
    """smp and the refiner, when their packages import."""
    z = c.z
    if _imports(c, "yolohand.models.smp.train", f"train {SMP_MODEL}"):
        r = c.step(f"train {SMP_MODEL} fold 0, {z.smp_epochs} epochs at {z.imgsz}",
                   lambda: c.train(0, SMP_MODEL, z.smp_epochs, "smp"), need=60)
        path = c.step("predict smp + TTA", lambda: c.predict([r.best], "smp.csv"), need=30) if r else None
        if path is not None:
            c.step("evaluate smp", lambda: c.evaluate({"smp": path}), need=10, memory=False)
    if not _imports(c, "yolohand.models.refine.train", f"train {REFINE_MODEL}"):
        return
    crop = f"crop {z.refine_imgsz}" if z.refine_imgsz else "its default crop size"
    r = c.step(f"train {REFINE_MODEL} fold 0, {z.refine_epochs} epochs ({crop})",
               lambda: c.train(0, REFINE_MODEL, z.refine_epochs, "refine", imgsz=z.refine_imgsz), need=60)
    if r is None or len(folds) < 2:
        return
    path = c.step("predict 2 folds + TTA --refiner", need=40,
                  fn=lambda: c.predict([f.best for f in folds], "refined.csv", refiners=[r.best]))
    if path is not None:
        c.step("evaluate refined", lambda: c.evaluate({"refined": path}), need=10, memory=False)


def _header(cuda: bool) -> str:
    import torch
    import ultralytics

    if cuda:
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        where = f"{torch.cuda.device_count()} x {', '.join(names)}"
    else:
        where = "CPU smoke run (toy sizes, not a measurement)"
    return (f"yolohand gpu-check, {datetime.date.today().isoformat()}: {where}; "
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), ultralytics {ultralytics.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--table", type=Path, default=None, help="also write the table (markdown) here")
    ap.add_argument("--smoke", action="store_true", help="the same chain at toy sizes on the CPU (tests this script)")
    args = ap.parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing was run")
        return 2
    with tempfile.TemporaryDirectory(prefix="yolohand-gpu-check-") as tmp:
        c = Check(args.budget, SMOKE if args.smoke else Sizes(), (args.out or Path(tmp)).resolve())
        if _data_rows(c):
            folds = _yolo_rows(c)
            _ddp_row(c)
            _family_rows(c, folds)
            if importlib.util.find_spec("segmentation_models_pytorch") is not None:
                _technique_rows(c)  # last: within what the budget leaves
        table = c.table(_header(c.cuda)) + f"\n\ntotal {time.perf_counter() - c.start:.0f} s"
    print("\n" + table)
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table + "\n")
    return 1 if any(r.result.startswith("failed") for r in c.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
