"""Class-wise fusion: which source (model) votes for which class, from a small YAML, and the
fit-on-validation mode that picks per class the best source with its overfitting shown.

The fusion YAML (``yolohand ensemble --fusion FILE``)::

    sources:
      - probs: maps/yolo_folds        # a probability-map folder ...
        classes: [fingers]            # groups or class names (default: all classes)
      - probs: maps/unetpp
        weight: 2                     # its weight where it votes (default 1)
        weights: {Pisiform: 1}        # per-class overrides of the weight (0 = does not vote)
      - csv: refiner.csv              # ... or a submission CSV (a mask counts as 0 / 1)
        classes: carpals, forearm

Groups: ``fingertips`` (finger-1, 4, 8, 12, 16), ``phalanges`` (every finger bone but the
metacarpals, fingertips included), ``metacarpals`` (finger-3, 7, 11, 15, 19), ``fingers``
(finger-1..19), ``carpals``, ``forearm`` (Radius, Ulna), ``all``. Relative paths are read from
the YAML's folder. Per class, the sources with a weight for it are fused as ``ensemble`` fuses
everything: a soft vote (weighted mean probability >= threshold) when any source is a map
folder, else a hard vote of the CSVs (strict majority of the class's weight). Every class needs
a source. A source that is the only one voting for a class gives exactly its own mask.

Inputs on the command line replace the YAML's paths in order (CSVs for the ``csv`` sources,
``--probs`` for the ``probs`` sources), so one YAML fitted on validation predictions
(:func:`fit_sources`, ``yolohand pick``) is applied to the test predictions of the same models.

:func:`fit_sources` scores every source per (image, class) against the ground truth, streamed
one image at a time, and picks per class the best source with the rule of
:mod:`yolohand.results.choice`: the default is the best source overall (by mDice), a class moves
to another source only when that gains more than ``margin`` on the class and on both halves of
the images. Per class it reports the in-sample score of the pick and the held-out score (picked
on one half of the patients, scored on the other), next to the best single source: the gap
between in-sample and held-out is the overfitting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from yolohand.core import rle
from yolohand.core.classes import CARPALS, CLASS_INDEX, CLASSES, FINGERS, FOREARM, NUM_CLASSES
from yolohand.errors import YolohandError
from yolohand.results.choice import Choice, HalfSums, fit_choice, patient_halves
from yolohand.results.ensemble import EnsembleSummary, hard_vote, soft_vote

__all__ = [
    "GROUPS", "parse_classes", "FusionSource", "FusionSpec", "load_fusion", "fuse", "SourceFit", "fit_sources",
    "write_fusion", "format_source_fit",
]

_METACARPALS = ("finger-3", "finger-7", "finger-11", "finger-15", "finger-19")
#: Class groups a fusion YAML may name (besides single class names).
GROUPS: dict[str, tuple[str, ...]] = {
    "all": CLASSES,
    "fingers": FINGERS,
    "phalanges": tuple(f for f in FINGERS if f not in _METACARPALS),
    "carpals": CARPALS,
    "metacarpals": _METACARPALS,
    "fingertips": ("finger-1", "finger-4", "finger-8", "finger-12", "finger-16"),
    "forearm": FOREARM,
}
KINDS = ("probs", "csv")
_SOURCE_KEYS = ("probs", "csv", "weight", "weights", "classes", "name")


def parse_classes(spec: object, where: str = "classes") -> np.ndarray:
    """bool (29,): the classes named by ``spec``, a group or class name, a comma-separated string
    of them, or a list of them. YolohandError naming ``where`` for an unknown name."""
    items = spec if isinstance(spec, list) else [spec]
    out = np.zeros(NUM_CLASSES, dtype=bool)
    for item in items:
        if not isinstance(item, str):
            raise YolohandError(f"{where}: {item!r} is not a class or group name")
        for token in (t.strip() for t in item.split(",")):
            if token in GROUPS:
                out[[CLASS_INDEX[c] for c in GROUPS[token]]] = True
            elif token in CLASS_INDEX:
                out[CLASS_INDEX[token]] = True
            else:
                from yolohand.config import did_you_mean

                raise YolohandError(f"{where}: unknown class or group {token!r}"
                                    f"{did_you_mean(token, [*GROUPS, *CLASSES])}; groups: {', '.join(GROUPS)}")
    return out


def compact_classes(mask: np.ndarray) -> list[str]:
    """The names that :func:`parse_classes` reads back as ``mask``: whole groups where they fit
    (largest first), then single classes, in class order."""
    left = np.asarray(mask, dtype=bool).copy()
    names = []
    for group, members in sorted(GROUPS.items(), key=lambda kv: -len(kv[1])):
        idx = [CLASS_INDEX[c] for c in members]
        if left[idx].all():
            names.append(group)
            left[idx] = False
    return names + [CLASSES[c] for c in np.flatnonzero(left)]


@dataclass
class FusionSource:
    """One source of a fusion: a map folder or a CSV, and its weight for each class (float (29,))."""

    kind: str
    path: Path
    weights: np.ndarray
    name: str = ""


@dataclass
class FusionSpec:
    """The sources of a fusion YAML, in file order."""

    sources: list[FusionSource]
    path: Path | None = None

    def with_inputs(self, csvs: Sequence[str | os.PathLike] = (), prob_dirs: Sequence[str | os.PathLike] = ()) -> FusionSpec:
        """The same classes and weights on other inputs: ``csvs`` replace the ``csv`` sources and
        ``prob_dirs`` the ``probs`` sources, in order (none given: the YAML's paths)."""
        if not csvs and not prob_dirs:
            return self
        given = {"csv": [Path(p) for p in csvs], "probs": [Path(p) for p in prob_dirs]}
        for kind, flag in (("csv", "CSV argument(s)"), ("probs", "--probs folder(s)")):
            want = sum(s.kind == kind for s in self.sources)
            if len(given[kind]) != want:
                raise YolohandError(f"{self.path or 'fusion'}: has {want} {kind} source(s) but {len(given[kind])} "
                                    f"{flag} given (inputs replace the YAML's sources in order)")
        it = {k: iter(v) for k, v in given.items()}
        return FusionSpec([FusionSource(s.kind, next(it[s.kind]), s.weights, s.name) for s in self.sources], self.path)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise YolohandError(f"{where}: {value!r} is not a number >= 0")
    return float(value)


def _source(entry: object, where: str, base: Path) -> FusionSource:
    if not isinstance(entry, dict):
        raise YolohandError(f"{where}: expected a mapping like {{probs: FOLDER, classes: [...]}}")
    unknown = [k for k in entry if k not in _SOURCE_KEYS]
    if unknown:
        from yolohand.config import did_you_mean

        raise YolohandError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], _SOURCE_KEYS)}; "
                            f"known: {', '.join(_SOURCE_KEYS)}")
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        raise YolohandError(f"{where}: give exactly one of 'probs: FOLDER' or 'csv: FILE'")
    kind = kinds[0]
    if not isinstance(entry[kind], str) or not entry[kind]:
        raise YolohandError(f"{where}: {kind}: expected a path")
    path = Path(entry[kind]).expanduser()
    weight = _number(entry.get("weight", 1), f"{where}: weight")
    weights = parse_classes(entry.get("classes", "all"), f"{where}: classes") * weight
    overrides = entry.get("weights", {}) or {}
    if not isinstance(overrides, dict):
        raise YolohandError(f"{where}: weights: expected a mapping of class or group: weight")
    for key, value in overrides.items():
        weights[parse_classes(str(key), f"{where}: weights")] = _number(value, f"{where}: weights: {key}")
    return FusionSource(kind, path if path.is_absolute() else base / path, weights.astype(np.float64),
                        str(entry.get("name", "")))


def load_fusion(path: str | os.PathLike) -> FusionSpec:
    """Read a fusion YAML (module docstring). YolohandError naming the file and the source for
    anything malformed, and when a class has no source."""
    from yolohand.config import read_yaml

    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: fusion YAML not found")
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise YolohandError(f"{path}: expected 'sources:' with a list of {{probs: FOLDER | csv: FILE, classes: ...}}")
    unknown = [k for k in doc if k not in ("sources", "fit")]
    if unknown:
        raise YolohandError(f"{path}: unknown key {unknown[0]!r}; known: sources, fit (the report of `yolohand pick`)")
    base = path.resolve().parent
    sources = [_source(e, f"{path}: sources[{i}]", base) for i, e in enumerate(doc["sources"])]
    total = np.sum([s.weights for s in sources], axis=0)
    empty = np.flatnonzero(total <= 0)
    if empty.size:
        raise YolohandError(f"{path}: class {CLASSES[empty[0]]} has no source (weight 0 in every source; "
                            f"{len(empty)} such class(es))")
    return FusionSpec(sources, path)


def fuse(
    spec: FusionSpec,
    out: str | os.PathLike,
    csvs: Sequence[str | os.PathLike] = (),
    prob_dirs: Sequence[str | os.PathLike] = (),
    threshold: float | None = None,
    thresholds: Sequence[float] | None = None,
    strict: bool = False,
    shape: tuple[int, int] | None = None,
    images: str | os.PathLike | None = None,
    save_probs: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> EnsembleSummary:
    """Fuse the sources of ``spec`` class by class into the CSV ``out`` (module docstring).

    ``csvs`` / ``prob_dirs`` replace the spec's paths in order. A soft vote (any map folder)
    takes ``threshold`` or per-class ``thresholds``, ``strict``, ``save_probs``; a hard vote of
    CSVs takes none of them. Streams one image at a time; nothing is written when inputs disagree.
    """
    spec = spec.with_inputs(csvs, prob_dirs)
    csv_src = [s for s in spec.sources if s.kind == "csv"]
    prob_src = [s for s in spec.sources if s.kind == "probs"]
    weights = [s.weights for s in csv_src + prob_src]  # the ensemble's order: CSVs, then folders
    if prob_src:
        if thresholds is not None and threshold is not None:
            raise YolohandError("--threshold and --thresholds: give one (a file of per-class thresholds, or one number)")
        summary = soft_vote([s.path for s in csv_src], [s.path for s in prob_src], out, weights=weights,
                            threshold=0.5 if threshold is None else threshold, shape=shape, force=force, images=images,
                            save_probs=save_probs, progress=progress, strict=strict, thresholds=thresholds)
    else:
        for flag, given in (("--save-probs", save_probs is not None), ("--threshold", threshold is not None),
                            ("--strict", strict), ("--thresholds", thresholds is not None)):
            if given:
                raise YolohandError(f"{flag} applies to soft voting (a probs source); these sources are all CSVs")
        summary = hard_vote([s.path for s in csv_src], out, weights=weights,
                            shape=(2048, 2048) if shape is None else shape, force=force, images=images,
                            progress=progress)
    summary.mode += " class-wise"
    return summary


# ----------------------------------------------------------------------------- fitting


@dataclass
class SourceFit:
    """The per-class pick of :func:`fit_sources`: ``choice`` over the sources (candidates in
    ``sources`` order: CSVs, then folders)."""

    sources: list[tuple[str, Path]]        # (kind, path)
    choice: Choice
    gt: str = ""
    split: str | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """mDice in-sample and held-out: the best single source and the per-class picks."""
        ch = self.choice
        return {
            "single_in_sample": float(ch.default_score().mean()),
            "picked_in_sample": float(ch.chosen_score().mean()),
            "single_heldout": float(np.mean(ch.heldout_default)),
            "picked_heldout": float(np.mean(ch.heldout_score)),
        }


def _source_names(csvs: Sequence, prob_dirs: Sequence) -> tuple[list[str], dict | None]:
    """(image stems in streaming order, the first CSV's name per stem or None) after checking
    every source holds the same images; YolohandError naming the first that differs."""
    from yolohand.core.probmaps import iter_probmap_folder
    from yolohand.results.ensemble import check_inputs_agree

    names = check_inputs_agree(list(csvs)) if csvs else None
    stems = [Path(n).stem for n in names] if names else None
    for d in prob_dirs:
        listing = iter_probmap_folder(d)
        if not listing:
            raise YolohandError(f"{d}: no .npz probability maps")
        found = [Path(n).stem for n, _ in listing]
        if stems is None:
            stems = found
            continue
        missing = sorted(set(stems) - set(found))
        extra = sorted(set(found) - set(stems))
        if missing or extra:
            what = f"has no map of {missing[0]!r}" if missing else f"has a map of {extra[0]!r}, which the other sources lack"
            raise YolohandError(f"{d}: {what} (every source must cover the same validation images)")
    return stems, names


def _stream_sources(csvs: Sequence, prob_dirs: Sequence, stems: list[str], sizes: dict[str, tuple[int, int]],
                    cut: int) -> Iterator[tuple[str, list[list[np.ndarray]]]]:
    """(stem, per source 29 Runs) per image, CSVs first; maps cut at ``u8 >= cut``."""
    from yolohand.core.probmaps import load_probmap, probmap_path
    from yolohand.core.submission import iter_submission

    shape = max(set(sizes.values()), key=lambda s: (s[0] * s[1], s))
    streams = [iter_submission(p, shape) for p in csvs]
    for stem in stems:
        hw = sizes[stem]
        per_source = []
        for path, stream in zip(csvs, streams):
            name, runs = next(stream)
            if Path(name).stem != stem:
                raise YolohandError(f"{path}: image {name!r} where {stem!r} was expected")
            limit = hw[0] * hw[1]
            bad = [c for c, r in enumerate(runs) if len(r) and int(r[-1, 1]) > limit]
            if bad:
                raise YolohandError(f"{path}: image {name!r} class {CLASSES[bad[0]]}: RLE goes past the image's "
                                    f"{hw[0]}x{hw[1]} pixels")
            per_source.append(runs)
        for d in prob_dirs:
            u8 = load_probmap(probmap_path(d, stem), shape=hw)
            per_source.append([rle.mask_to_runs(u8[c] >= cut) for c in range(NUM_CLASSES)])
        yield stem, per_source


def fit_sources(
    csvs: Sequence[str | os.PathLike],
    prob_dirs: Sequence[str | os.PathLike],
    gt_root: str | os.PathLike,
    split: str | None = None,
    margin: float = 0.002,
    split_half: bool = True,
    progress: bool = True,
) -> SourceFit:
    """Pick per class the best of the sources (validation predictions of several models on the
    same images: CSVs and/or map folders, maps cut at 0.5) against ``gt_root``'s annotations.

    The default source is the best by mDice; a class moves to another source when it gains more
    than ``margin`` on that class (and, ``split_half``, on both halves of the patients). Streams
    one image at a time; memory is the per-class score sums. YolohandError when the sources
    cover different images or an image has no annotation.
    """
    from yolohand.core.probmaps import THRESHOLD_U8
    from yolohand.data.layout import image_size
    from yolohand.results.evaluate import check_split, gt_runs, image_dice
    from yolohand.results.thresholds import gt_for_stems

    t0 = time.perf_counter()
    check_split(split)
    csvs, prob_dirs = [Path(p) for p in csvs], [Path(p) for p in prob_dirs]
    n = len(csvs) + len(prob_dirs)
    if n < 2:
        raise YolohandError("picking a source per class needs at least two sources (CSVs and/or --probs folders)")
    stems, _ = _source_names(csvs, prob_dirs)
    first = csvs[0] if csvs else prob_dirs[0]
    records = gt_for_stems(dict.fromkeys(stems, first), gt_root, split)
    sizes = {s: image_size(records[s].image_path) for s in stems}
    halves = patient_halves([r.patient_id for r in records.values()])
    sums = HalfSums(n, NUM_CLASSES)
    problems: list[str] = []
    for stem, per_source in tqdm(_stream_sources(csvs, prob_dirs, stems, sizes, THRESHOLD_U8), total=len(stems),
                                 desc="pick", unit="img", disable=not progress):
        rec = records[stem]
        truth, probs = gt_runs(rec.json_path, sizes[stem])
        problems += probs
        size = sizes[stem][0] * sizes[stem][1]
        sums.add(halves[rec.patient_id], np.stack([image_dice(runs, truth, size) for runs in per_source]))
    choice = fit_choice(sums, lambda m: np.full(m.shape[1], int(np.argmax(m.mean(axis=1)))), margin, range(n), split_half)
    return SourceFit([("csv", p) for p in csvs] + [("probs", p) for p in prob_dirs], choice, str(gt_root), split,
                     time.perf_counter() - t0, problems)


def to_yaml_doc(fit: SourceFit, yaml_dir: Path) -> dict:
    """The fusion YAML of a fit: every source in input order (CSVs, then folders) with the classes
    it was picked for (paths relative to ``yaml_dir``), and the evidence under ``fit``."""
    from yolohand import __version__

    ch = fit.choice
    sources = []
    for k, (kind, path) in enumerate(fit.sources):
        rel = os.path.relpath(Path(path).resolve(), yaml_dir.resolve())
        sources.append({kind: rel, "classes": compact_classes(ch.chosen == k)})
    label = [str(p) for _, p in fit.sources]
    per_class = {}
    for c, name in enumerate(CLASSES):
        per_class[name] = {
            "source": label[ch.chosen[c]], "best_in_sample": label[ch.best[c]],
            "dice": {label[k]: round(float(ch.scores[k, c]), 6) for k in range(len(label))},
            "picked_in_sample": round(float(ch.chosen_score()[c]), 6),
            "picked_heldout": round(float(ch.heldout_score[c]), 6),
            "single_heldout": round(float(ch.heldout_default[c]), 6),
            "why": ch.why(c),
        }
    return {
        "sources": sources,
        "fit": {
            "gt": fit.gt, "split": fit.split, "images": ch.n_images, "halves": list(ch.half_images),
            "margin": ch.margin, "split_half": ch.split_half, "default_source": label[int(ch.default[0])],
            "mdice": {k: round(v, 6) for k, v in fit.summary().items()},
            "yolohand": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "per_class": per_class,
        },
    }


def write_fusion(fit: SourceFit, out: str | os.PathLike, force: bool = False) -> Path:
    """Write the fusion YAML of ``fit`` to ``out`` atomically; returns the path written."""
    import yaml

    from yolohand.core.atomic import atomic_file
    from yolohand.core.paths import FILE, check_output

    inputs = [p for _, p in fit.sources] + [fit.gt]
    path = check_output(out, FILE, inputs, force, flag="--out")
    doc = to_yaml_doc(fit, path.parent)
    with atomic_file(path, force, kind=FILE) as fh:
        fh.write("# class-wise fusion fitted by `yolohand pick`: use with `yolohand ensemble --fusion`\n")
        yaml.safe_dump(doc, fh, sort_keys=False, width=120)
    return path


def format_source_fit(fit: SourceFit) -> str:
    """A plain table: per class the Dice of each source, the pick, in-sample and held-out scores."""
    ch = fit.choice
    width = max(len(c) for c in CLASSES)
    heads = [f"#{k}" for k in range(len(fit.sources))]
    lines = ["sources: " + ", ".join(f"#{k} {p}" for k, (_, p) in enumerate(fit.sources)),
             f"{'class':<{width}}  " + "  ".join(f"{h:>7}" for h in heads) + "  pick  held-out  single held-out"]
    for c, name in enumerate(CLASSES):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{ch.scores[k, c]:7.4f}" for k in range(len(heads)))
                     + f"  {heads[ch.chosen[c]]:>4}  {ch.heldout_score[c]:8.4f}  {ch.heldout_default[c]:15.4f}")
    return "\n".join(lines)
