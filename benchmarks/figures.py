"""The README's pictures, made again from the library and from run outputs (docs/img/*.png).

    python benchmarks/figures.py phantom [--seed 11] [--size 1024]
    python benchmarks/figures.py prediction [--weights W [W ...]] [--refiner R | --no-refiner] [--size 1024] [--seed 11]
    python benchmarks/figures.py dice-chart EVAL.json [EVAL.json ...] [--labels a,b,...]
    python benchmarks/figures.py curve RESULTS.csv [RESULTS.csv ...] [--labels a,b,...]

Each subcommand writes one PNG (``--out``, default ``docs/img/<name>.png`` in the repository):

* ``phantom`` -> ``phantom_before_after.png``: one seed rendered by the issue-19 phantom
  (``--style xray19``) and by version 2 (``--style xray``), side by side, each with a zoom on
  the wrist (the carpals' box, marked on the full image).
* ``prediction`` -> ``prediction.png``: an unseen phantom image (``yolohand synth`` with
  ``--seed``; pick a seed the weights were not trained on), its ground truth and the model's
  prediction, drawn by ``yolohand show``'s code (yolohand.viz.draw), cropped to the hand.
* ``dice-chart`` -> ``demo_dice.png``: per-class Dice of ``yolohand evaluate --json`` files as
  horizontal grouped bars, one colour per file, mDice in the legend.
* ``curve`` -> ``training_curve.png``: validation Dice per epoch (``metrics/dice(M)``, written
  by every family) of training ``results.csv`` files (or run folders holding one).

Every PNG is written with PNG compression 9 and downscaled until it is at most ``--max-kb``
(300 KB). Charts use matplotlib's Agg backend and its bundled DejaVu Sans font; nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMG_DIR = REPO / "docs" / "img"
MAX_KB = 300
NAMES = {"phantom": "phantom_before_after.png", "prediction": "prediction.png", "dice-chart": "demo_dice.png",
         "curve": "training_curve.png"}
STYLE_LABELS = {"xray19": "xray19 (issue 19)", "xray": "xray (version 2)"}


# --------------------------------------------------------------------------- output


def save_png(image: np.ndarray, path: Path, max_kb: int = MAX_KB) -> tuple[int, int, int]:
    """Write a uint8 grey (H, W) or RGB (H, W, 3) image as PNG (compression 9), downscaled
    (INTER_AREA) until the file is at most ``max_kb`` KB. Returns (width, height, bytes)."""
    img = np.ascontiguousarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9]
    while True:
        ok, buf = cv2.imencode(".png", img, params)
        if not ok:
            raise SystemExit(f"error: cannot encode a PNG of shape {img.shape}")
        if buf.size <= max_kb * 1000 or min(img.shape[:2]) < 64:
            break
        scale = math.sqrt(max_kb * 1000 / buf.size) * 0.97
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    h, w = img.shape[:2]
    print(f"wrote {path} ({w}x{h} px, {buf.size / 1000:.0f} KB)")
    return w, h, int(buf.size)


def fit_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` resized to ``width`` px wide (aspect kept; INTER_AREA down, INTER_CUBIC up)."""
    h, w = image.shape[:2]
    if w == width:
        return image
    inter = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=inter)


def figure_rgb(fig, title: str = "") -> np.ndarray:
    """A matplotlib figure (Agg), titled and laid out, as uint8 RGB (H, W, 3); the figure is closed."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[:, :, :3])
    plt.close(fig)
    return rgb


def pyplot():
    """matplotlib.pyplot on the Agg backend with its bundled DejaVu Sans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 10, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def split_labels(text: str | None, paths: Sequence[Path], default) -> list[str]:
    """``--labels a,b,...`` (one per path) or ``default(path)`` each."""
    if text is None:
        return [default(p) for p in paths]
    labels = [s.strip() for s in text.split(",")]
    if len(labels) != len(paths):
        raise SystemExit(f"error: --labels has {len(labels)} name(s) for {len(paths)} file(s)")
    return labels


# --------------------------------------------------------------------------- phantom


def wrist_box(polygons: dict[str, np.ndarray], size: int, pad: float = 0.5) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) around the 8 carpals, ``pad`` of their extent wider, in the image."""
    from yolohand.core.classes import CARPALS

    pts = np.concatenate([polygons[name] for name in CARPALS])
    (xa, ya), (xb, yb) = pts.min(0), pts.max(0)
    side = min(size, int(max(xb - xa, yb - ya) * (1 + 2 * pad)))
    cx, cy = (xa + xb) // 2, (ya + yb) // 2
    x0 = int(np.clip(cx - side // 2, 0, size - side))
    y0 = int(np.clip(cy - side // 2, 0, size - side))
    return x0, y0, x0 + side, y0 + side


def header(text: str, width: int, row: int) -> np.ndarray:
    """RGB strip ``row`` px tall and ``width`` wide: ``text`` centred, light on the panel grey."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = row * 0.5 / cv2.getTextSize("Hg", font, 1.0, 1)[0][1]
    thick = max(1, round(scale * 1.5))
    strip = np.full((row, width, 3), 24, np.uint8)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    if tw > width - row // 2:  # too long: a smaller font
        scale *= (width - row // 2) / tw
        thick = max(1, round(scale * 1.5))
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    cv2.putText(strip, text, ((width - tw) // 2, (row + th) // 2), font, scale, (235, 235, 235), thick, cv2.LINE_AA)
    return strip


def phantom_figure(seed: int, size: int, tile: int, pad: float) -> np.ndarray:
    """Grey: a header, then the full image above its wrist zoom, for xray19 | xray."""
    from yolohand.data.phantom import xray_hand
    from yolohand.data.synth import ImageJob
    from yolohand.viz.draw import label

    gap = max(4, tile // 64)
    columns = []
    for style, name in STYLE_LABELS.items():
        shot = xray_hand(ImageJob("", "", "ID001", "image.png", size, (seed,), (seed,), False, False, style=style))
        x0, y0, x1, y1 = wrist_box(shot.polygons, size, pad)
        full = cv2.cvtColor(fit_width(shot.image, tile), cv2.COLOR_GRAY2RGB)
        k = tile / size
        cv2.rectangle(full, (round(x0 * k), round(y0 * k)), (round(x1 * k) - 1, round(y1 * k) - 1), (235, 235, 235),
                      max(1, tile // 256), cv2.LINE_AA)
        zoom = cv2.cvtColor(fit_width(shot.image[y0:y1, x0:x1], tile), cv2.COLOR_GRAY2RGB)
        label(zoom, "wrist zoom")
        spacer = np.full((gap, tile, 3), 255, np.uint8)
        columns.append(np.concatenate([header(name, tile, tile // 12), full, spacer, zoom], axis=0))
    spacer = np.full((columns[0].shape[0], gap, 3), 255, np.uint8)
    rgb = np.concatenate([columns[0], spacer, columns[1]], axis=1)
    return rgb[:, :, 0].copy()  # every colour drawn is grey: one channel keeps the PNG small


# --------------------------------------------------------------------------- prediction


def shifted(layers, dy: int, dx: int):
    """Layers (MaskCrop or None) moved by (-dy, -dx): the same masks in a crop at (dy, dx)."""
    from yolohand.viz.draw import MaskCrop

    return [None if m is None else MaskCrop(m.mask, m.y0 - dy, m.x0 - dx) for m in layers]


def hand_box(layers, h: int, w: int, margin: float) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) around every layer, ``margin`` of the image side wider, in the image."""
    boxes = [(m.y0, m.x0, m.y0 + m.mask.shape[0], m.x0 + m.mask.shape[1]) for m in layers if m is not None]
    if not boxes:
        return 0, 0, h, w
    pad = round(margin * max(h, w))
    y0, x0 = min(b[0] for b in boxes) - pad, min(b[1] for b in boxes) - pad
    y1, x1 = max(b[2] for b in boxes) + pad, max(b[3] for b in boxes) + pad
    return max(0, y0), max(0, x0), min(h, y1), min(w, x1)


def prediction_figure(args: argparse.Namespace) -> np.ndarray:
    """RGB: the X-ray | ground truth | prediction, cropped to the hand, then the class legend."""
    from yolohand.data.layout import find_split, read_annotation, read_image
    from yolohand.data.synth import generate_dataset
    from yolohand.defaults import DEMO_REFINER, DEMO_WEIGHTS
    from yolohand.models.predict import predict_to_submission
    from yolohand.results.evaluate import evaluate
    from yolohand.viz.draw import draw_layers, layers_from_annotation, layers_from_runs, legend_panel, prediction_runs

    demo = args.weights is None  # the shipped pair: the demo YOLO and the demo refiner
    weights = [str(DEMO_WEIGHTS)] if demo else args.weights
    refiner = args.refiner or (str(DEMO_REFINER) if demo else None)
    refiners = [] if args.no_refiner or refiner is None else [refiner]
    with tempfile.TemporaryDirectory(prefix="yh_figures_") as tmp:
        root = Path(tmp) / "phantom"
        generate_dataset(root, train_ids=0, test_ids=1, size=args.size, seed=args.seed, workers=1, style=args.style,
                         progress=False)
        record = find_split(root, "test").records[args.hand]
        csv_path = Path(tmp) / "pred.csv"
        load = {"device": args.device} if args.device else {}
        predict_to_submission(csv_path, source=record.image_path, weights=weights, refiners=refiners,
                              progress=False, **load)
        result = evaluate(csv_path, root, split="test", progress=False)
        image = read_image(record.image_path)
        h, w = image.shape
        truth = layers_from_annotation(read_annotation(record.json_path), h, w)
        pred = layers_from_runs(prediction_runs(csv_path, record.name, (h, w)), (h, w))
    dice = float(np.mean(result.per_image[record.name]))
    y0, x0, y1, x1 = (0, 0, h, w) if args.no_crop else hand_box(truth, h, w, 0.03)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    model = args.name or " + ".join(model_label(p) for p in weights)
    panels = [(f"unseen {args.style} image (seed {args.seed})", [None] * len(truth)),
              ("ground truth", shifted(truth, y0, x0)),
              (f"{model}{' + refiner' if refiners else ''}: Dice {dice:.3f}", shifted(pred, y0, x0))]
    print(f"{record.name} ({w}x{h}, {args.style}, seed {args.seed}): {model}"
          f"{' + ' + model_label(refiners[0]) if refiners else ''}: Dice {dice:.4f}")
    # yolohand show's picture (draw.overlay_figure), with the panel names in a header row
    pictures = [draw_layers(crop, layers, args.alpha) for _, layers in panels]
    present = [any(m is not None and m.mask.any() for m in layer) for layer in zip(*(p[1] for p in panels))]
    pictures.append(legend_panel(crop.shape[0], present))
    row = max(16, crop.shape[1] // 14)
    heads = [header(name, pic.shape[1], row) for (name, _), pic in zip(panels, pictures)]
    heads.append(header("", pictures[-1].shape[1], row))
    return np.concatenate([np.concatenate(heads, axis=1), np.concatenate(pictures, axis=1)], axis=0)


def model_label(path: str) -> str:
    """``<run>/<fold>`` of ``.../<run>/<fold>/weights/best.pt``, else the file's stem."""
    p = Path(path)
    if p.parent.name == "weights" and p.stem in ("best", "last") and len(p.parents) >= 3:
        return f"{p.parents[2].name}/{p.parents[1].name}"
    return p.stem


# --------------------------------------------------------------------------- charts


def read_eval(path: Path) -> tuple[list[float], float]:
    """(29 per-class Dice in class order, mDice) of a ``yolohand evaluate --json`` file."""
    from yolohand.core.classes import CLASSES

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        per_class = doc["per_class"]
        return [float(per_class[name]) for name in CLASSES], float(doc["mean_dice"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {path}: not a `yolohand evaluate --json` file ({exc!r})") from exc


def dice_chart(paths: Sequence[Path], labels: Sequence[str], xmin: float | None, title: str) -> np.ndarray:
    """RGB: horizontal grouped bars, one group per class (in class order, top down), one colour per file."""
    from yolohand.core.classes import CLASSES

    plt = pyplot()
    data = [read_eval(p) for p in paths]
    n = len(data)
    lowest = min(min(d[0]) for d in data)
    lo = xmin if xmin is not None else max(0.0, math.floor((lowest - 0.02) * 20) / 20)
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.2 * len(CLASSES) * max(1.0, 0.4 + 0.35 * n)), dpi=100)
    height = 0.8 / n
    y = np.arange(len(CLASSES))
    colours = plt.get_cmap("tab10").colors
    for i, ((values, mean), name) in enumerate(zip(data, labels)):
        c = colours[i % len(colours)]
        ax.barh(y - 0.4 + height * (i + 0.5), np.asarray(values) - lo, height, left=lo, color=c,
                label=f"{name} (mDice {mean:.4f})")
        ax.axvline(mean, color=c, lw=1, ls="--")
    ax.set_yticks(y, CLASSES)
    ax.set_ylim(len(CLASSES) - 0.5, -0.5)  # finger-1 on top
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("Dice (dashed: mDice)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, frameon=False)
    return figure_rgb(fig, title)


def read_curve(path: Path) -> tuple[list[int], list[float]]:
    """(epochs, validation Dice) of a training ``results.csv`` (or a run folder holding one)."""
    from yolohand.defaults import DICE_KEY

    path = path / "results.csv" if path.is_dir() else path
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)]
    except OSError as exc:
        raise SystemExit(f"error: {path}: {exc.strerror or exc}") from exc
    if rows and DICE_KEY not in rows[0]:
        raise SystemExit(f"error: {path}: no {DICE_KEY} column (columns: {', '.join(rows[0])})")
    points = [(int(float(r["epoch"])) if r.get("epoch") else i + 1, float(r[DICE_KEY]))
              for i, r in enumerate(rows) if r.get(DICE_KEY)]
    if not points:
        raise SystemExit(f"error: {path}: no epoch with a validation Dice")
    return [p[0] for p in points], [p[1] for p in points]


def run_label(path: Path) -> str:
    """``<name>/fold<k>`` of ``runs/<name>/fold<k>/results.csv`` (or its folder); else the file's stem."""
    if path.is_file() and path.name != "results.csv":
        return path.stem
    folder = path if path.is_dir() else path.parent
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name


def curve_chart(paths: Sequence[Path], labels: Sequence[str], title: str) -> np.ndarray:
    """RGB: validation Dice per epoch, one line per results.csv, its best epoch marked."""
    from yolohand.defaults import DICE_KEY

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    colours = plt.get_cmap("tab10").colors
    for i, (path, name) in enumerate(zip(paths, labels)):
        epochs, dice = read_curve(path)
        c = colours[i % len(colours)]
        best = int(np.argmax(dice))
        ax.plot(epochs, dice, color=c, lw=1.6, marker="." if len(epochs) < 40 else None,
                label=f"{name} (best {dice[best]:.4f}, epoch {epochs[best]})")
        ax.plot([epochs[best]], [dice[best]], "o", color=c, ms=7, mfc="none")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel(f"validation Dice ({DICE_KEY})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    return figure_rgb(fig, title)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, help="PNG to write [default: docs/img/<name>.png]")
    common.add_argument("--max-kb", type=int, default=MAX_KB, help="downscale until the PNG is at most this (KB)")

    p = sub.add_parser("phantom", parents=[common], help="xray19 vs xray phantom, with wrist zooms")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--size", type=int, default=1024, help="rendered image side (px)")
    p.add_argument("--tile", type=int, default=512, help="side of each of the 4 tiles before any downscale (px)")
    p.add_argument("--pad", type=float, default=0.5, help="wrist zoom: margin around the carpals, times their extent")

    p = sub.add_parser("prediction", parents=[common], help="unseen phantom image | ground truth | prediction")
    p.add_argument("--weights", nargs="+", help="checkpoint(s) of any family, averaged [default: the demo YOLO]")
    p.add_argument("--name", help="model name in the legend [default: <run>/<fold> or the file stem]")
    p.add_argument("--refiner", help="refiner checkpoint [default: the demo refiner with the demo YOLO, else none]")
    p.add_argument("--no-refiner", action="store_true", help="predict without a refiner")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=11, help="synth seed: use one the weights never saw")
    p.add_argument("--style", default="xray", help="synth style (xray, xray19, flat)")
    p.add_argument("--hand", type=int, default=0, choices=(0, 1), help="which of the ID's two images")
    p.add_argument("--device", help="cpu, 0, cuda:0 ... [default: ultralytics' choice]")
    p.add_argument("--alpha", type=float, default=0.35, help="opacity of the mask fills")
    p.add_argument("--no-crop", action="store_true", help="draw the whole image, not the hand's box")

    p = sub.add_parser("dice-chart", parents=[common], help="per-class Dice bars of evaluate --json files")
    p.add_argument("files", nargs="+", type=Path, metavar="EVAL.json")
    p.add_argument("--labels", help="comma-separated names, one per file [default: file stems]")
    p.add_argument("--xmin", type=float, help="left end of the Dice axis [default: below the lowest bar]")
    p.add_argument("--title", default="")

    p = sub.add_parser("curve", parents=[common], help="validation Dice per epoch of results.csv files")
    p.add_argument("files", nargs="+", type=Path, metavar="RESULTS.csv")
    p.add_argument("--labels", help="comma-separated names, one per file [default: <run>/<fold>]")
    p.add_argument("--title", default="")

    args = ap.parse_args(argv)
    out = args.out or IMG_DIR / NAMES[args.command]
    if args.command == "phantom":
        picture = phantom_figure(args.seed, args.size, args.tile, args.pad)
    elif args.command == "prediction":
        from yolohand.errors import YolohandError

        try:
            picture = prediction_figure(args)
        except YolohandError as exc:
            raise SystemExit(f"error: {exc}") from exc
    elif args.command == "dice-chart":
        picture = dice_chart(args.files, split_labels(args.labels, args.files, lambda p: p.stem), args.xmin, args.title)
    else:
        picture = curve_chart(args.files, split_labels(args.labels, args.files, run_label), args.title)
    save_png(picture, out, args.max_kb)


if __name__ == "__main__":
    sys.exit(main())
