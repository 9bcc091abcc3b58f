"""Pictures of masks: class overlays on the X-ray, and two-submission comparison crops.

Two kinds of picture, all RGB uint8 (H, W, 3):

* **Class overlay** (:func:`overlay_figure`): the X-ray in grey, each of the 29 masks as a
  translucent fill plus a solid contour in its class colour (``yolohand.core.classes.COLORS``), and a
  legend panel to the right. Contours are drawn without anti-aliasing, so their pixels carry the
  exact class colour.
* **Comparison** (:func:`compare_colors`, :func:`compare_panel`): pixels both masks hold in
  white, only the first (A) in green, only the second (B) in red, on black; optionally beside the
  X-ray crop of the same region.

Masks are handled as :class:`MaskCrop` (a bool crop and its top-left corner), so that drawing
29 bones on a 2048 x 2048 image touches only each bone's bounding box. Runs (``yolohand.core.rle``)
are rasterised only inside their bounding box (:func:`runs_to_crop`, ``rle.runs_crop``).

Text uses OpenCV's built-in Hershey fonts: nothing is downloaded or read from disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolohand.core import rle
from yolohand.core.atomic import atomic_file
from yolohand.core.classes import CLASSES, COLORS, NUM_CLASSES
from yolohand.core.rle import Runs
from yolohand.data.layout import Annotation

#: Comparison colours (RGB): both masks, only A, only B, neither.
BOTH = (255, 255, 255)
ONLY_A = (0, 255, 0)
ONLY_B = (255, 0, 0)
NEITHER = (0, 0, 0)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PANEL_BG = (24, 24, 24)
_TEXT = (235, 235, 235)
_TEXT_DIM = (120, 120, 120)
_MIN_ROW = 14  # smallest legend row height (px) that keeps Hershey text legible


# --------------------------------------------------------------------------- mask crops


@dataclass(frozen=True)
class MaskCrop:
    """A bool mask ``mask`` (h, w) whose top-left pixel sits at (y0, x0) of the full image."""

    mask: np.ndarray
    y0: int
    x0: int

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


Layers = Sequence["MaskCrop | None"]  # one entry per class (29); None = class absent


def runs_to_crop(runs: Runs, shape: tuple[int, int]) -> MaskCrop | None:
    """MaskCrop of runs in a (H, W) image, rasterised only in their bounding box; None if empty."""
    box = rle.bbox(runs, int(shape[1]))
    if box is None:
        return None
    return MaskCrop(rle.runs_crop(runs, box, shape), box[0], box[1])


def layers_from_runs(runs_list: Sequence[Runs], shape: tuple[int, int]) -> list[MaskCrop | None]:
    """29 MaskCrops (None for empty classes) from a submission image's 29 runs."""
    return [runs_to_crop(r, shape) for r in runs_list]


def layers_from_annotation(annotation: Annotation, h: int, w: int) -> list[MaskCrop | None]:
    """29 MaskCrops of the ground truth (:meth:`Annotation.to_runs`), never full-size masks."""
    return layers_from_runs(annotation.to_runs((h, w)), (h, w))


# --------------------------------------------------------------------------- class overlay


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> a fresh uint8 (H, W, 3) RGB array."""
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.astype(np.uint8, copy=True)
    raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {image.shape}")


def contour_thickness(h: int, w: int) -> int:
    """Contour line width in pixels: 1 on small images, 3 on 2048 x 2048."""
    return max(1, round(min(h, w) / 700))


def draw_layers(image: np.ndarray, layers: Layers, alpha: float = 0.35, contours: bool = True) -> np.ndarray:
    """The X-ray (uint8 (H, W) or (H, W, 3)) with translucent fills and contours per class.

    ``layers``: one MaskCrop or None per class (len 29). Fills are blended in class order
    (overlapping bones mix); contours are drawn afterwards, on top, in the exact class colour.
    Returns uint8 (H, W, 3) RGB.
    """
    if len(layers) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} layers, got {len(layers)}")
    canvas = gray_to_rgb(image)
    h, w = canvas.shape[:2]
    for cls, layer in enumerate(layers):
        if layer is None:
            continue
        region, mask = _clip_region(canvas, layer)
        if mask is None:
            continue
        colour = np.asarray(COLORS[cls], np.float32)
        px = region[mask].astype(np.float32)
        region[mask] = np.rint(px * (1 - alpha) + colour * alpha).astype(np.uint8)
    if contours:
        thick = contour_thickness(h, w)
        for cls, layer in enumerate(layers):
            if layer is None or not layer.mask.any():
                continue
            found, _ = cv2.findContours(
                np.ascontiguousarray(layer.mask, dtype=np.uint8),
                cv2.RETR_LIST,
                cv2.CHAIN_APPROX_SIMPLE,
                offset=(int(layer.x0), int(layer.y0)),
            )
            # LINE_8, not anti-aliased: contour pixels keep the exact class colour.
            cv2.drawContours(canvas, found, -1, COLORS[cls], thick, lineType=cv2.LINE_8)
    return canvas


def _clip_region(canvas: np.ndarray, layer: MaskCrop) -> tuple[np.ndarray, np.ndarray | None]:
    """The canvas view under a MaskCrop and the crop's mask, both clipped to the canvas."""
    h, w = canvas.shape[:2]
    mh, mw = layer.mask.shape
    ya, xa = max(0, -layer.y0), max(0, -layer.x0)
    yb, xb = min(mh, h - layer.y0), min(mw, w - layer.x0)
    if ya >= yb or xa >= xb:
        return canvas[:0, :0], None
    region = canvas[layer.y0 + ya : layer.y0 + yb, layer.x0 + xa : layer.x0 + xb]
    return region, layer.mask[ya:yb, xa:xb].astype(bool, copy=False)


def _text_scale(row: int) -> tuple[float, int]:
    """Hershey font scale and stroke thickness for text filling ~55 % of a ``row``-px line."""
    (_, base), _ = cv2.getTextSize("Hg", _FONT, 1.0, 1)
    scale = row * 0.55 / base
    return scale, max(1, round(scale * 1.6))


def _legend_layout(height: int) -> tuple[int, int, int]:
    """(row height, rows per column, columns) of a legend of 29 entries plus a title, ``height`` px tall."""
    row = max(_MIN_ROW, height // 34)
    usable = max(row, height - 3 * row)  # a margin and the title line
    per_col = max(1, usable // row)
    return row, per_col, math.ceil(NUM_CLASSES / per_col)


def legend_width(height: int) -> int:
    """Width in pixels of the legend panel drawn beside an image ``height`` px tall."""
    row, _, ncols = _legend_layout(height)
    scale, thick = _text_scale(row)
    text_w = max(cv2.getTextSize(name, _FONT, scale, thick)[0][0] for name in CLASSES)
    return ncols * (row + row // 2 + text_w + row) + row // 2


def legend_panel(height: int, present: Sequence[bool] | None = None, title: str = "") -> np.ndarray:
    """uint8 (height, legend_width(height), 3): a swatch and the name of each class.

    Classes not ``present`` get a hollow swatch and dimmed text. ``title`` heads the panel.
    """
    present = [True] * NUM_CLASSES if present is None else list(present)
    row, per_col, ncols = _legend_layout(height)
    scale, thick = _text_scale(row)
    panel = np.empty((height, legend_width(height), 3), np.uint8)
    panel[:] = _PANEL_BG
    pad = row // 2
    col_w = (panel.shape[1] - pad) // ncols
    if title:
        cv2.putText(panel, _fit(title, panel.shape[1] - 2 * pad, scale, thick), (pad, pad + int(row * 0.7)),
                    _FONT, scale, _TEXT, thick, cv2.LINE_AA)
    top = pad + row + pad
    for cls, name in enumerate(CLASSES):
        col, r = divmod(cls, per_col)
        x = pad + col * col_w
        y = top + r * row
        box = row * 3 // 4
        p1, p2 = (x, y + (row - box) // 2), (x + box, y + (row - box) // 2 + box)
        if present[cls]:
            cv2.rectangle(panel, p1, p2, COLORS[cls], -1)
        else:
            cv2.rectangle(panel, p1, p2, COLORS[cls], max(1, row // 10))
        cv2.putText(panel, name, (x + row + row // 2, y + int(row * 0.72)), _FONT, scale,
                    _TEXT if present[cls] else _TEXT_DIM, thick, cv2.LINE_AA)
    return panel


def _fit(text: str, width: int, scale: float, thick: int) -> str:
    """``text`` shortened with a leading ellipsis until it fits ``width`` px."""
    while len(text) > 4 and cv2.getTextSize(text, _FONT, scale, thick)[0][0] > width:
        text = "..." + text[4:]
    return text


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner of an RGB image, on a dark box (in place; returned)."""
    h, w = image.shape[:2]
    row = max(_MIN_ROW, min(h, w) // 28)
    scale, thick = _text_scale(row)
    text = _fit(text, w - row, scale, thick)
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thick)
    cv2.rectangle(image, (0, 0), (min(w, tw + row), row + row // 3), _PANEL_BG, -1)
    cv2.putText(image, text, (row // 2, int(row * 0.85)), _FONT, scale, _TEXT, thick, cv2.LINE_AA)
    return image


def overlay_figure(
    image: np.ndarray,
    panels: Sequence[tuple[str, Layers]],
    alpha: float = 0.35,
    legend_title: str = "",
) -> np.ndarray:
    """One or more overlays of the same X-ray side by side, then the legend.

    ``image``: uint8 (H, W). ``panels``: (label, 29 layers) each; the label is written on the
    panel when there is more than one. Returns uint8 RGB (H, n * W + legend_width(H), 3).
    A class counts as present in the legend when any panel has it.
    """
    if not panels:
        raise ValueError("nothing to draw")
    h = image.shape[0]
    pictures = []
    for name, layers in panels:
        pic = draw_layers(image, layers, alpha)
        if len(panels) > 1 and name:
            label(pic, name)
        pictures.append(pic)
    present = [any(p[1][c] is not None and p[1][c].mask.any() for p in panels) for c in range(NUM_CLASSES)]
    pictures.append(legend_panel(h, present, legend_title))
    return np.concatenate(pictures, axis=1)


# --------------------------------------------------------------------------- comparison


def compare_colors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) RGB: both masks white, only ``a`` green, only ``b`` red, else black.

    ``a``, ``b``: bool (h, w) of the same shape.
    """
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    out = np.zeros(a.shape + (3,), np.uint8)
    out[a & b] = BOTH
    out[a & ~b] = ONLY_A
    out[~a & b] = ONLY_B
    return out


def union_box(a: Runs, b: Runs, shape: tuple[int, int], pad: int = 16) -> rle.Box | None:
    """Box (y0, x0, y1, x1) around the pixels of either run list, ``pad`` px wider, in the image."""
    box = rle.union_boxes([rle.bbox(a, shape[1]), rle.bbox(b, shape[1])])
    if box is None:
        return None
    y0, x0, y1, x1 = box
    return max(0, y0 - pad), max(0, x0 - pad), min(int(shape[0]), y1 + pad), min(int(shape[1]), x1 + pad)


def enlarge(image: np.ndarray, min_side: int) -> np.ndarray:
    """Repeat pixels (integer factor, nearest neighbour) until ``image`` is >= ``min_side`` tall.

    Keeps pixel colours exact, unlike a browser's smooth upscaling of a tiny crop.
    """
    h = image.shape[0]
    factor = max(1, math.ceil(min_side / h)) if min_side and h else 1
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def compare_panel(
    a: np.ndarray, b: np.ndarray, xray: np.ndarray | None = None, gap: int = 4, min_side: int = 0
) -> np.ndarray:
    """The comparison colours of ``a``/``b`` (bool (h, w)), beside the X-ray crop when given.

    ``xray``: uint8 (h, w) crop of the same region, or None (comparison alone, on black).
    ``min_side``: enlarge (nearest neighbour, integer factor) until the crop is at least this
    tall, so small bones stay visible. Returns uint8 RGB (h', w' or 2 w' + gap, 3).
    """
    colours = compare_colors(a, b)
    parts = [colours] if xray is None else [gray_to_rgb(xray), colours]
    if xray is not None and xray.shape[:2] != a.shape:
        raise ValueError(f"X-ray crop {xray.shape[:2]} and masks {a.shape} differ")
    parts = [enlarge(p, min_side) for p in parts]
    if len(parts) == 1:
        return parts[0]
    spacer = np.full((parts[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([parts[0], spacer, parts[1]], axis=1)


def compare_runs_panel(
    a: Runs, b: Runs, shape: tuple[int, int], image: np.ndarray | None = None, pad: int = 16, min_side: int = 0
) -> np.ndarray | None:
    """Comparison panel of two run lists cropped to their union box (+ ``pad``); None if both empty.

    ``image``: the full uint8 (H, W) X-ray, or None.
    """
    box = union_box(a, b, shape, pad)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    xray = None if image is None else image[y0:y1, x0:x1]
    return compare_panel(rle.runs_crop(a, box, shape), rle.runs_crop(b, box, shape), xray, min_side=min_side)


# --------------------------------------------------------------------------- `yolohand show`


def resolve_image(image: str | os.PathLike, root: str | os.PathLike | None) -> tuple[Path, Path | None]:
    """(image path, annotation JSON or None) for a path or a bare image name.

    A bare name (``image1661130828152.png`` or without ``.png``) is looked up under
    ``<root>/train/DCM`` and ``<root>/test/DCM``. The JSON is the image's relative path under
    the sibling ``outputs_json`` folder (``.../<split>/DCM/ID001/x.png`` ->
    ``.../<split>/outputs_json/ID001/x.json``), when that file exists.
    """
    from yolohand.data.layout import IMAGE_SUFFIXES, find_images
    from yolohand.errors import YolohandError

    given = Path(image).expanduser()
    if given.is_file():
        path = given.resolve()
    else:
        text = str(image)
        if os.sep in text or "/" in text:
            raise YolohandError(f"{image}: image not found")
        name = text if text.lower().endswith(IMAGE_SUFFIXES) else text + ".png"
        if root is None or not Path(root).is_dir():
            raise YolohandError(f"{image}: not a file, and dataset root {root} not found (pass --root)")
        hits: list[Path] = []
        for split in ("train", "test"):
            dcm = Path(root) / split / "DCM"
            if dcm.is_dir():
                hits += [r.image_path for r in find_images(dcm) if r.name == name]
        if not hits:
            raise YolohandError(f"{image}: no image named {name} under {Path(root)}/{{train,test}}/DCM")
        if len(hits) > 1:
            raise YolohandError(f"{image}: {len(hits)} images named {name}: {', '.join(map(str, hits))}; "
                                "pass a path")
        path = hits[0].resolve()
    return path, _json_for(path)


def dataset_root(path: Path) -> Path | None:
    """The dataset an image of the competition layout belongs to (``<R>/{train,test}/DCM/...`` -> ``R``;
    ``<F>/DCM/...`` -> ``F``), None for an image outside that layout: an input of ``show`` as a whole."""
    parts = Path(path).parts
    if "DCM" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("DCM")
    top = i - 1 if i >= 1 and parts[i - 1] in ("train", "test") else i
    return Path(*parts[:top]) if top >= 2 else None


def _json_for(path: Path) -> Path | None:
    """The competition-layout annotation of an image path, when it exists."""
    parts = path.parts
    if "DCM" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("DCM")
    candidate = Path(*parts[:i], "outputs_json", *parts[i + 1 :]).with_suffix(".json")
    return candidate if candidate.is_file() else None


def prediction_runs(csv_path: str | os.PathLike, image_name: str, shape: tuple[int, int]) -> list[Runs]:
    """The 29 run lists of ``image_name`` in a submission, found by streaming (stops at the match)."""
    from yolohand.core.submission import iter_submission
    from yolohand.errors import YolohandError

    for name, runs in iter_submission(csv_path, shape):
        if name == image_name:
            return runs
    raise YolohandError(f"{csv_path}: no rows for image {image_name}")


@dataclass
class ShowResult:
    """What :func:`render_show` drew."""

    picture: np.ndarray  # uint8 RGB (H, n * W + legend, 3)
    image_path: Path
    lines: list[str]  # one summary line per panel


def render_show(
    image_path: Path,
    json_path: Path | None = None,
    pred_csv: str | os.PathLike | None = None,
    alpha: float = 0.35,
) -> ShowResult:
    """The overlay picture of one X-ray: ground truth from ``json_path`` and/or the image's
    masks from ``pred_csv`` (side by side when both)."""
    from yolohand.data.layout import read_annotation, read_image
    from yolohand.errors import YolohandError

    if json_path is None and pred_csv is None:
        raise YolohandError(f"{image_path}: nothing to draw: pass --gt and/or --pred CSV")
    image = read_image(image_path)
    h, w = image.shape
    panels: list[tuple[str, Layers]] = []
    lines: list[str] = []
    if json_path is not None:
        ann = read_annotation(json_path)
        layers = layers_from_annotation(ann, h, w)
        panels.append(("ground truth", layers))
        n = sum(layer is not None for layer in layers)
        line = f"ground truth: {n}/{NUM_CLASSES} classes from {json_path}"
        if ann.problems:
            line += f"; {len(ann.problems)} problem(s), first: {ann.problems[0]}"
        lines.append(line)
    if pred_csv is not None:
        runs = prediction_runs(pred_csv, image_path.name, (h, w))
        layers = layers_from_runs(runs, (h, w))
        panels.append((f"prediction: {Path(pred_csv).name}", layers))
        n = sum(layer is not None for layer in layers)
        lines.append(f"prediction: {n}/{NUM_CLASSES} classes non-empty in {pred_csv}")
    picture = overlay_figure(image, panels, alpha, legend_title=image_path.name)
    return ShowResult(picture, image_path, lines)


# --------------------------------------------------------------------------- files


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file contents of a uint8 RGB (H, W, 3) or grey (H, W) image."""
    img = np.asarray(rgb)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 only fails on unsupported shapes/dtypes
        raise ValueError(f"cannot encode an image of shape {img.shape} dtype {img.dtype} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, rgb: np.ndarray, force: bool = False) -> Path:
    """Write a uint8 RGB image as PNG, atomically; replaces only a PNG, and only with ``force``."""
    from yolohand.core.paths import PNG

    data = png_bytes(rgb)
    with atomic_file(path, force, mode="wb", kind=PNG) as fh:
        fh.write(data)
    return Path(path)


__all__ = [
    "BOTH", "ONLY_A", "ONLY_B", "NEITHER", "MaskCrop", "Layers", "runs_to_crop",
    "layers_from_runs", "layers_from_annotation", "gray_to_rgb", "contour_thickness", "draw_layers",
    "legend_width", "legend_panel", "label", "overlay_figure", "compare_colors", "union_box", "enlarge",
    "compare_panel", "compare_runs_panel", "resolve_image", "prediction_runs", "ShowResult",
    "render_show", "png_bytes", "write_png",
]
