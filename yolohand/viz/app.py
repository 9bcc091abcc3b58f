"""The yolohand Streamlit app: three views over submissions and the data.

1. **Two CSVs on one image**: for one image and class, pixels both submissions hold in white,
   only A in green, only B in red, cropped to the region, beside the X-ray crop.
2. **Per-class IoU**: the agreement of two CSVs per class as a bar chart; classes under a
   threshold slider are highlighted and listed, with the least-agreeing pairs.
3. **Browse the data**: ground-truth polygons on training images, a submission's masks on test
   images, and validation (ground truth beside a prediction, with Dice per class) where a CSV
   holds training images.

Start it with ``yolohand app [--root ROOT] [--port N]`` (needs the ``yolohand[app]`` extra), or
``streamlit run yolohand/viz/app.py -- [--root ROOT] [--a A.csv] [--b B.csv] [--size H,W]``.

Settings, first found wins: the URL's query parameters (``?a=..&b=..&root=..&size=H,W&view=
pair|classes|browse&image=NAME&class=NAME``), the script arguments after ``--``, environment
variables ``YOLOHAND_APP_A`` / ``_B`` / ``_ROOT`` / ``_SIZE``, then the defaults (``root`` from
``yolohand.yaml`` / ``datasets/handbone``, size 2048,2048). CSVs can also be uploaded in the
sidebar. Importing this module does not import Streamlit; the page is built only when Streamlit
runs it as ``__main__``.

Shape: :func:`main` draws the :func:`sidebar` (settings -> a :class:`Page`), then calls one view
function (:data:`VIEW_FUNCTIONS`); the numbers come from library functions
(:func:`yolohand.viz.compare.image_iou`, :func:`yolohand.results.evaluate.image_dice`,
:meth:`yolohand.data.layout.Annotation.to_runs`), so the app only lays them out.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = [
    "APP_PATH", "VIEWS", "STREAMLIT_FLAGS", "INSTALL_HINT", "parse_args", "streamlit_command", "Page",
    "sidebar", "view_pair", "view_classes", "view_browse", "VIEW_FUNCTIONS", "main",
]

APP_PATH = Path(__file__).resolve()
VIEWS: dict[str, str] = {
    "pair": "Two CSVs on one image",
    "classes": "Per-class IoU",
    "browse": "Browse the data",
}
STREAMLIT_FLAGS: tuple[str, ...] = (
    "--browser.gatherUsageStats", "false",  # never phone home
    "--server.headless", "true",  # no browser auto-open, no e-mail prompt
    "--client.toolbarMode", "minimal",  # no "Deploy" button
)
INSTALL_HINT = "Streamlit is not installed: pip install 'yolohand[app]' (or: pip install streamlit)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The app's own arguments (after ``--`` on the ``streamlit run`` line)."""
    p = argparse.ArgumentParser(prog="yolohand app", add_help=False)
    p.add_argument("--root", default=None, help="dataset root")
    p.add_argument("--a", default=None, help="first submission CSV")
    p.add_argument("--b", default=None, help="second submission CSV")
    p.add_argument("--size", default=None, help="H,W the RLEs refer to")
    args, _ = p.parse_known_args(list(argv) if argv is not None else [])
    return args


def streamlit_command(
    port: int = 8501,
    address: str = "127.0.0.1",
    root: str | os.PathLike | None = None,
    a: str | os.PathLike | None = None,
    b: str | os.PathLike | None = None,
    size: str | None = None,
) -> list[str]:
    """The argv that runs this app under Streamlit, headless and without usage statistics."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.port", str(port),
           "--server.address", address, *STREAMLIT_FLAGS, "--"]
    for flag, value in (("--root", root), ("--a", a), ("--b", b), ("--size", size)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


# --------------------------------------------------------------------------- helpers


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


def _saved_upload(upload) -> str:
    """Write an uploaded file to a temp folder (named by content hash) and return its path."""
    data = upload.getvalue()
    digest = hashlib.sha1(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "yolohand_app_uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}_{Path(upload.name).name}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


# --------------------------------------------------------------------------- cached data access
# Cached functions take (path, mtime) so an edited file is re-read. They are built on first use
# (the decorators need Streamlit, which importing this module must not load).


@functools.cache
def _cached() -> SimpleNamespace:
    """Namespace of the app's cached readers (built once per loaded module)."""
    import streamlit as st

    from yolohand.core.submission import read_image_names
    from yolohand.data.layout import find_split, read_image
    from yolohand.errors import YolohandError
    from yolohand.viz.compare import compare_submissions
    from yolohand.viz.draw import prediction_runs

    @st.cache_data(show_spinner=False, max_entries=8)
    def names_of(path: str, mtime: float) -> list[str]:
        return read_image_names(path)

    @st.cache_data(show_spinner=False, max_entries=64)
    def runs_of(path: str, mtime: float, image: str, shape: tuple[int, int]):
        return prediction_runs(path, image, shape)

    @st.cache_data(show_spinner="comparing the two CSVs...", max_entries=4)
    def comparison(a: str, ma: float, b: str, mb: float, shape: tuple[int, int]):
        return compare_submissions(a, b, shape, top=12, progress=False)

    @st.cache_data(show_spinner=False, max_entries=4)
    def image_index(root: str) -> dict[str, dict]:
        """Image name -> {path, json, split, rel} over train and test (missing splits skipped)."""
        out: dict[str, dict] = {}
        for split in ("train", "test"):
            try:
                index = find_split(root, split, require_json=False)
            except YolohandError:
                continue
            for r in index.records:
                out.setdefault(r.name, {"path": str(r.image_path), "json": None if r.json_path is None
                                        else str(r.json_path), "split": split, "rel": r.rel_path})
        return out

    @st.cache_data(show_spinner=False, max_entries=4)
    def xray(path: str, mtime: float):
        return read_image(path)

    return SimpleNamespace(names_of=names_of, runs_of=runs_of, comparison=comparison,
                           image_index=image_index, xray=xray)


@dataclass
class Page:
    """What the sidebar settled, handed to every view."""

    st: Any  # the streamlit module
    query: Any  # st.query_params
    root: str
    shape: tuple[int, int]  # (H, W) the RLEs refer to
    csv_a: str | None
    csv_b: str | None
    images: dict[str, dict]  # image name -> {path, json, split, rel} under root

    def show_image(self, img, caption: str | None = None) -> None:
        """PNG keeps the comparison colours exact; "stretch" is the newer spelling of full width."""
        try:
            self.st.image(img, caption=caption, width="stretch", output_format="PNG")
        except Exception:  # older Streamlit
            self.st.image(img, caption=caption, use_container_width=True, output_format="PNG")

    def xray_of(self, name: str):
        """uint8 (H, W) X-ray of an image name under root (None when absent); must match ``shape``."""
        from yolohand.errors import YolohandError

        info = self.images.get(name)
        if info is None:
            return None
        img = _cached().xray(info["path"], _mtime(info["path"]))
        if img.shape != self.shape:
            raise YolohandError(f"{info['path']}: image is {img.shape[0]}x{img.shape[1]} but the image size "
                                f"setting is {self.shape[0]}x{self.shape[1]}")
        return img

    def need_two_csvs(self) -> bool:
        """True when CSV A and B are both set; otherwise says so on the page."""
        if self.csv_a and self.csv_b:
            return True
        self.st.info("Choose CSV A and CSV B in the sidebar (path or upload).")
        return False


# --------------------------------------------------------------------------- sidebar


def _csv_input(st, setting, label: str, key: str) -> str | None:
    """A CSV path typed or uploaded in the sidebar (None when neither, or the path is missing)."""
    sb = st.sidebar
    path = sb.text_input(f"{label}: path", setting(key, "") or "", key=f"{key}_path")
    upload = sb.file_uploader(f"... or upload {label}", type=["csv"], key=f"{key}_upload")
    if upload is not None:
        return _saved_upload(upload)
    path = path.strip()
    if not path:
        return None
    if not Path(path).expanduser().is_file():
        sb.error(f"{label}: {path}: file not found")
        return None
    return str(Path(path).expanduser().resolve())


def sidebar(st, argv: Sequence[str] | None) -> tuple[str, Page] | None:
    """Draw the settings sidebar; (view key, Page), or None when the size setting is bad.

    Settings, first found wins: query parameter, script argument, YOLOHAND_APP_* variable, default.
    """
    from yolohand.config import default_path
    from yolohand.core.sizes import parse_size
    from yolohand.errors import YolohandError

    args = parse_args(sys.argv[1:] if argv is None else argv)
    qp = st.query_params

    def setting(name: str, default: str | None) -> str | None:
        return (qp.get(name) or getattr(args, name, None) or os.environ.get(f"YOLOHAND_APP_{name.upper()}")
                or default)

    sb = st.sidebar
    sb.title("yolohand")
    view_keys = list(VIEWS)
    view0 = setting("view", None)
    if view0 not in VIEWS:
        view0 = "pair" if setting("a", None) and setting("b", None) else "browse"
    view = sb.radio("View", view_keys, index=view_keys.index(view0), format_func=VIEWS.get, key="view")
    root = sb.text_input("Dataset root", setting("root", str(default_path("root"))), key="root")
    size_text = sb.text_input("Image size H,W (of the RLEs)", setting("size", "2048,2048"), key="size")
    csv_a = _csv_input(st, setting, "CSV A", "a")
    csv_b = _csv_input(st, setting, "CSV B", "b")
    sb.caption("Colours: white = both, green = only A, red = only B.")
    try:
        shape = parse_size(size_text, "image size")
    except YolohandError as exc:
        st.error(str(exc))
        return None
    images = _cached().image_index(str(Path(root).expanduser())) if root else {}
    return view, Page(st, qp, root, shape, csv_a, csv_b, images)


# --------------------------------------------------------------------------- view 1: one image, one class


def view_pair(page: Page) -> None:
    """Two CSVs on one image: the chosen class's both / only-A / only-B pixels beside the X-ray."""
    import numpy as np

    from yolohand.core.classes import CLASSES, NUM_CLASSES
    from yolohand.viz.compare import image_iou
    from yolohand.viz.draw import compare_colors, enlarge, gray_to_rgb, union_box

    st, cache, shape = page.st, _cached(), page.shape
    if not page.need_two_csvs():
        return
    names = cache.names_of(page.csv_a, _mtime(page.csv_a))
    if not names:
        st.warning(f"{page.csv_a}: no images")
        return
    q_image = page.query.get("image")
    image = st.selectbox("Image", names, index=names.index(q_image) if q_image in names else 0, key="pair_image")
    ra = cache.runs_of(page.csv_a, _mtime(page.csv_a), image, shape)
    rb = cache.runs_of(page.csv_b, _mtime(page.csv_b), image, shape)
    agree = image_iou(ra, rb, shape[0] * shape[1])
    inter, aa, bb, scores = agree.inter, agree.area_a, agree.area_b, agree.iou
    q_class = page.query.get("class")
    default = CLASSES.index(q_class) if q_class in CLASSES else int(np.argmin(scores))
    cls = st.selectbox("Class", range(NUM_CLASSES), index=default, key="pair_class",
                       format_func=lambda c: f"{CLASSES[c]}  (IoU {scores[c]:.3f})")
    pad = st.slider("Margin around the region (px)", 0, 256, 16, key="pair_pad")
    m = st.columns(4)
    m[0].metric("IoU", f"{scores[cls]:.4f}")
    m[1].metric("both (white)", int(inter[cls]))
    m[2].metric("only A (green)", int(aa[cls] - inter[cls]))
    m[3].metric("only B (red)", int(bb[cls] - inter[cls]))
    box = union_box(ra[cls], rb[cls], shape, pad)
    if box is None:
        st.info(f"{CLASSES[cls]}: empty in both CSVs on {image}.")
    else:
        from yolohand.core.rle import runs_crop

        y0, x0, y1, x1 = box
        colours = compare_colors(runs_crop(ra[cls], box, shape), runs_crop(rb[cls], box, shape))
        img = page.xray_of(image)
        side = 480
        left, right = st.columns(2)
        with left:
            if img is None:
                st.info(f"X-ray {image} not found under {page.root}")
            else:
                page.show_image(enlarge(gray_to_rgb(img[y0:y1, x0:x1]), side),
                                f"X-ray {image}, rows {y0}-{y1}, cols {x0}-{x1}")
        with right:
            page.show_image(enlarge(colours, side), f"{CLASSES[cls]}: white both, green only A, red only B")
    with st.expander("All classes on this image"):
        st.dataframe({"class": list(CLASSES), "IoU": np.round(scores, 4), "A px": aa, "B px": bb,
                      "both px": inter}, hide_index=True)


# --------------------------------------------------------------------------- view 2: per-class IoU


def view_classes(page: Page) -> None:
    """Per-class IoU of two CSVs: bar chart, classes under a threshold, least agreeing pairs."""
    import numpy as np

    from yolohand.core.classes import CLASSES
    from yolohand.viz.compare import bar_chart_png
    from yolohand.viz.draw import compare_runs_panel

    st = page.st
    if not page.need_two_csvs():
        return
    cmp = _cached().comparison(page.csv_a, _mtime(page.csv_a), page.csv_b, _mtime(page.csv_b), page.shape)
    per_class = cmp.per_class_iou()
    lo = float(np.floor(per_class.min() * 100) / 100) if per_class.size else 0.0
    threshold = st.slider("Highlight classes with IoU below", 0.0, 1.0,
                          float(min(0.99, max(lo + 0.01, float(np.median(per_class))))), 0.005, format="%.3f",
                          key="threshold")
    m = st.columns(3)
    m[0].metric("images", cmp.n_images)
    m[1].metric("mean per-class IoU", f"{cmp.mean_iou():.4f}")
    m[2].metric("classes below", int((per_class < threshold).sum()))
    left, right = st.columns([3, 2])
    with left:
        page.show_image(bar_chart_png(per_class, f"{Path(page.csv_a).name} vs {Path(page.csv_b).name}", threshold))
    with right:
        low = [c for c in np.argsort(per_class, kind="stable") if per_class[c] < threshold]
        st.subheader(f"Under {threshold:.3f}")
        st.dataframe({"class": [CLASSES[c] for c in low], "IoU": [round(float(per_class[c]), 4) for c in low]},
                     hide_index=True)
        st.caption("IoU per class = sum of intersections / sum of unions over all images; "
                   "two empty masks agree (IoU 1).")
    st.subheader("Least agreeing image/class pairs")
    cols = st.columns(4)
    for i, diff in enumerate(cmp.worst):
        panel = compare_runs_panel(diff.runs_a, diff.runs_b, page.shape, page.xray_of(diff.image_name), min_side=200)
        with cols[i % 4]:
            if panel is not None:
                page.show_image(panel, f"{diff.image_name} {diff.class_name}: IoU {diff.iou:.3f}")


# --------------------------------------------------------------------------- view 3: browse the data


def view_browse(page: Page) -> None:
    """Ground truth and/or a CSV's masks over one X-ray; validation where both exist."""
    from yolohand.data.layout import read_annotation
    from yolohand.errors import YolohandError
    from yolohand.viz.draw import gray_to_rgb, layers_from_runs, overlay_figure

    st, cache, images, csv_a = page.st, _cached(), page.images, page.csv_a
    if not images:
        st.info(f"No images under {page.root}/{{train,test}}/DCM: set the dataset root in the sidebar.")
        return
    splits = sorted({v["split"] for v in images.values()}, key=["train", "test"].index)
    q_image = page.query.get("image")
    q_split = images[q_image]["split"] if q_image in images else splits[0]
    split = st.radio("Split", splits, horizontal=True, index=splits.index(q_split), key="browse_split")
    names = sorted((n for n, v in images.items() if v["split"] == split), key=lambda n: images[n]["rel"])
    name = st.selectbox("Image", names, index=names.index(q_image) if q_image in names else 0,
                        format_func=lambda n: images[n]["rel"], key="browse_image")
    which = st.radio("Predictions from", ["none", "CSV A", "CSV B"], horizontal=True,
                     index=1 if csv_a else 0, key="browse_csv")
    alpha = st.slider("Fill opacity", 0.0, 1.0, 0.35, 0.05, key="browse_alpha")
    info = images[name]
    img = cache.xray(info["path"], _mtime(info["path"]))
    h, w = img.shape
    panels, truth, pred = [], None, None
    if info["json"]:
        ann = read_annotation(info["json"])
        truth = ann.to_runs((h, w))
        panels.append(("ground truth", layers_from_runs(truth, (h, w))))
        for problem in ann.problems[:5]:
            st.warning(problem)
    pred_csv = {"CSV A": csv_a, "CSV B": page.csv_b}.get(which)
    if pred_csv:
        try:
            pred = cache.runs_of(pred_csv, _mtime(pred_csv), name, (h, w))
            panels.append((f"prediction: {Path(pred_csv).name}", layers_from_runs(pred, (h, w))))
        except YolohandError as exc:
            st.info(str(exc))
    if not panels:
        page.show_image(gray_to_rgb(img), f"{info['rel']} (no annotation; choose a CSV to see predictions)")
    else:
        page.show_image(overlay_figure(img, panels, alpha, legend_title=name), info["rel"])
    if truth is not None and pred is not None:
        _validation(page, img, pred, truth)


def _validation(page: Page, img, pred: list, truth: list) -> None:
    """Dice per class of a prediction against the ground truth, and the worst class's picture."""
    import numpy as np

    from yolohand.core.classes import CLASSES, NUM_CLASSES
    from yolohand.core.rle import area
    from yolohand.results.evaluate import image_dice
    from yolohand.viz.draw import compare_runs_panel

    st = page.st
    h, w = img.shape
    st.subheader("Validation: prediction against ground truth")
    dice = image_dice(pred, truth, h * w)
    st.metric("mean Dice on this image", f"{float(np.mean(dice)):.4f}")
    left, right = st.columns([2, 3])
    with left:
        st.dataframe({"class": list(CLASSES), "Dice": np.round(dice, 4),
                      "pred px": [area(p) for p in pred], "GT px": [area(g) for g in truth]}, hide_index=True)
    with right:
        cls = st.selectbox("Class", range(NUM_CLASSES), index=int(np.argmin(dice)), key="val_class",
                           format_func=lambda c: f"{CLASSES[c]}  (Dice {dice[c]:.3f})")
        panel = compare_runs_panel(truth[cls], pred[cls], (h, w), img, min_side=360)
        if panel is None:
            st.info(f"{CLASSES[cls]}: empty in both.")
        else:
            page.show_image(panel, f"{CLASSES[cls]}: X-ray | white both, green only ground truth, "
                                   "red only prediction")


# --------------------------------------------------------------------------- the page

VIEW_FUNCTIONS = {"pair": view_pair, "classes": view_classes, "browse": view_browse}


def main(argv: Sequence[str] | None = None) -> None:
    """Build the page (called by Streamlit on every rerun): the sidebar, then the chosen view."""
    import streamlit as st

    from yolohand.errors import YolohandError

    st.set_page_config(page_title="yolohand", layout="wide")
    settled = sidebar(st, argv)
    if settled is None:
        return
    view, page = settled
    st.header(VIEWS[view])
    try:
        VIEW_FUNCTIONS[view](page)
    except YolohandError as exc:
        st.error(str(exc))


if __name__ == "__main__":
    main()
