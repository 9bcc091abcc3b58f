"""The leaderboard techniques measured on the phantom: each one against the same run without it.

Every number comes from the CLI a user types (``yolohand predict / evaluate --json / thresholds /
pick / ensemble``), each command in its own subprocess under ``/usr/bin/time -v`` (wall time and
peak RSS of that command alone). Quality is scored on **unseen** phantom images (the recipe's
``unseen1024``: 20 test images at 1024 px, seed 1, never seen by any model); the two runs of a row
are compared image by image (:func:`yolohand.results.paired.paired_delta`: mean delta of per-image
mDice and its 95 % paired-bootstrap interval over the 20 images). Verdict: ``gain``/``loss`` when
the interval excludes 0, else ``noise``; a training technique whose delta is no larger than the
seed repeat's (the same fine-tune with another seed) is noise too.

Rows:

a. YOLO ``--tta-scales 0.8,1,1.25`` and ``--tta`` (flip) vs the plain prediction;
b. smp ``--tta-scales 0.8,1,1.25`` vs plain;
c. per-class thresholds: ``yolohand thresholds`` fitted on the fold-0 validation maps (the 24
   validation images of the recipe's data at full resolution, which the fold-0 models did not
   train on), applied by ``predict --thresholds`` on the unseen set, vs 0.5 (YOLO and smp);
d. class-wise fusion: ``yolohand pick`` on the validation maps of YOLO + refiner and smp, then
   ``ensemble --fusion`` on the unseen maps, vs the plain soft vote of the same two (and, for the
   record, the refiner: YOLO + refiner vs YOLO);
e. smp training techniques (``runs/tech``: the same 6-epoch fine-tune of the recipe's smp with
   ``--clahe 2.0``, ``--gamma 0.7,1.4``, ``--swa 3``, and with another seed: the noise row) vs
   ``smp-base``; time and memory of the training from its ``/usr/bin/time -v`` log;
f. robustness to a new look: the unseen set with looks outside the phantom's range (gamma 0.5 and
   2.0, a dark exposure x0.6, a compressed window 0.3 + 0.5 x; same labels, under
   ``runs/tech/looks``), predicted by smp-base and smp-clahe: mDice per look, the drop from the
   original look, and CLAHE's drop against the base's (paired).

Resumable: each step leaves a stamp (command, fingerprints of its input files, time, memory);
a step whose stamp matches and whose outputs exist is not run again. Checkpoints still being
trained are snapshotted at the start of a pass (``<out>/ckpt``), so both sides of a row use the
same weights; a training of ``runs/tech`` counts once its log holds ``Exit status``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/techniques.py [--rows abcdef] [--out runs/tech/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yolohand.recipes.shipped import UNSEEN_SEED  # noqa: E402
from yolohand.results.paired import load_per_image, paired_delta, verdict  # noqa: E402

SCALES = "0.8,1,1.25"
TECH = ("base", "base-seed1", "clahe", "gamma", "swa")
TECH_LABEL = {"base-seed1": ", seed 1 instead of 0 (**the noise row**: the same training repeated)",
              "clahe": " `--clahe 2.0`", "gamma": " `--gamma 0.7,1.4`", "swa": " `--swa 3`"}
LOOKS = {  # name -> (label, function of x in [0, 1])
    "gamma0.5": ("gamma 0.5", lambda x: x ** 0.5),
    "gamma2.0": ("gamma 2.0", lambda x: x ** 2.0),
    "dark0.6": ("dark x0.6", lambda x: 0.6 * x),
    "window": ("window 0.3+0.5x", lambda x: 0.3 + 0.5 * x),
}
LOOK_MODELS = ("base", "clahe")


def _yolohand() -> list[str]:
    exe = Path(sys.executable).parent / "yolohand"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "yolohand"]


def _fingerprint(path: Path) -> list:
    """Size and mtime of a file; count, total size and newest mtime of a folder's files."""
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    files = [p.stat() for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return [len(files), sum(s.st_size for s in files), max((s.st_mtime_ns for s in files), default=0)]


def _cpu_seconds(text: str) -> float | None:
    """User + system CPU seconds from ``/usr/bin/time -v`` output."""
    parts = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
    return sum(map(float, parts)) if len(parts) == 2 else None


def _parse_time_v(text: str) -> tuple[float | None, float | None, int | None]:
    """(wall seconds, peak RSS MiB, exit status) from ``/usr/bin/time -v`` output."""
    wall = rss = status = None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(m.group(1).split(":"))))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        rss = int(m.group(1)) / 1024
    m = re.search(r"Exit status: (\d+)", text)
    if m:
        status = int(m.group(1))
    return wall, rss, status


@dataclass
class Bench:
    out: Path
    force: bool = False
    log: list[str] = field(default_factory=list)   # commands run this pass (as typed)
    failed: dict[str, str] = field(default_factory=dict)

    def step(self, name: str, args: list[str], outputs: list[Path], inputs: list[Path],
             images: int | None = None) -> dict | None:
        """Run ``yolohand <args>`` unless its stamp matches; the stamp (time, memory) or None on failure."""
        stamp_path = self.out / "stamps" / f"{name}.json"
        fp = {str(p): _fingerprint(p) for p in inputs}
        if stamp_path.is_file() and not self.force:
            stamp = json.loads(stamp_path.read_text())
            if stamp["args"] == args and stamp["inputs"] == fp and all(p.exists() for p in outputs):
                if stamp.get("cpu_seconds") is None and Path(stamp["log"]).is_file():
                    stamp["cpu_seconds"] = _cpu_seconds(Path(stamp["log"]).read_text(errors="replace"))
                return stamp
        missing = [str(p) for p in inputs if not p.exists()]
        if missing:
            self.failed[name] = f"missing input {missing[0]}"
            return None
        for p in outputs:  # a stale output goes; the command then writes it anew
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        logf = self.out / "logs" / f"{name}.log"
        logf.parent.mkdir(parents=True, exist_ok=True)
        shown = "yolohand " + " ".join(shlex.quote(_rel(a)) for a in args)
        print(f"$ {shown}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.perf_counter()
        with open(logf, "w") as fh:
            rc = subprocess.run(["/usr/bin/time", "-v", *_yolohand(), *args], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env).returncode
        seconds = time.perf_counter() - t0
        text = logf.read_text(errors="replace")
        wall, rss, _ = _parse_time_v(text)
        if rc != 0:
            tail = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("\t")][-1:]
            self.failed[name] = f"exit {rc}: {tail[0][:200] if tail else ''} (log {logf})"
            print(f"  failed: {self.failed[name]}", flush=True)
            return None
        stamp = {"args": args, "inputs": fp, "command": shown, "seconds": wall or seconds,
                 "cpu_seconds": _cpu_seconds(text), "rss_mib": rss, "images": images, "log": str(logf)}
        stamp_path.parent.mkdir(parents=True, exist_ok=True)
        stamp_path.write_text(json.dumps(stamp, indent=1))
        print(f"  {stamp['seconds']:.1f} s ({stamp['cpu_seconds']:.1f} s CPU), peak RSS {rss:.0f} MiB", flush=True)
        return stamp


def _rel(arg: str) -> str:
    here = str(ROOT) + "/"
    return arg.replace(here, "")


def snapshot(src: Path, dst: Path) -> Path:
    """A copy of ``src`` made once per version of it (a training may rewrite ``src`` meanwhile)."""
    meta = dst.with_suffix(".src.json")
    want = {"src": str(src), "fp": _fingerprint(src)}
    if dst.is_file() and meta.is_file() and json.loads(meta.read_text()) == want:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        before = _fingerprint(src)
        shutil.copyfile(src, dst.with_suffix(".tmp"))
        if _fingerprint(src) == before:
            break
        time.sleep(10)
    os.replace(dst.with_suffix(".tmp"), dst)
    meta.write_text(json.dumps({"src": str(src), "fp": before}))
    return dst


# ----------------------------------------------------------------------------- data


def ensure_unseen(work: Path) -> Path:
    """The recipe's unseen set at 1024 (the command ``yolohand.recipes.shipped.unseen_sets`` runs)."""
    root = work / "unseen1024"
    if not (root / "test" / "DCM").is_dir():
        subprocess.run([*_yolohand(), "synth", str(root), "--train-ids", "1", "--test-ids", "10", "--size", "1024",
                        "--seed", str(UNSEEN_SEED), "--workers", "1"], check=True, cwd=ROOT)
    return root


def val_list(work: Path, out: Path) -> tuple[Path, int]:
    """Fold 0's validation images at full resolution (the phantom's 1024 PNGs, same ID/name)."""
    lines = (work / "yolo512" / "folds" / "fold0_val.txt").read_text().split()
    phantom = work / "phantom" / "train" / "DCM"
    paths = [phantom / Path(p).parent.name / Path(p).name for p in lines]
    for p in paths:
        if not p.is_file():
            raise SystemExit(f"{p}: fold 0 validation image missing from the phantom")
    target = out / "fold0_val_1024.txt"
    text = "".join(f"{p}\n" for p in paths)
    if not target.is_file() or target.read_text() != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return target, len(paths)


def make_look(unseen: Path, looks: Path, name: str) -> Path:
    """``unseen``'s test split with every PNG passed through LOOKS[name] (labels copied); made once."""
    import cv2

    root = looks / name
    if (root / "done").is_file():
        return root
    tmp = looks / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    fn = LOOKS[name][1]
    lut = np.clip(np.rint(255 * fn(np.arange(256) / 255.0)), 0, 255).astype(np.uint8)
    src = unseen / "test" / "DCM"
    for png in sorted(src.rglob("*.png")):
        img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if img.dtype != np.uint8:
            raise SystemExit(f"{png}: expected 8-bit PNGs")
        dst = tmp / "test" / "DCM" / png.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), cv2.LUT(img, lut))
    shutil.copytree(unseen / "test" / "outputs_json", tmp / "test" / "outputs_json")
    (tmp / "done").write_text(f"{LOOKS[name][0]} of {unseen}\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def training_log(tech: Path, name: str) -> dict | None:
    """Wall and CPU seconds and peak RSS of a finished training (``runs/tech/<name>.log``), else None."""
    log = tech / f"{name}.log"
    if not log.is_file():
        return None
    text = log.read_text(errors="replace")
    wall, rss, status = _parse_time_v(text)
    return {"seconds": wall, "cpu_seconds": _cpu_seconds(text), "rss_mib": rss} if status == 0 else None


# ----------------------------------------------------------------------------- rows


@dataclass
class Row:
    label: str
    base: str | None          # evaluate JSON step names (None: pending)
    other: str | None
    time: str = ""
    rss: str = ""
    note: str = ""
    group: str = ""


def _per_image(out: Path, step: str) -> dict | None:
    path = out / "eval" / f"{step}.json"
    return load_per_image(path) if path.is_file() else None


def _fmt_time(base: dict | None, other: dict | None) -> tuple[str, str]:
    def t(s):
        return f"{s['cpu_seconds'] / s['images']:.2f}" if s and s.get("images") and s.get("cpu_seconds") else "?"

    def m(s):
        return f"{s['rss_mib'] / 1024:.2f}" if s and s.get("rss_mib") else "?"

    return f"{t(base)} → {t(other)} s", f"{m(base)} → {m(other)} GiB"


def run(args: argparse.Namespace) -> None:
    out, work, tech = args.out.resolve(), args.work.resolve(), args.tech.resolve()
    bench = Bench(out, force=args.force)
    unseen = ensure_unseen(work)
    source = str(unseen / "test" / "DCM")
    n_unseen = len(list((unseen / "test" / "DCM").rglob("*.png")))
    val, n_val = val_list(work, out)
    phantom = str(work / "phantom")
    stamps: dict[str, dict | None] = {}
    rows: list[Row] = []

    refiner = args.refiner or (work / "runs" / "refine-mix50" / "fold0" / "weights" / "best.pt")
    if not refiner.is_file():
        refiner = ROOT / "yolohand" / "weights" / "yolohand-synth-refine.pt"
    ck = {}
    for label, path in (("yolo", args.yolo), ("smp", args.smp), ("refiner", refiner)):
        ck[label] = snapshot(path.resolve(), out / "ckpt" / f"{label}.pt") if path.is_file() else path

    def predict(name, weights, src, images, extra=(), maps=False, inputs=()):
        csv = out / "pred" / f"{name}.csv"
        outs = [csv]
        cmd = ["predict", "--weights", str(weights), "--source", str(src), "--device", "cpu", "--rle", str(csv),
               "--force", *extra]
        if maps:
            outs.append(out / "maps" / name)
            cmd += ["--save-probs", str(out / "maps" / name)]
        stamps[name] = bench.step(name, cmd, outs, [Path(weights), *inputs], images=images)
        return csv

    def evaluate(name, pred, gt, split="test"):
        """evaluate --json of a prediction (CSV or maps); its JSON lands in <out>/eval/<name>.json."""
        js = out / "eval" / f"{name}.json"
        js.parent.mkdir(parents=True, exist_ok=True)
        if not Path(pred).exists():
            return None
        bench.step(f"eval-{name}", ["evaluate", str(pred), "--gt", str(gt), "--split", split, "--json", str(js),
                                    "--force"], [js], [Path(pred)])
        return name if js.is_file() else None

    def pred_eval(name, weights, extra=(), maps=False, inputs=()):
        csv = predict(name, weights, source, n_unseen, extra, maps, inputs)
        if not stamps.get(name):  # failed: no score of an older prediction may stand in for it
            (out / "eval" / f"{name}.json").unlink(missing_ok=True)
            return None
        return evaluate(name, csv, unseen)

    rowset = set(args.rows)
    if rowset & set("abcd"):
        yolo_plain = pred_eval("yolo", ck["yolo"])
    if rowset & set("bcd"):
        smp_plain = pred_eval("smp", ck["smp"])
    if "a" in rowset:
        e = pred_eval("yolo-ms", ck["yolo"], ["--tta-scales", SCALES])
        rows.append(Row(f"YOLO `--tta-scales {SCALES}`", yolo_plain, e, *_fmt_time(stamps["yolo"], stamps["yolo-ms"]),
                        group="a"))
        e = pred_eval("yolo-flip", ck["yolo"], ["--tta"])
        rows.append(Row("YOLO `--tta` (flip)", yolo_plain, e, *_fmt_time(stamps["yolo"], stamps["yolo-flip"]),
                        group="a"))
    if "b" in rowset:
        e = pred_eval("smp-ms", ck["smp"], ["--tta-scales", SCALES])
        rows.append(Row(f"smp `--tta-scales {SCALES}`", smp_plain, e, *_fmt_time(stamps["smp"], stamps["smp-ms"]),
                        group="b"))
    if rowset & set("cd"):  # validation maps (fold 0's 24 images at full resolution)
        for fam in ("yolo", "smp"):
            predict(f"val-{fam}", ck[fam], val, n_val, maps=True)
    if "c" in rowset:
        for fam, base in (("yolo", yolo_plain), ("smp", smp_plain)):
            thr = out / f"thresholds-{fam}.json"
            fit = bench.step(f"thr-{fam}", ["thresholds", "--probs", str(out / "maps" / f"val-{fam}"), "--gt", phantom,
                                            "--split", "train", "-o", str(thr), "--force"], [thr],
                             [out / "maps" / f"val-{fam}"], images=n_val)
            e = pred_eval(f"{fam}-thr", ck[fam], ["--thresholds", str(thr)], inputs=[thr]) if fit else None
            moved = _log_line(fit, r"(\d+ of 29 classes moved off 0\.5)")
            heldout = _log_line(fit, r"(mDice [\d.]+ -> [\d.]+ in-sample, held-out gain [+-][\d.]+)")
            note = f"fit on {n_val} validation maps in {fit['seconds']:.0f} s: {moved}, {heldout}" if fit else ""
            rows.append(Row(f"{'YOLO' if fam == 'yolo' else 'smp'} per-class thresholds (`thresholds` → "
                            "`predict --thresholds`)", base, e,
                            *_fmt_time(stamps[fam], stamps.get(f"{fam}-thr")), note=note, group="c"))
    if "d" in rowset:
        refine = ["--refiner", str(ck["refiner"])]
        predict("val-yolo-refined", ck["yolo"], val, n_val, refine, maps=True, inputs=[ck["refiner"]])
        predict("smp-maps", ck["smp"], source, n_unseen, maps=True)
        predict("yolo-maps", ck["yolo"], source, n_unseen, maps=True)
        refined = pred_eval("yolo-refined", ck["yolo"], refine, maps=True, inputs=[ck["refiner"]])
        rows.append(Row(f"refiner behind YOLO (`--refiner` {_rel(str(refiner))}), for the record", yolo_plain, refined,
                        *_fmt_time(stamps.get("yolo-maps"), stamps.get("yolo-refined")),
                        note="for the record: the YOLO+refiner fusion's first source against the plain YOLO "
                             "(time and memory: both writing maps)", group="d"))
        for tag, first, label in (("-plain", "yolo", "YOLO"), ("", "yolo-refined", "YOLO+refiner")):
            val_maps = [out / "maps" / f"val-{first}", out / "maps" / "val-smp"]
            fusion = out / f"fusion{tag}.yaml"
            fit = bench.step(f"pick{tag}", ["pick", "--probs", str(val_maps[0]), "--probs", str(val_maps[1]), "--gt",
                                            phantom, "--split", "train", "-o", str(fusion), "--force"], [fusion],
                             val_maps, images=n_val)
            srcs = [out / "maps" / ("yolo-maps" if first == "yolo" else first), out / "maps" / "smp-maps"]
            maps = ["--probs", str(srcs[0]), "--probs", str(srcs[1])]
            soft, fused = out / "pred" / f"soft{tag}.csv", out / "pred" / f"fused{tag}.csv"
            stamps[f"soft{tag}"] = bench.step(f"soft{tag}", ["ensemble", *maps, "-o", str(soft), "--force"], [soft],
                                              srcs, images=n_unseen)
            stamps[f"fused{tag}"] = bench.step(f"fused{tag}", ["ensemble", "--fusion", str(fusion), *maps, "-o",
                                                               str(fused), "--force"], [fused], [fusion, *srcs],
                                               images=n_unseen) if fit else None
            b = evaluate(f"soft{tag}", soft, unseen) if stamps[f"soft{tag}"] else None
            e = evaluate(f"fused{tag}", fused, unseen) if stamps[f"fused{tag}"] else None
            picked = _log_line(fit, r"(\d+ of 29 classes picked from another source)")
            insample = _log_line(fit, r"(mDice [\d.]+ -> [\d.]+ in-sample, [\d.]+ -> [\d.]+ held-out)")
            note = (f"{label} & smp, picked on {n_val} validation maps in {fit['seconds']:.0f} s: {picked}, {insample}"
                    if fit else "")
            rows.append(Row(f"class-wise fusion (`pick` → `ensemble --fusion`) vs soft vote, {label} & smp", b, e,
                            *_fmt_time(stamps[f"soft{tag}"], stamps[f"fused{tag}"]), note=note, group="d"))
        single = "yolo-refined" if _per_image(out, "yolo-refined") else None
        fused_ok = "fused" if _per_image(out, "fused") else None
        parts = [stamps.get(k) for k in ("yolo-refined", "smp-maps", "fused")]
        t = r = ""
        if all(p and p.get("cpu_seconds") and p.get("rss_mib") for p in parts):
            cpu = [p["cpu_seconds"] / p["images"] for p in parts]
            t = f"{cpu[0]:.2f} → {sum(cpu):.2f} s"
            r = f"{parts[0]['rss_mib'] / 1024:.2f} → {max(p['rss_mib'] for p in parts) / 1024:.2f} GiB"
        rows.append(Row("class-wise fusion, YOLO+refiner & smp, vs YOLO+refiner alone (its best source)",
                        single, fused_ok, t, r, group="d",
                        note="time: the whole pipeline (YOLO+refiner maps, smp maps, ensemble) vs YOLO+refiner maps"))
    if rowset & set("ef"):
        done = {}
        for name in TECH:
            trained = training_log(tech, name)
            ckpt = tech / f"smp-{name}" / "fold0" / "weights" / "best.pt"
            done[name] = bool(trained) and ckpt.is_file()
            stamps[f"train-{name}"] = trained
            if done[name]:
                pred_eval(f"tech-{name}", ckpt)
    if "e" in rowset:
        for name in TECH[1:]:
            tb, tw = stamps["train-base"], stamps[f"train-{name}"]
            t = (f"train {tb['cpu_seconds'] / 60:.1f} → {tw['cpu_seconds'] / 60:.1f} CPU min" if tb and tw else "training")
            r = (f"{tb['rss_mib'] / 1024:.2f} → {tw['rss_mib'] / 1024:.2f} GiB" if tb and tw else "")
            base = "tech-base" if _per_image(out, "tech-base") else None
            other = f"tech-{name}" if _per_image(out, f"tech-{name}") else None
            rows.append(Row(f"smp training{TECH_LABEL[name]}", base, other, t, r, group="e"))
    if "f" in rowset:
        looks = tech / "looks"
        for look in LOOKS:
            root = make_look(unseen, looks, look)
            for name in LOOK_MODELS:
                ckpt = tech / f"smp-{name}" / "fold0" / "weights" / "best.pt"
                if not done.get(name):
                    continue
                step = f"look-{look}-{name}"
                csv = predict(step, ckpt, root / "test" / "DCM", n_unseen)
                if stamps.get(step):
                    evaluate(step, csv, root)
    table = format_table(out, rows)
    print("\n" + table)
    looks_md = format_looks(out) if "f" in rowset else ""
    if looks_md:
        print("\n" + looks_md)
    (out / "table.md").write_text(table + ("\n\n" + looks_md if looks_md else "") + "\n")
    if bench.failed:
        print("\nnot measured this pass:")
        for k, v in bench.failed.items():
            print(f"  {k}: {v}")


def _log_line(stamp: dict | None, pattern: str) -> str:
    if not stamp:
        return ""
    m = re.search(pattern, Path(stamp["log"]).read_text(errors="replace"))
    return m.group(1) if m else ""


def format_table(out: Path, rows: list[Row]) -> str:
    seed = None
    noise_row = next((r for r in rows if r.label.startswith("smp training, seed")), None)
    if noise_row and noise_row.base and noise_row.other:
        seed = paired_delta(_per_image(out, noise_row.base), _per_image(out, noise_row.other))
    lines = ["| row | technique | baseline mDice | with it | delta | 95 % interval | verdict | CPU s per image | "
             "peak RSS |", "|---|---|---:|---:|---:|---|---|---|---|"]
    notes = []
    for r in rows:
        b = _per_image(out, r.base) if r.base else None
        o = _per_image(out, r.other) if r.other else None
        if b is None or o is None:
            known = f"{paired_delta(b, b).base:.4f}" if b else ""
            lines.append(f"| {r.group} | {r.label} | {known} | | | | pending | {r.time} | {r.rss} |")
            continue
        d = paired_delta(b, o)
        v = d.verdict
        if r.group == "e" and seed is not None and r is not noise_row and v != "noise" and abs(d.delta) <= abs(seed.delta):
            v = "noise (within the seed repeat)"
        lines.append(f"| {r.group} | {r.label} | {d.base:.4f} | {d.other:.4f} | {d.delta:+.4f} | "
                     f"[{d.low:+.4f}, {d.high:+.4f}] | {v} | {r.time} | {r.rss} |")
        if r.note:
            notes.append(f"- {r.group}, {r.label.split(' (')[0]}: {r.note}")
    return "\n".join(lines + ([""] + notes if notes else []))


def format_looks(out: Path) -> str:
    """mDice per look and model, the drop from the original look, and CLAHE's drop vs the base's."""
    head = ["| model | original | " + " | ".join(LOOKS[k][0] for k in LOOKS) + " |",
            "|---|---:|" + "---:|" * len(LOOKS)]
    lines = list(head)
    drops: dict[str, dict[str, dict]] = {}
    for name in LOOK_MODELS:
        orig = _per_image(out, f"tech-{name}")
        if orig is None:
            continue
        cells = [f"{paired_delta(orig, orig).base:.4f}"]
        for look in LOOKS:
            per = _per_image(out, f"look-{look}-{name}")
            if per is None:
                cells.append("pending")
                continue
            d = paired_delta(orig, per)
            cells.append(f"{d.other:.4f} ({d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}])")
            drops.setdefault(look, {})[name] = {k: list(np.asarray(per[k]) - np.asarray(orig[k])) for k in orig}
        lines.append(f"| smp-{name} | " + " | ".join(cells) + " |")
    if len(lines) == len(head):
        return ""
    cells = []
    for look in LOOKS:
        pair = drops.get(look, {})
        if len(pair) < 2:
            cells.append("pending")
            continue
        d = paired_delta(pair["base"], pair["clahe"])
        cells.append(f"{d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}] {verdict(d.low, d.high)}")
    lines.append("| CLAHE's change minus base's (+: CLAHE loses less) | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "recipe", help="the recipe's folder")
    ap.add_argument("--tech", type=Path, default=ROOT / "runs" / "tech", help="the technique trainings' folder")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tech" / "bench", help="outputs, stamps, logs")
    ap.add_argument("--yolo", type=Path, default=ROOT / "runs/recipe/runs/yolo/fold0/weights/best.pt")
    ap.add_argument("--smp", type=Path, default=ROOT / "runs/recipe/runs/smp/fold0/weights/best.pt")
    ap.add_argument("--refiner", type=Path, default=None,
                    help="default: runs/recipe/runs/refine-mix50/fold0/weights/best.pt, else the shipped refiner")
    ap.add_argument("--rows", default="abcdef", help="which rows (letters a-f)")
    ap.add_argument("--force", action="store_true", help="run every step again")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
