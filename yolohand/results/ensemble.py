"""Fusing submissions: hard voting on RLE runs, soft voting on probability maps.

Hard voting (:func:`hard_vote`) never rasterises: for each (image, class) the input masks'
runs go through :func:`yolohand.core.rle.vote`, a sweep over run boundaries. All inputs are
streamed in lockstep with :func:`yolohand.core.submission.iter_submission`, so memory stays flat
however many images there are.

Soft voting (:func:`soft_vote`) averages probability maps (:mod:`yolohand.core.probmaps`), a CSV
mask counting as probability 0 or 1, then thresholds. Images are processed one at a time and,
per class, only inside the bounding box of what any input marks (outside it the average is 0).

Rules shared by both:

- Inputs must agree before anything is written: the same image names in the same order
  (CSVs), the same image set (probability folders); classes are checked row by row while
  streaming and any problem aborts the write (no output file appears).
- Weights default to 1 each. Hard voting keeps a pixel when the summed weight of the masks
  covering it is strictly more than half the total weight, or ``>= min_votes`` when given
  (with weights, ``min_votes`` is a minimum summed weight).
- Soft voting keeps a pixel when ``sum_i w_i * u8_i >= threshold * 255 * sum_i w_i``
  (evaluated in float64, exact for integer weights), where ``u8_i`` is the stored map
  (``round(p * 255)``) or 0/255 for a CSV mask. With threshold 0.5 this is "weighted mean
  probability >= 0.5": **ties are kept**. An even number of maps creates exact ties (two uint8
  maps at 0 and 255, or 127 and 128, average to exactly 0.5). ``strict=True`` (``--strict``)
  keeps only ``mean > threshold``, the rule of the public ``soft_voting.py`` scripts, so a
  yolohand vote can reproduce theirs byte for byte.
- The summary states the rule with the exact numbers given (``repr`` of the floats, never
  rounded): ``weighted mean >= 0.5000001``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from yolohand.core import rle
from yolohand.core.atomic import atomic_dir
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.paths import PROBMAPS, check_submission_outputs
from yolohand.core.probmaps import iter_probmap_folder, load_probmap, probmap_path, probmap_shape, save_probmap
from yolohand.core.submission import iter_submission, read_image_names, write_submission
from yolohand.errors import YolohandError

Shape = tuple[int, int]
DEFAULT_SHAPE: Shape = (2048, 2048)


@dataclass
class EnsembleSummary:
    """What an ensemble run wrote."""

    out: Path
    mode: str                 # "hard" or "soft"
    inputs: int
    images: int
    rows: int
    seconds: float
    rule: str                 # the voting rule in words, e.g. "summed weight > 1.5 of 3"
    inputs_list: list[str] = field(default_factory=list)
    probs_out: Path | None = None

    def line(self) -> str:
        """One-line human summary, printed by the CLI."""
        extra = f", averaged maps in {self.probs_out}" if self.probs_out else ""
        return (
            f"{self.mode} vote of {self.inputs} inputs ({self.rule}): {self.images} images, "
            f"{self.rows} rows -> {self.out}{extra} in {self.seconds:.1f} s"
        )


# ----------------------------------------------------------------------------- arguments


def check_weights(n: int, weights: Sequence[float] | None) -> list:
    """Validated weights for ``n`` inputs (default all 1).

    Each weight is a number, or (class-wise fusion, :mod:`yolohand.results.fusion`) a per-class
    float (29,) array: then every class needs a positive summed weight.
    """
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise YolohandError(f"--weights: {len(weights)} weights given for {n} inputs")
    if any(np.ndim(w) for w in weights):
        per = np.stack([np.broadcast_to(np.asarray(w, dtype=np.float64), (NUM_CLASSES,)) for w in weights])
        if not (np.isfinite(per).all() and (per >= 0).all()):
            raise YolohandError("class-wise weights must be finite and >= 0")
        empty = np.flatnonzero(per.sum(axis=0) <= 0)
        if empty.size:
            raise YolohandError(f"class {CLASSES[empty[0]]}: no input has a weight for it "
                                f"({len(empty)} such class(es)); every class needs a source")
        return list(per)
    weights = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise YolohandError(f"--weights {weights}: weights must be finite, >= 0, and not all 0")
    return weights


def _num(x: float) -> str:
    """A number as given: ``3`` for 3.0, else the shortest exact repr (``0.5000001``), never rounded."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def _hard_rule(weights: list[float], min_votes: float | None) -> tuple[float | None, str]:
    """(min_weight for rle.vote, rule in words). None means strict majority of the weight."""
    total = sum(weights)
    if min_votes is None:
        return None, f"summed weight > {_num(total / 2)} of {_num(total)}"
    if not (math.isfinite(min_votes) and 0 < min_votes <= total):
        raise YolohandError(
            f"--min-votes {_num(min_votes)}: must be > 0 and at most the total weight {_num(total)} "
            "(otherwise the output would be empty or everything)"
        )
    return float(min_votes), f"summed weight >= {_num(min_votes)} of {_num(total)}"


def check_inputs_agree(csvs: Sequence[str | os.PathLike]) -> list[str]:
    """Image names of ``csvs[0]`` after checking every CSV lists the same images in the same order.

    YolohandError naming the first differing file and position.
    """
    ref_path = csvs[0]
    ref = read_image_names(ref_path)
    if not ref:
        raise YolohandError(f"{ref_path}: no images")
    for path in csvs[1:]:
        names = read_image_names(path)
        for i, (a, b) in enumerate(zip(ref, names)):
            if a != b:
                raise YolohandError(
                    f"{path}: image #{i + 1} is {b!r} but {ref_path} has {a!r} there "
                    "(inputs must list the same images in the same order)"
                )
        if len(names) != len(ref):
            longer, shorter = (path, ref_path) if len(names) > len(ref) else (ref_path, path)
            extra = (names if len(names) > len(ref) else ref)[min(len(names), len(ref))]
            raise YolohandError(
                f"{path}: {len(names)} images but {ref_path} has {len(ref)}; "
                f"{longer} goes on with {extra!r} (image #{min(len(names), len(ref)) + 1}) where {shorter} ends"
            )
    return ref


def image_sizes(images: str | os.PathLike, names: Sequence[str]) -> dict[str, Shape]:
    """``{name: (H, W)}`` for ``names``, read from the images under ``images`` (matched by stem)."""
    from yolohand.data.layout import find_images, image_size  # reads PNG headers only

    by_stem = {}
    for rec in find_images(images):
        by_stem.setdefault(rec.stem, rec)
    sizes = {}
    for name in names:
        rec = by_stem.get(Path(name).stem)
        if rec is None:
            raise YolohandError(f"{images}: no image for {name!r}")
        sizes[name] = tuple(image_size(rec.image_path))
    return sizes


def _stream_shape(sizes: dict[str, Shape] | None, shape: Shape) -> Shape:
    """One shape for iter_submission's bound check: the common size, or the largest H*W."""
    if not sizes:
        return tuple(shape)
    return max(set(sizes.values()), key=lambda s: (s[0] * s[1], s))


def _check_bounds(path, name: str, runs: list[np.ndarray], hw: Shape) -> None:
    """Per-image bound check when images differ in size (iter_submission checked the largest)."""
    limit = hw[0] * hw[1]
    for c, r in enumerate(runs):
        if len(r) and int(r[-1, 1]) > limit:
            raise YolohandError(
                f"{path}: image {name!r} class {CLASSES[c]}: RLE goes past the image's "
                f"{hw[0]}x{hw[1]} pixels"
            )


# ----------------------------------------------------------------------------- hard voting


_POW10 = 10 ** np.arange(19, dtype=np.int64)


def _runs_to_strings(runs: np.ndarray, bounds: np.ndarray) -> list[str]:
    """RLE strings of consecutive slices ``runs[bounds[c]:bounds[c+1]]``, formatted in one go.

    Equal to ``rle.runs_to_string`` per slice. The decimal digits of all start/length values
    are written into one byte buffer with a few vectorised passes (one per digit position),
    several times faster than formatting ~10^4 Python ints per image one by one.
    """
    if len(runs) == 0:
        return [""] * (len(bounds) - 1)
    values = np.empty(2 * len(runs), dtype=np.int64)
    values[0::2] = runs[:, 0] + 1
    values[1::2] = runs[:, 1] - runs[:, 0]
    digits = np.searchsorted(_POW10, values, side="right")  # values >= 1
    ends = np.cumsum(digits + 1)          # each token is followed by one space
    last = ends - 2                       # index of each token's last digit
    buf = np.full(int(ends[-1]), ord(" "), dtype=np.uint8)
    rest = values.copy()
    for d in range(int(digits.max())):
        live = digits > d
        buf[last[live] - d] = 48 + rest[live] % 10
        rest //= 10
    text = buf.tobytes()
    starts = np.concatenate(([0], ends))  # byte offset where token i begins
    out = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        out.append(text[starts[2 * a] : starts[2 * b] - 1].decode("ascii") if b > a else "")
    return out


def vote_image(
    per_input: Sequence[Sequence[np.ndarray]],
    weights: np.ndarray | Sequence[float] | None,
    min_weight: float | None,
    stride: int,
) -> list[str]:
    """Vote one image: ``per_input[i][c]`` are input i's Runs of class c -> 29 RLE strings.

    Same result as one :func:`yolohand.core.rle.vote` per class, done as a single sweep: class c's
    runs are shifted by ``c * stride`` (``stride`` > H*W, so classes stay apart and a voted run
    never spans two classes), voted together, then split back. One call per image instead of
    29 keeps numpy's per-call overhead off the hot path.
    """
    n_classes = len(per_input[0])
    shifted = [rle.stack_classes(runs, stride)[0] for runs in per_input]
    voted = rle.vote(shifted, weights, min_weight)
    cls = voted[:, 0] // stride
    voted = voted - (cls * stride)[:, None]
    bounds = np.searchsorted(cls, np.arange(n_classes + 1))
    return _runs_to_strings(voted, bounds)


def vote_image_classwise(per_input: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> list[str]:
    """Vote one image class by class: ``per_input[i][c]`` are input i's Runs of class c, ``weights``
    float (n_inputs, 29). Per class, a strict majority of the summed weight of the inputs with a
    weight for that class; a class with one such input is that input's mask."""
    out = []
    for c in range(weights.shape[1]):
        live = np.flatnonzero(weights[:, c] > 0)
        if len(live) == 1:
            out.append(rle.runs_to_string(per_input[live[0]][c]))
            continue
        w = weights[live, c]
        w = w.astype(np.int64) if np.all(w == np.round(w)) else w  # integers: summed exactly
        out.append(rle.runs_to_string(rle.vote([per_input[i][c] for i in live], w, None)))
    return out


def hard_vote(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    weights: Sequence[float] | None = None,
    min_votes: float | None = None,
    shape: Shape = DEFAULT_SHAPE,
    force: bool = False,
    images: str | os.PathLike | None = None,
    progress: bool = True,
) -> EnsembleSummary:
    """Pixel-wise vote of submission CSVs ``inputs`` into the CSV ``out``, on runs.

    ``shape`` (H, W) bounds-checks the RLEs; with ``images`` (a folder) each image's own size
    is used instead. ``weights`` may be per-class (29,) arrays (class-wise fusion,
    :func:`vote_image_classwise`; no ``min_votes`` then). Raises YolohandError before writing
    anything when inputs disagree.
    """
    t0 = time.perf_counter()
    if len(inputs) < 2:
        raise YolohandError("hard voting needs at least two submission CSVs")
    out, _ = check_submission_outputs(out, None, [*inputs, images], force)
    classwise = weights is not None and any(np.ndim(w) for w in weights)
    weights = check_weights(len(inputs), weights)
    if classwise:
        if min_votes is not None:
            raise YolohandError("--min-votes does not apply to a class-wise vote (each class: a strict majority "
                                "of the weight of its sources)")
        min_weight, rule = None, "class-wise: summed weight > half of each class's sources' weight"
        vote_weights = np.stack(weights)
    else:
        min_weight, rule = _hard_rule(weights, min_votes)
        # Integer weights as int64 so that rle.vote sums them exactly (no tie tolerance needed).
        vote_weights = np.asarray(weights, dtype=np.int64 if all(w.is_integer() for w in weights) else np.float64)
    names = check_inputs_agree(inputs)
    sizes = image_sizes(images, names) if images is not None else None
    stream_shape = _stream_shape(sizes, shape)
    mixed = sizes is not None and len(set(sizes.values())) > 1
    stride = stream_shape[0] * stream_shape[1] + 1  # > any run end, so classes never touch

    def items(bar: tqdm) -> Iterator[tuple[str, list[str]]]:
        streams = [iter_submission(p, stream_shape) for p in inputs]
        for rows in zip(*streams):
            name = rows[0][0]
            for path, (other, runs) in zip(inputs, rows):
                if other != name:  # read_image_names agreed, so this means a file changed under us
                    raise YolohandError(f"{path}: image {other!r} where {inputs[0]} has {name!r}")
                if mixed:
                    _check_bounds(path, name, runs, sizes[name])
            runs_list = [r[1] for r in rows]
            yield name, (vote_image_classwise(runs_list, vote_weights) if classwise
                         else vote_image(runs_list, vote_weights, min_weight, stride))
            bar.update()

    with tqdm(total=len(names), desc="hard vote", unit="img", disable=not progress) as bar:
        n_images = write_submission(out, items(bar), force=force)
    return EnsembleSummary(
        out=out, mode="hard", inputs=len(inputs), images=n_images, rows=n_images * NUM_CLASSES,
        seconds=time.perf_counter() - t0, rule=rule, inputs_list=[str(p) for p in inputs],
    )


# ----------------------------------------------------------------------------- soft voting


def _per_class(x, c: int):
    """``x[c]`` for a per-class (29,) array, ``x`` itself for a scalar."""
    return x[c] if np.ndim(x) else x


def _soft_image(
    maps: list[np.ndarray], csv_runs: list[list[np.ndarray]], prob_w: list, csv_w: list,
    hw: Shape, cut, total, keep_avg: bool, strict: bool = False,
) -> tuple[list[str], np.ndarray | None]:
    """29 RLE strings of one image (and the uint8 averaged maps when ``keep_avg``): a pixel is
    kept when the weighted sum is ``>= cut`` (``> cut`` when ``strict``).

    Each weight (``prob_w``, ``csv_w``), ``cut`` and ``total`` is a number or a per-class (29,)
    array (class-wise fusion, per-class thresholds); an input of weight 0 for a class is not read.
    """
    h, w = hw
    avg = np.zeros((NUM_CLASSES, h, w), dtype=np.uint8) if keep_avg else None
    rles = []
    for c in range(NUM_CLASSES):
        pw = [(float(_per_class(wt, c)), m) for wt, m in zip(prob_w, maps)]
        cw = [(float(_per_class(wt, c)), r) for wt, r in zip(csv_w, csv_runs)]
        pw, cw = [x for x in pw if x[0]], [x for x in cw if x[0]]
        box = rle.union_boxes([rle.mask_bbox(m[c]) for _, m in pw] + [rle.bbox(r[c], w) for _, r in cw])
        if box is None:  # every input is 0 here, below any threshold > 0
            rles.append("")
            continue
        y0, x0, y1, x1 = box
        acc = np.zeros((y1 - y0, x1 - x0), dtype=np.float64)
        for wt, m in pw:
            acc += wt * m[c, y0:y1, x0:x1]
        for wt, runs in cw:
            if len(runs[c]):
                acc += (wt * 255.0) * rle.runs_crop(runs[c], box, hw)
        cut_c = _per_class(cut, c)
        rles.append(rle.runs_to_string(rle.crop_to_runs(acc > cut_c if strict else acc >= cut_c, y0, x0, hw)))
        if avg is not None:
            avg[c, y0:y1, x0:x1] = np.floor(acc / _per_class(total, c) + 0.5)
    return rles, avg


@dataclass
class SoftPlan:
    """The agreed inputs of a soft vote: image names in output order, their stems, one
    ``{stem: map path}`` per folder, each image's size (None: ``shape`` for all), the shape
    the CSV streams are bound-checked against, and the output places."""

    names: list[str]
    stems: list[str]
    folders: list[dict[str, Path]]
    sizes: dict[str, Shape] | None
    shape: Shape
    stream_shape: Shape
    out: Path
    probs_out: Path | None


def _soft_names(csvs: list, prob_dirs: list, folders: list[dict[str, Path]],
                images: str | os.PathLike | None) -> tuple[list[str], str]:
    """(image names in output order, the input that decides it)."""
    if csvs:
        return check_inputs_agree(csvs), str(csvs[0])
    if images is not None:
        from yolohand.data.layout import find_images

        wanted = folders[0]
        names = [r.name for r in find_images(images) if r.stem in wanted]
        missing = sorted(set(wanted) - {Path(nm).stem for nm in names})
        if missing:
            raise YolohandError(f"{images}: no image for the map {wanted[missing[0]]}")
        return names, str(prob_dirs[0])
    return [p.stem + ".png" for p in folders[0].values()], str(prob_dirs[0])


def check_soft_inputs(
    csvs: Sequence[str | os.PathLike], prob_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
    threshold: float, shape: Shape, force: bool, images: str | os.PathLike | None,
    save_probs: str | os.PathLike | None,
) -> SoftPlan:
    """Every check of a soft vote, before anything is written: threshold, output places, and
    that CSVs and folders list the same images (maps matched by file stem)."""
    csvs, prob_dirs = list(csvs), list(prob_dirs)
    if not prob_dirs:
        raise YolohandError("soft voting needs at least one probability-map folder (--probs)")
    if not (0.0 < threshold <= 1.0):
        raise YolohandError(f"--threshold {_num(threshold)}: must be in (0, 1]")
    out_path, probs_out = check_submission_outputs(out, save_probs, [*csvs, *prob_dirs, images], force)
    folders = []
    for d in prob_dirs:
        listing = iter_probmap_folder(d)
        if not listing:
            raise YolohandError(f"{d}: no .npz probability maps")
        folders.append({Path(name).stem: p for name, p in listing})
    names, source = _soft_names(csvs, prob_dirs, folders, images)
    stems = [Path(nm).stem for nm in names]
    if len(set(stems)) != len(stems):
        raise YolohandError(f"{source}: an image name appears twice (maps are matched by file stem)")
    for d, folder in zip(prob_dirs, folders):
        missing = [nm for nm, st in zip(names, stems) if st not in folder]
        if missing:
            raise YolohandError(
                f"{probmap_path(d, missing[0])}: missing ({len(missing)} of {len(names)} maps "
                f"named by {source} are absent from {d})"
            )
        extra = sorted(set(folder) - set(stems))
        if extra:
            raise YolohandError(f"{folder[extra[0]]}: image not listed by {source} ({len(extra)} such maps)")
    if images is not None:
        sizes = image_sizes(images, names)
    elif shape is None:  # the maps know their own size; load_probmap checks the other folders agree
        sizes = {nm: probmap_shape(folders[0][st]) for nm, st in zip(names, stems)}
    else:
        sizes = None
    shape = DEFAULT_SHAPE if shape is None else tuple(shape)
    return SoftPlan(names, stems, folders, sizes, shape, _stream_shape(sizes, shape), out_path, probs_out)


def soft_stream(
    plan: SoftPlan, csvs: Sequence[str | os.PathLike], weights: list[float], threshold: float, strict: bool,
    tmp_probs: Path | None, bar: tqdm,
) -> Iterator[tuple[str, list[str]]]:
    """(image name, 29 RLE strings) per image, one image in memory at a time; with
    ``tmp_probs`` the averaged maps are written there as they are made.

    ``weights``: one per input (CSVs first), each a number or a per-class (29,) array;
    ``threshold``: a number or per-class thresholds (29,)."""
    csv_w, prob_w = weights[: len(csvs)], weights[len(csvs):]
    if any(np.ndim(wt) for wt in weights):  # class-wise: one total per class, summed in input order
        per = [np.broadcast_to(np.asarray(wt, dtype=np.float64), (NUM_CLASSES,)) for wt in weights]
        total = np.array([sum(float(wt[c]) for wt in per) for c in range(NUM_CLASSES)])
    else:
        total = sum(weights)
    cut = np.asarray(threshold, dtype=np.float64) * 255.0 * total if np.ndim(threshold) else threshold * 255.0 * total
    streams = [iter_submission(p, plan.stream_shape) for p in csvs]
    for name, stem in zip(plan.names, plan.stems):
        hw = plan.sizes[name] if plan.sizes else plan.shape
        csv_runs = []
        for path, stream in zip(csvs, streams):
            other, runs = next(stream)
            if other != name:
                raise YolohandError(f"{path}: image {other!r} where {csvs[0]} has {name!r}")
            _check_bounds(path, name, runs, hw)
            csv_runs.append(runs)
        maps = [load_probmap(folder[stem], shape=hw) for folder in plan.folders]
        rles, avg = _soft_image(maps, csv_runs, prob_w, csv_w, hw, cut, total, tmp_probs is not None, strict)
        if tmp_probs is not None:
            save_probmap(probmap_path(tmp_probs, name), avg)
        yield name, rles
        bar.update()


def soft_vote(
    csvs: Sequence[str | os.PathLike],
    prob_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    weights: Sequence[float] | None = None,
    threshold: float = 0.5,
    shape: Shape | None = None,
    force: bool = False,
    images: str | os.PathLike | None = None,
    save_probs: str | os.PathLike | None = None,
    progress: bool = True,
    strict: bool = False,
    thresholds: Sequence[float] | None = None,
) -> EnsembleSummary:
    """Average CSV masks and probability-map folders per pixel, threshold, write the CSV ``out``.

    ``weights`` are for the CSVs first, then the folders, in the order given. Image order: the
    CSVs' order when any CSV is given, else the images folder's (``images``), else sorted by
    name. Each image's size is read from its maps (the first folder's; every other map and CSV
    must agree) unless ``images`` gives it or ``shape`` (H, W) is given for all. A pixel is
    kept when the weighted mean is ``>= threshold`` (``> threshold`` with ``strict``; see the
    module docstring). ``thresholds``: one threshold per class (29,) instead of ``threshold``
    (:mod:`yolohand.results.thresholds`; all 0.5 gives the same bytes as ``threshold=0.5``).
    ``save_probs``: also write the averaged maps (uint8, :mod:`yolohand.core.probmaps`) to this
    folder. Nothing is written when inputs disagree.
    """
    t0 = time.perf_counter()
    csvs, prob_dirs = list(csvs), list(prob_dirs)
    plan = check_soft_inputs(csvs, prob_dirs, out, threshold, shape, force, images, save_probs)
    weights = check_weights(len(csvs) + len(prob_dirs), weights)
    rule = f"weighted mean {'>' if strict else '>='} {_num(threshold)}"
    if thresholds is not None:
        from yolohand.results.thresholds import check_thresholds

        threshold = check_thresholds(thresholds)
        rule = f"weighted mean {'>' if strict else '>='} per-class thresholds ({_num(threshold.min())}..{_num(threshold.max())})"
    with tqdm(total=len(plan.names), desc="soft vote", unit="img", disable=not progress) as bar:
        if plan.probs_out is None:
            n_images = write_submission(plan.out, soft_stream(plan, csvs, weights, threshold, strict, None, bar),
                                        force=force)
        else:
            with atomic_dir(plan.probs_out, force=force, kind=PROBMAPS) as tmp:
                n_images = write_submission(plan.out, soft_stream(plan, csvs, weights, threshold, strict, tmp, bar),
                                            force=force)
    return EnsembleSummary(
        out=plan.out, mode="soft", inputs=len(weights), images=n_images, rows=n_images * NUM_CLASSES,
        seconds=time.perf_counter() - t0, rule=rule,
        inputs_list=[str(p) for p in csvs + prob_dirs], probs_out=plan.probs_out,
    )


def ensemble(
    csvs: Sequence[str | os.PathLike],
    prob_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    weights: Sequence[float] | None = None,
    min_votes: float | None = None,
    threshold: float | None = None,
    strict: bool = False,
    shape: Shape | None = None,
    images: str | os.PathLike | None = None,
    save_probs: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    thresholds: Sequence[float] | None = None,
) -> EnsembleSummary:
    """One entry for both votes (what ``yolohand ensemble`` calls): soft when any probability-map
    folder is given, else hard. Options of the other vote are refused, not ignored. ``shape``
    None: a soft vote reads each image's size from its maps, a hard vote assumes 2048x2048.
    ``thresholds``: per-class thresholds (29,) for a soft vote, instead of ``threshold``."""
    if prob_dirs:
        if min_votes is not None:
            raise YolohandError("--min-votes applies to hard voting (CSVs only); with --probs use --threshold")
        if thresholds is not None and threshold is not None:
            raise YolohandError("--threshold and --thresholds: give one (a file of per-class thresholds, or one number)")
        return soft_vote(csvs, prob_dirs, out, weights=weights, threshold=0.5 if threshold is None else threshold,
                         shape=shape, force=force, images=images, save_probs=save_probs, progress=progress,
                         strict=strict, thresholds=thresholds)
    for flag, given in (("--save-probs", save_probs is not None), ("--threshold", threshold is not None),
                        ("--strict", strict), ("--thresholds", thresholds is not None)):
        if given:
            raise YolohandError(f"{flag} applies to soft voting (--probs folders); for CSVs only use --min-votes")
    return hard_vote(csvs, out, weights=weights, min_votes=min_votes, shape=DEFAULT_SHAPE if shape is None else shape,
                     force=force, images=images,
                     progress=progress)
