"""Agreement between two submissions: per-class and per-image IoU on runs, and an HTML report.

IoU of two masks A, B is |A n B| / |A u B|, computed from run lists (``yolohand.core.rle``) without
rasterising. Both CSVs are streamed in lockstep, one image at a time, so memory stays flat
whatever the number of images; they must list the same images in the same order (the
competition's row order), otherwise the first mismatch is an error naming the line.

Reductions, decided once here:

* **Per class, over all images** (:meth:`Comparison.per_class_iou`): sum of intersections /
  sum of unions over the images (pixel-weighted, so big and small images count by their pixels,
  and a class both submissions leave empty in one image adds nothing).
* **Per (image, class)** (:meth:`Comparison.per_image_iou`): intersection / union; **two empty
  masks count as 1.0** (full agreement: both say "not there"). The same rule gives 1.0 to a class
  empty in both submissions on every image.
* **Overall**: the mean of the 29 per-class IoUs (each bone weighs the same, as in mDice), and
  per image the mean of its 29 IoUs.

The least-agreeing (image, class) pairs (lowest IoU, ties broken by more disagreeing pixels;
pairs in full agreement are never listed) are kept during the same pass, with their runs, in a
bounded heap of ``top`` entries, so the report needs no second pass over the CSVs.

No torch, no ultralytics: matplotlib is imported only to draw the bar chart.
"""

from __future__ import annotations

import base64
import csv
import heapq
import html
import itertools
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolohand.core import rle
from yolohand.core.atomic import atomic_dir
from yolohand.core.classes import CLASSES, COLORS, NUM_CLASSES
from yolohand.core.paths import REPORT
from yolohand.core.rle import Runs
from yolohand.core.submission import iter_submission
from yolohand.errors import YolohandError

__all__ = [
    "PairDiff", "Comparison", "iou", "ImageIoU", "image_iou", "iter_lockstep", "compare_submissions", "bar_chart_png",
    "write_report", "ReportFiles", "report_html",
]


def iou(inter: np.ndarray | int, area_a: np.ndarray | int, area_b: np.ndarray | int) -> np.ndarray:
    """Elementwise IoU = inter / (a + b - inter), float64; 1.0 where the union is 0 (both empty)."""
    inter_ = np.asarray(inter, dtype=np.float64)
    union = np.asarray(area_a, dtype=np.float64) + np.asarray(area_b, dtype=np.float64) - inter_
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter_ / np.where(union > 0, union, 1.0), 1.0)
    return out


@dataclass
class PairDiff:
    """One (image, class) pair where the two submissions disagree, with both masks as runs."""

    image_index: int
    image_name: str
    class_index: int
    iou: float
    inter: int
    area_a: int
    area_b: int
    runs_a: Runs = field(repr=False)
    runs_b: Runs = field(repr=False)

    @property
    def class_name(self) -> str:
        return CLASSES[self.class_index]

    @property
    def disagree(self) -> int:
        """Pixels in exactly one of the two masks."""
        return self.area_a + self.area_b - 2 * self.inter


@dataclass
class Comparison:
    """Per-(image, class) intersection and areas of two submissions, plus the worst pairs.

    ``inter``, ``area_a``, ``area_b``: int64 (N, 29), N images in file order.
    """

    path_a: Path
    path_b: Path
    shape: tuple[int, int]
    image_names: list[str]
    inter: np.ndarray
    area_a: np.ndarray
    area_b: np.ndarray
    worst: list[PairDiff]  # ascending IoU (least agreeing first), at most `top`
    seconds: float = 0.0

    @property
    def n_images(self) -> int:
        return len(self.image_names)

    @property
    def union(self) -> np.ndarray:
        """int64 (N, 29) union areas."""
        return self.area_a + self.area_b - self.inter

    def per_image_iou(self) -> np.ndarray:
        """float64 (N, 29): IoU of each (image, class); 1.0 where both masks are empty."""
        return iou(self.inter, self.area_a, self.area_b)

    def per_class_iou(self) -> np.ndarray:
        """float64 (29,): sum of intersections / sum of unions over images (1.0 if all empty)."""
        return iou(self.inter.sum(axis=0), self.area_a.sum(axis=0), self.area_b.sum(axis=0))

    def image_mean_iou(self) -> np.ndarray:
        """float64 (N,): mean over the 29 classes of each image's IoU."""
        if self.n_images == 0:
            return np.zeros(0)
        return self.per_image_iou().mean(axis=1)

    def mean_iou(self) -> float:
        """Mean of the 29 per-class IoUs (every bone weighs the same)."""
        return float(self.per_class_iou().mean())


@dataclass
class ImageIoU:
    """Agreement of two submissions on one image, per class: int64 (C,) counts, float64 (C,) IoU."""

    inter: np.ndarray
    area_a: np.ndarray
    area_b: np.ndarray
    iou: np.ndarray


def image_iou(runs_a: Sequence[Runs], runs_b: Sequence[Runs], size: int | None = None) -> ImageIoU:
    """Per-class intersections, areas and IoU of one image's C run lists in A and B, on runs.

    ``size`` = H * W (any stride past the largest run end; found from the runs when None).
    IoU is 1.0 for a class empty in both (see :func:`iou`).
    """
    inter = rle.class_intersections(runs_a, runs_b, size)
    aa, bb = rle.class_areas(runs_a), rle.class_areas(runs_b)
    return ImageIoU(inter, aa, bb, iou(inter, aa, bb))


def _line(k: int) -> int:
    """Line number of the first row of image ``k`` (0-based) in a submission CSV."""
    return 2 + k * NUM_CLASSES


def iter_lockstep(
    path_a: str | os.PathLike, path_b: str | os.PathLike, shape: tuple[int, int]
) -> Iterator[tuple[int, str, list[Runs], list[Runs]]]:
    """Stream two submissions together: yield (index, image_name, 29 runs of A, 29 runs of B).

    Raises YolohandError when the files list different images or differ in length (the message
    names the file and line of the first mismatch). Holds one image of each file at a time.
    """
    missing = object()
    pairs = itertools.zip_longest(iter_submission(path_a, shape), iter_submission(path_b, shape),
                                  fillvalue=missing)
    for k, (a, b) in enumerate(pairs):
        if a is missing:
            raise YolohandError(
                f"{path_a}: ends after {k} images, but {path_b} goes on with {b[0]} (line {_line(k)})"
            )
        if b is missing:
            raise YolohandError(
                f"{path_b}: ends after {k} images, but {path_a} goes on with {a[0]} (line {_line(k)})"
            )
        if a[0] != b[0]:
            raise YolohandError(
                f"{path_b}:{_line(k)}: image {k + 1} is {b[0]} but {path_a} has {a[0]} there "
                "(both files must list the same images in the same order)"
            )
        yield k, a[0], a[1], b[1]


def compare_submissions(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    shape: tuple[int, int] = (2048, 2048),
    top: int = 20,
    progress: bool = True,
) -> Comparison:
    """Per-class / per-image agreement of two submission CSVs, on runs, in one streaming pass.

    ``shape``: (H, W) the RLEs refer to (bounds-checked). ``top``: how many least-agreeing
    (image, class) pairs to keep with their runs for the report.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    size = int(shape[0]) * int(shape[1])
    names: list[str] = []
    inter_rows: list[np.ndarray] = []
    a_rows: list[np.ndarray] = []
    b_rows: list[np.ndarray] = []
    # Min-heap on (-iou, disagreeing pixels): the root is the *most* agreeing kept pair, evicted first.
    heap: list[tuple[float, int, int, PairDiff]] = []
    counter = itertools.count()
    stream = iter_lockstep(path_a, path_b, shape)
    with tqdm(stream, desc="compare", unit="image", disable=not progress) as bar:  # closed (ending its line) on errors too
        for k, name, runs_a, runs_b in bar:
            one = image_iou(runs_a, runs_b, size)
            inter, aa, bb = one.inter, one.area_a, one.area_b
            names.append(name)
            inter_rows.append(inter)
            a_rows.append(aa)
            b_rows.append(bb)
            if top > 0:
                scores = one.iou
                for cls in np.flatnonzero(scores < 1.0):
                    diff = PairDiff(k, name, int(cls), float(scores[cls]), int(inter[cls]), int(aa[cls]),
                                    int(bb[cls]), runs_a[cls], runs_b[cls])
                    item = (-diff.iou, diff.disagree, next(counter), diff)
                    if len(heap) < top:
                        heapq.heappush(heap, item)
                    elif item[:2] > heap[0][:2]:
                        heapq.heapreplace(heap, item)
    worst = [item[3] for item in sorted(heap, key=lambda it: (-it[0], -it[1], it[2]))]

    def stack(rows: list[np.ndarray]) -> np.ndarray:
        return np.stack(rows) if rows else np.zeros((0, NUM_CLASSES), np.int64)

    return Comparison(Path(path_a), Path(path_b), (int(shape[0]), int(shape[1])), names,
                      stack(inter_rows), stack(a_rows), stack(b_rows), worst,
                      time.perf_counter() - t0)


# --------------------------------------------------------------------------- report


def bar_chart_png(per_class: np.ndarray, title: str = "", threshold: float | None = None) -> bytes:
    """PNG bytes: horizontal bars of the 29 per-class IoUs, least agreeing at the top.

    Bars in class colours; classes under ``threshold`` get a red outline and red label.
    Matplotlib's Agg canvas and its bundled DejaVu font: no display, no downloads.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_class = np.asarray(per_class, dtype=np.float64)
    order = np.argsort(per_class, kind="stable")  # ascending: least agreeing first
    fig = Figure(figsize=(8, 9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(order))
    colours = [tuple(c / 255 for c in COLORS[i]) for i in order]
    low = np.zeros(len(order), bool) if threshold is None else per_class[order] < threshold
    ax.barh(y, per_class[order], color=colours, edgecolor=["red" if f else "none" for f in low],
            linewidth=2)
    ax.set_yticks(y, [CLASSES[i] for i in order])
    for tick, flagged in zip(ax.get_yticklabels(), low):
        if flagged:
            tick.set_color("red")
            tick.set_fontweight("bold")
    ax.invert_yaxis()  # least agreeing at the top
    lo = float(per_class.min()) if per_class.size else 0.0
    left = max(0.0, np.floor((lo - 0.02) * 10) / 10)
    ax.set_xlim(left, 1.0)
    for yi, v in zip(y, per_class[order]):
        ax.text(max(v, left) + 0.002, yi, f"{v:.3f}", va="center", fontsize=8)
    mean = float(per_class.mean()) if per_class.size else 0.0
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
    if threshold is not None and threshold > left:
        ax.axvline(threshold, color="red", linestyle=":", linewidth=1, label=f"threshold {threshold:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("IoU (sum of intersections / sum of unions over images)")
    ax.set_title(title or "Per-class agreement (IoU)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@dataclass
class ReportFiles:
    """Where :func:`write_report` put its outputs."""

    folder: Path
    html: Path
    chart: Path
    per_class_csv: Path
    per_image_csv: Path
    overlays: int


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _overlay_pngs(
    cmp: Comparison, images: str | os.PathLike | None, pad: int = 16, min_side: int = 160
) -> list[bytes | None]:
    """One comparison PNG per worst pair (beside the X-ray crop when the image is found).

    Pairs are drawn grouped by image, so each X-ray is decoded once and only one is in memory.
    """
    from yolohand.data.layout import find_images, read_image
    from yolohand.viz.draw import compare_runs_panel, png_bytes

    by_name: dict[str, Path] = {}
    if images is not None:
        for rec in find_images(images):
            by_name.setdefault(rec.name, rec.image_path)
        wanted = {d.image_name for d in cmp.worst}
        missing = sorted(wanted - set(by_name))
        if missing:  # most likely the wrong folder: say so, the report is still written
            warnings.warn(f"--images {images}: no X-ray named {missing[0]} found (nor {len(missing) - 1} more of the "
                          f"{len(wanted)} images drawn); those crops are drawn without the X-ray", stacklevel=2)
    out: list[bytes | None] = [None] * len(cmp.worst)
    order = sorted(range(len(cmp.worst)), key=lambda i: cmp.worst[i].image_index)
    current, img = None, None
    for i in order:
        diff = cmp.worst[i]
        if diff.image_name != current:
            current = diff.image_name
            path = by_name.get(current)
            img = None if path is None else read_image(path)
            if img is not None and img.shape != cmp.shape:
                raise YolohandError(
                    f"{path}: image is {img.shape[0]}x{img.shape[1]} but the submissions were "
                    f"read as {cmp.shape[0]}x{cmp.shape[1]} (pass --size H,W)"
                )
        panel = compare_runs_panel(diff.runs_a, diff.runs_b, cmp.shape, img, pad=pad, min_side=min_side)
        out[i] = None if panel is None else png_bytes(panel)
    return out


_CSS = """
body{font-family:DejaVu Sans,Verdana,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4}td.name{text-align:left}.sw{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle;border:1px solid #888}
.bar{display:inline-block;height:10px;background:#4a7}.low{color:#c00;font-weight:bold}
.cards{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;padding:8px;font-size:12px}
.card img{image-rendering:pixelated;max-width:640px;display:block;margin-top:4px}
.key span{display:inline-block;padding:1px 8px;margin-right:8px;border:1px solid #888}
code{background:#f4f4f4;padding:1px 4px}
"""


def _report_head(cmp: Comparison, chart_png: bytes | None) -> list[str]:
    """HTML head, title, the summary paragraphs and the bar chart (when given)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>yolohand compare: " + esc(cmp.path_a.name) + " vs " + esc(cmp.path_b.name) + "</title>",
        "<style>" + _CSS + "</style></head><body>",
        "<h1>Agreement of two submissions</h1>",
        "<p>A = <code>" + esc(str(cmp.path_a)) + "</code><br>B = <code>" + esc(str(cmp.path_b)) + "</code></p>",
        f"<p>{cmp.n_images} images &times; {NUM_CLASSES} classes at {cmp.shape[0]}&times;{cmp.shape[1]}; "
        f"mean per-class IoU <b>{cmp.mean_iou():.4f}</b>; "
        f"compared in {cmp.seconds:.2f} s.</p>",
        "<p>Per class, IoU = sum of intersections / sum of unions over all images. Per image and "
        "class, two empty masks count as IoU 1 (agreement).</p>",
    ]
    if chart_png is not None:
        parts.append("<h2>Per-class IoU, least agreeing first</h2>")
        parts.append(f"<img alt='per-class IoU bar chart' src='{_data_uri(chart_png)}' style='max-width:800px'>")
    return parts


def _class_table(cmp: Comparison, threshold: float | None) -> list[str]:
    """The per-class table, least agreeing class first; classes under ``threshold`` in red."""
    esc = html.escape
    per_class = cmp.per_class_iou()
    per_image = cmp.per_image_iou()
    parts = ["<h2>Per-class table</h2><table><tr><th>#</th><th>class</th><th>IoU</th><th></th>"
             "<th>pixels both</th><th>only A</th><th>only B</th><th>images disagreeing</th>"
             "<th>lowest image IoU</th><th>image</th></tr>"]
    for cls in np.argsort(per_class, kind="stable"):
        colour = "#%02x%02x%02x" % COLORS[cls]
        inter = int(cmp.inter[:, cls].sum())
        only_a = int(cmp.area_a[:, cls].sum()) - inter
        only_b = int(cmp.area_b[:, cls].sum()) - inter
        col = per_image[:, cls] if cmp.n_images else np.ones(1)
        disagreeing = int((col < 1.0).sum()) if cmp.n_images else 0
        worst_img = int(np.argmin(col)) if cmp.n_images else 0
        worst_name = esc(cmp.image_names[worst_img]) if cmp.n_images and col[worst_img] < 1 else ""
        low = threshold is not None and per_class[cls] < threshold
        parts.append(
            f"<tr><td>{cls}</td><td class='name{' low' if low else ''}'><span class='sw' style='background:{colour}'></span>"
            f"{esc(CLASSES[cls])}</td><td>{per_class[cls]:.4f}</td>"
            f"<td style='text-align:left'><span class='bar' style='width:{max(0.0, per_class[cls]) * 120:.0f}px'></span></td>"
            f"<td>{inter}</td><td>{only_a}</td><td>{only_b}</td><td>{disagreeing}</td>"
            f"<td>{float(col[worst_img]):.4f}</td><td class='name'>{worst_name}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _pair_cards(cmp: Comparison, overlays: Sequence[bytes | None], images_given: bool) -> list[str]:
    """The least agreeing (image, class) pairs as cards, each with its comparison picture."""
    esc = html.escape
    parts = [f"<h2>Least agreeing image/class pairs ({len(cmp.worst)})</h2>",
             "<p class='key'><span style='background:#fff'>both</span>"
             "<span style='background:#0f0'>only A</span><span style='background:#f00;color:#fff'>only B</span>"
             "<span style='background:#000;color:#fff'>neither</span>"
             + ("left: the X-ray crop, right: the comparison." if images_given else
                "(no --images given: the comparison alone, on black)") + "</p>"]
    if not cmp.worst:
        parts.append("<p>None: the two submissions agree on every pixel.</p>")
    parts.append("<div class='cards'>")
    for diff, png in zip(cmp.worst, overlays):
        parts.append(
            f"<div class='card'><b>{esc(diff.image_name)}</b> &middot; {esc(diff.class_name)} &middot; "
            f"IoU {diff.iou:.4f}<br>A {diff.area_a} px, B {diff.area_b} px, both {diff.inter} px"
            + ("" if png is None else f"<img alt='{esc(diff.image_name)} {esc(diff.class_name)}' src='{_data_uri(png)}'>")
            + "</div>"
        )
    parts.append("</div>")
    return parts


def _image_table(cmp: Comparison, top_images: int) -> list[str]:
    """The ``top_images`` least agreeing images (mean IoU over classes); nothing without images."""
    if not cmp.n_images:
        return []
    esc = html.escape
    per_image = cmp.per_image_iou()
    union = cmp.union
    means = cmp.image_mean_iou()
    order = np.argsort(means, kind="stable")[:top_images]
    parts = [f"<h2>Least agreeing images (mean IoU over classes, lowest {len(order)})</h2>",
             "<table><tr><th>#</th><th>image</th><th>mean IoU</th><th>lowest class</th>"
             "<th>its IoU</th><th>pixels disagreeing</th></tr>"]
    for k in order:
        c = int(np.argmin(per_image[k]))
        dis = int((union[k] - cmp.inter[k]).sum())
        parts.append(f"<tr><td>{k + 1}</td><td class='name'>{esc(cmp.image_names[k])}</td>"
                     f"<td>{means[k]:.4f}</td><td class='name'>{esc(CLASSES[c])}</td>"
                     f"<td>{per_image[k, c]:.4f}</td><td>{dis}</td></tr>")
    parts.append("</table>")
    return parts


def report_html(
    cmp: Comparison,
    chart_png: bytes | None,
    overlays: Sequence[bytes | None],
    images_given: bool,
    threshold: float | None = None,
    top_images: int = 20,
) -> str:
    """The self-contained HTML report (inline CSS, images as base64 data URIs, no scripts).

    ``overlays``: one PNG (or None) per ``cmp.worst`` pair; ``images_given``: whether X-ray crops
    sit beside them; ``threshold``: per-class IoU under which a class is flagged red.
    """
    parts = (_report_head(cmp, chart_png) + _class_table(cmp, threshold)
             + _pair_cards(cmp, overlays, images_given) + _image_table(cmp, top_images))
    parts.append("<p style='color:#888;font-size:11px'>written by yolohand compare</p></body></html>")
    return "\n".join(parts)


def write_report(
    cmp: Comparison,
    out: str | os.PathLike,
    images: str | os.PathLike | None = None,
    force: bool = False,
    threshold: float | None = None,
) -> ReportFiles:
    """Write ``out/``: report.html (self-contained), iou.png, iou.csv (per class),
    iou_per_image.csv (image_name, mean, 29 class IoUs). The folder appears atomically.

    ``images``: a folder searched (recursively) for the X-rays by file name, or None.
    """
    per_class = cmp.per_class_iou()
    per_image = cmp.per_image_iou()
    title = f"IoU per class: {cmp.path_a.name} vs {cmp.path_b.name} ({cmp.n_images} images)"
    chart = bar_chart_png(per_class, title, threshold)
    overlays = _overlay_pngs(cmp, images)
    page = report_html(cmp, chart, overlays, images is not None, threshold)
    out = Path(out)
    with atomic_dir(out, force, kind=REPORT) as tmp:
        (tmp / "iou.png").write_bytes(chart)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        with open(tmp / "iou.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["class_index", "class", "iou", "intersection", "union", "area_a", "area_b",
                        "images_disagreeing", "min_image_iou"])
            for cls in range(NUM_CLASSES):
                col = per_image[:, cls]
                w.writerow([cls, CLASSES[cls], f"{per_class[cls]:.6f}", int(cmp.inter[:, cls].sum()),
                            int(cmp.union[:, cls].sum()), int(cmp.area_a[:, cls].sum()),
                            int(cmp.area_b[:, cls].sum()), int((col < 1).sum()),
                            f"{col.min() if col.size else 1.0:.6f}"])
        with open(tmp / "iou_per_image.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["image_name", "mean_iou", *CLASSES])
            means = cmp.image_mean_iou()
            for k, name in enumerate(cmp.image_names):
                w.writerow([name, f"{means[k]:.6f}", *(f"{v:.6f}" for v in per_image[k])])
    return ReportFiles(out, out / "report.html", out / "iou.png", out / "iou.csv",
                       out / "iou_per_image.csv", sum(p is not None for p in overlays))
