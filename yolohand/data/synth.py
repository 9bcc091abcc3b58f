"""Synthetic hand X-rays with 29 annotated bones, written in the competition layout.

The competition data is not public; tests, the demo and the benchmarks run on this instead::

    OUT/train/DCM/IDnnn/image<13-digit ms timestamp>[_L|_R].png
    OUT/train/outputs_json/IDnnn/<same stem>.json          (competition JSON schema)
    OUT/test/DCM/IDnnn/...png
    OUT/test/outputs_json/IDnnn/...json                    (absent in the real data; lets us score)

How one image is made:

1. Anatomy (:func:`hand_outlines`): every bone is a float outline in a canonical frame at the
   2048-pixel reference scale, origin at the capitate, y pointing down (towards the forearm),
   thumb on the -x side (a right hand in PA view). Long bones (metacarpals, phalanges, radius,
   ulna) have a shaft and wider, rounded ends (:func:`long_bone`); carpals are lumpy rounded
   shapes (:func:`round_bone`). Per-patient proportions and per-image pose (finger spread,
   bent wrist) vary; a left hand is the mirror image.
2. Placement: one affine map (scale, rotation, mirroring, translation) into the image.
3. Polygons (:func:`bone_polygon`): each bone outline is rasterised with sub-pixel precision
   and its outer contour taken with ``cv2.findContours`` -> an integer pixel contour (tens to
   hundreds of points). The ground truth is by definition ``cv2.fillPoly`` of those points, and
   the image is rendered from exactly those masks, so image and labels agree to the pixel.
4. Rendering (:func:`render_image`): soft-tissue envelope, bone density with a brighter cortex,
   added where bones overlap, exposure curve, blur, noise, and now and then a ring or a marker.

Everything is drawn with cv2 at full resolution (cheap) except the soft tissue (drawn at 1/4
resolution and smoothed). Each image has its own seed derived from (seed, ID, hand), so the
output is byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from yolohand.core.atomic import atomic_dir
from yolohand.core.classes import CLASSES, NUM_CLASSES
from yolohand.core.paths import DATASET
from yolohand.data.hand import (
    _CARPALS,
    FINGER_NAMES,
    REF_SIZE,
    ImageJob,
    Patient,
    Placement,
    Pose,
    Tissue,
    bone_polygon,
    hand_outlines,
    long_bone,
    place_hand,
    round_bone,
    sample_patient,
    sample_pose,
    tissue_canvas,
    tissue_shapes,
)
from yolohand.data.layout import polygon_crop
from yolohand.data.phantom import XRAY_BENT_WRIST, xray_hand
from yolohand.data.workers import cv2_single_threaded, start_pool
from yolohand.errors import YolohandError

MIN_SIZE, MAX_SIZE = 64, 8192  # smaller cannot hold 29 bones; larger than 4x the real data is a typo
FIRST_TIMESTAMP = 1661130828152  # ms; the real file names are image<13-digit timestamp>.png
# Bent wrists are rarer in train than in test, as in the real data (11 % vs 58 %): a shift.
BENT_WRIST = {"train": 0.15, "test": 0.4}
STYLES = ("xray", "xray19", "flat")
EXACT_DIR = "exact_json"  # <split>/exact_json/IDnnn/<stem>.json: the renderer's exact contours
KNOWN_BAD_NAME = "known_bad.json"  # the images the xray style mislabelled on purpose

# ----------------------------------------------------------------------------- rendering


@dataclass
class Look:
    """Per-image imaging conditions."""

    background: float  # gray level of air
    tissue: float  # attenuation of the soft tissue at full thickness
    bone: float  # attenuation of one bone layer
    contrast: float  # tone curve s + contrast * s * (1 - s): > 0 brightens mid-tones
    gain: float  # exposure: how quickly attenuation saturates to white
    blur: float  # Gaussian sigma at the 2048 reference, pixels
    noise: float  # gray levels
    ring: bool
    marker: bool


def sample_look(rng: np.random.Generator, patient: Patient) -> Look:
    """Draw one image's exposure, contrast, blur, noise and artifacts (ring 6 %, marker 12 %)."""
    return Look(
        background=float(rng.uniform(5, 35)),
        tissue=float(rng.uniform(0.28, 0.45)),
        bone=float(rng.uniform(0.85, 1.15) * patient.density),
        contrast=float(rng.uniform(-0.2, 0.3)),
        gain=float(rng.uniform(0.85, 1.2)),
        blur=float(rng.uniform(0.8, 1.8)),
        noise=float(rng.uniform(1.5, 5.0)),
        ring=bool(rng.random() < 0.06),
        marker=bool(rng.random() < 0.12),
    )


def _add_bone(acc: np.ndarray, poly: np.ndarray, weight: float, cortex_px: int, hollow: float) -> None:
    """Add one bone's density to ``acc`` (float32 (H, W)) where fillPoly(poly) is set.

    The cortex (a rim ``cortex_px`` wide) is denser than the inside, as on radiographs: the
    inside keeps ``1 - hollow`` of the density.
    """
    h, w = acc.shape
    crop, y0, x0 = polygon_crop(poly, h, w)
    if crop.size == 0:
        return
    m = crop.astype(np.float32)
    pad = cortex_px + 1
    mp = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    inner = cv2.erode(mp, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cortex_px + 1,) * 2))
    inner = inner[pad:-pad, pad:-pad]
    # Soft inner falloff keeps the medulla darker than the cortex without a hard inner edge.
    inner = cv2.GaussianBlur(inner, (0, 0), max(cortex_px * 0.8, 0.5))
    density = m * (1.0 - hollow * inner)
    acc[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] += weight * density


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency random field, roughly in [-1, 1]: float32 (h, w)."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def render_image(
    rng: np.random.Generator,
    size: int,
    polygons: dict[str, np.ndarray],
    tissue: Tissue,
    look: Look,
    ring_at: tuple | None,
    marker_at: tuple | None,
    k: float,
) -> np.ndarray:
    """Render the radiograph from the bone polygons: uint8 (size, size).

    Attenuation model: signal = 1 - exp(-gain * (tissue + bone)), so overlapping bones add up
    and saturate; this factorises into exp(-gain * tissue) (smooth: computed at low resolution)
    times exp(-gain * bone) (sharp: full resolution). ``k``: image pixels per reference pixel.
    """
    h = w = size
    # --- soft tissue at low resolution: sharp-ish skin line, thicker in the middle.
    hard, f = tissue_canvas(tissue, size)
    lh, lw = hard.shape
    profile = cv2.GaussianBlur(hard, (0, 0), max(16 * k / f, 0.5))
    thickness = hard * (0.45 + 0.8 * profile)
    thickness = cv2.GaussianBlur(thickness, (0, 0), max(1.5 * k / f, 0.5))
    thickness *= 1.0 + 0.1 * _smooth_field(rng, lh, lw, 6)
    trans_tissue = cv2.exp(thickness * np.float32(-look.gain * look.tissue))
    trans_tissue = cv2.resize(trans_tissue, (w, h), interpolation=cv2.INTER_LINEAR)
    # Exposure varies slowly over the detector (heel effect): a gentle gradient of the air level.
    ramp = np.linspace(-1, 1, 8, dtype=np.float32)
    gx, gy = rng.uniform(-0.3, 0.3, 2)
    air_small = look.background * (1 + gx * ramp[None, :] + gy * ramp[:, None])
    air = cv2.resize(air_small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    # --- bones at full resolution: cortex denser than the medulla, overlaps add up.
    bone = np.zeros((h, w), np.float32)
    cortex = max(int(round(4.5 * k)), 1)
    for name, poly in polygons.items():
        weight = 1.1 if name in ("Radius", "Ulna") else 1.0
        hollow = 0.3 if name in _CARPALS or name == "Scaphoid" else 0.55  # long bones: medullary canal
        _add_bone(bone, poly, weight, cortex, hollow)
    bone *= 1.0 + 0.07 * _smooth_field(rng, h, w, 40)  # uneven mineral density
    if ring_at is not None:  # a metal ring: very dense band around a finger
        centre, axes, angle = ring_at
        cv2.ellipse(bone, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])), float(angle), 0, 360,
                    4.0, max(int(round(9 * k)), 1), cv2.LINE_AA)
    if marker_at is not None:  # a lead marker letter in a corner
        x, y, letter = marker_at
        glyph = np.zeros((h, w), np.uint8)  # putText draws on 8-bit images only
        cv2.putText(glyph, letter, (int(x), int(y)), cv2.FONT_HERSHEY_DUPLEX, max(3.0 * k, 0.35), 255,
                    max(int(round(10 * k)), 1), cv2.LINE_AA)
        bone += glyph.astype(np.float32) * np.float32(5 / 255)
    sigma = look.blur * k
    if sigma > 0.3:
        bone = cv2.GaussianBlur(bone, (0, 0), sigma)
    trans = cv2.exp(bone * np.float32(-look.gain * look.bone))

    # --- exposure curve, detector noise (stronger where brighter), 8-bit.
    signal = 1.0 - trans_tissue * trans
    # Tone curve (cheaper than a power law, monotone for |contrast| <= 1).
    signal += np.float32(look.contrast) * signal * (1.0 - signal)
    img = air + (250.0 - air) * signal
    noise = np.empty((h, w), np.float32)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))  # cv2's RNG: fast, and seeded per image
    cv2.randn(noise, 0.0, look.noise)
    img += noise * (0.5 + signal)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- one image


def synth_hand(job: ImageJob) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Make one image: (uint8 (S, S), class name -> int32 (N, 2) polygon), in class order."""
    patient = sample_patient(np.random.default_rng(np.random.SeedSequence(job.patient_seed)))
    rng = np.random.default_rng(np.random.SeedSequence(job.seed))
    pose = sample_pose(rng, job.bent_wrist_p)
    outlines, marks = hand_outlines(patient, pose)
    place = place_hand(rng, outlines, job.size, job.mirror, patient.scale)
    k = place.scale
    size = job.size
    polygons: dict[str, np.ndarray] = {}
    for name in CLASSES:
        poly = bone_polygon(place.apply(outlines[name]), size, size)
        if len(poly) < 3:  # should not happen: placement keeps every bone inside
            raise RuntimeError(f"{job.name}: bone {name} fell outside the image")
        polygons[name] = poly

    tissue = tissue_shapes(outlines, marks, patient, place)
    look = sample_look(rng, patient)
    ring_at = None
    if look.ring:  # around the proximal phalanx of the ring finger (or another finger)
        finger = FINGER_NAMES[int(rng.integers(1, 5))]
        a, b = place.apply(marks[finger][1:3])  # proximal phalanx ends
        mid = a + (b - a) * rng.uniform(0.3, 0.55)
        direction = np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))
        half = tissue.fingers[FINGER_NAMES.index(finger)][1]  # soft-tissue half width, px
        ring_at = (mid, (max(half * 0.3, 1), max(half * 1.05, 1)), direction)
    marker_at = None
    if look.marker:
        corner = int(rng.integers(0, 2))
        x = size * (0.05 if corner == 0 else 0.83)
        marker_at = (x, size * rng.uniform(0.08, 0.2), "L" if job.mirror else "R")
    img = render_image(rng, size, polygons, tissue, look, ring_at, marker_at, k)
    return img, polygons


def annotation_json(job: ImageJob, polygons: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
    """The competition JSON for one image: all eight top-level keys, annotations in class order."""

    def new_uuid() -> str:
        return str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))

    annotations = [
        {
            "id": f"{i + 1}-{new_uuid()}",
            "type": "poly_seg",
            "attributes": {},
            "points": polygons[name].tolist(),
            "label": name,
        }
        for i, name in enumerate(CLASSES)
    ]
    return {
        "annotations": annotations,
        "attributes": {},
        "file_id": new_uuid(),
        "filename": Path(job.name).with_suffix(".jpg").name,  # the real files say .jpg too
        "parent_path": f"/{job.rel_dir}",
        "last_modifier_id": new_uuid(),
        "metadata": {"height": 3060, "width": 3060},  # wrong on purpose, like the real data
        "last_workers": {},
    }


# Fast PNG: one cheap filter and Huffman-only deflate (LZ matching gains little on noisy images).
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
    _PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


def write_image(job: ImageJob) -> tuple[int, str | None]:
    """Render and write one PNG + JSON (+ the exact contours in the xray style).

    Returns (polygon points written, "a<->b" when the xray style swapped two labels, else None).
    """
    swapped = None
    if job.style != "flat":
        made = xray_hand(job)
        img, polygons = made.image, made.polygons
        swapped = "<->".join(made.swapped) if made.swapped else None
        exact_doc = {"bent_wrist": made.bent, "swapped": swapped,
                     "exact": {name: c.tolist() for name, c in made.exact.items()}}
        Path(job.exact_path).parent.mkdir(parents=True, exist_ok=True)
        Path(job.exact_path).write_text(json.dumps(exact_doc, separators=(",", ":")), encoding="utf-8")
    else:
        img, polygons = synth_hand(job)
    if job.color:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    ok, buf = cv2.imencode(".png", img, _PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"{job.image_path}: PNG encoding failed")
    Path(job.image_path).parent.mkdir(parents=True, exist_ok=True)
    Path(job.json_path).parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(job.image_path)
    doc = annotation_json(job, polygons, np.random.default_rng(np.random.SeedSequence(job.seed + (7,))))
    # json.dumps uses the C encoder (json.dump to a file does not): ~10x faster.
    Path(job.json_path).write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return sum(len(p) for p in polygons.values()), swapped


# ----------------------------------------------------------------------------- dataset


@dataclass
class SynthSummary:
    """What generate_dataset wrote."""

    out: Path
    size: int
    seed: int
    train_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)
    train_images: int = 0
    test_images: int = 0
    points: int = 0
    workers: int = 1
    seconds: float = 0.0
    style: str = "xray"
    mislabelled: int = 0  # xray style: images with two labels swapped on purpose (known_bad.json)

    @property
    def images(self) -> int:
        return self.train_images + self.test_images

    def lines(self) -> list[str]:
        """Human-readable summary lines for the CLI."""
        return [
            f"wrote {self.images} images ({self.train_images} train, {self.test_images} test) "
            f"at {self.size}x{self.size} to {self.out}",
            f"IDs: {len(self.train_ids)} train, {len(self.test_ids)} test; seed {self.seed}; "
            f"{self.points / max(self.images * NUM_CLASSES, 1):.0f} points per polygon on average",
            f"style {self.style}" + (f"; {self.mislabelled} image(s) mislabelled on purpose (known_bad.json)"
                                     if self.style != "flat" else ""),
            f"{self.seconds:.1f} s with {self.workers} worker(s)",
        ]


def plan_jobs(
    out: Path, train_ids: int, test_ids: int, size: int, seed: int, style: str = "xray"
) -> tuple[list[ImageJob], list[str], list[str]]:
    """Decide IDs, file names and per-image seeds. Returns (jobs, train IDs, test IDs).

    IDs are ID001..IDnnn with the test IDs drawn among them (as in the real data); two images
    per ID, left and right hand in random order, names image<13-digit ms timestamp>.png with
    an _L/_R suffix for about a quarter of the IDs; timestamps increase, so names are unique.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    total = train_ids + test_ids
    test_numbers = set((rng.choice(total, size=test_ids, replace=False) + 1).tolist()) if test_ids else set()
    digits = max(3, len(str(total)))
    ts = FIRST_TIMESTAMP
    jobs: list[ImageJob] = []
    train, test = [], []
    for number in range(1, total + 1):
        pid = f"ID{number:0{digits}d}"
        split = "test" if number in test_numbers else "train"
        (test if split == "test" else train).append(pid)
        suffixed = rng.random() < 0.25
        hands = [False, True] if rng.random() < 0.5 else [True, False]
        for mirror in hands:
            ts += int(rng.integers(3_000, 900_000))
            stem = f"image{ts}" + (("_L" if mirror else "_R") if suffixed else "")
            jobs.append(
                ImageJob(
                    image_path=str(out / split / "DCM" / pid / f"{stem}.png"),
                    json_path=str(out / split / "outputs_json" / pid / f"{stem}.json"),
                    rel_dir=pid,
                    name=f"{stem}.png",
                    size=size,
                    seed=(seed, number, int(mirror)),
                    patient_seed=(seed, number),
                    mirror=mirror,
                    color=bool(rng.random() < 0.3),
                    bent_wrist_p=(BENT_WRIST if style == "flat" else XRAY_BENT_WRIST)[split],
                    style=style,
                    exact_path=str(out / split / EXACT_DIR / pid / f"{stem}.json") if style != "flat" else "",
                )
            )
    return jobs, train, test


#: Most IDs one dataset may have (:func:`check_synth_args`): 200 000 images, every job planned up front
#: (~150 MB, ~20 s on a slow CPU); 100 M IDs took 13 GB before the first file.
MAX_IDS = 100_000


def check_synth_args(train_ids: int, test_ids: int, size: int, workers: int | None = None, style: str = "xray") -> None:
    """YolohandError naming the option when an argument of :func:`generate_dataset` is out of range."""
    if train_ids < 0 or test_ids < 0 or train_ids + test_ids == 0:
        raise YolohandError(f"--train-ids {train_ids} --test-ids {test_ids}: need at least one ID, none negative")
    if train_ids + test_ids > MAX_IDS:  # every job is planned before the first image
        raise YolohandError(f"--train-ids {train_ids} --test-ids {test_ids}: at most {MAX_IDS} IDs in all (two images "
                            "each); write several datasets (--seed) for more")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise YolohandError(f"--size {size}: must be between {MIN_SIZE} (29 bones must fit) and {MAX_SIZE}")
    if workers is not None and workers < 0:
        raise YolohandError(f"--workers {workers}: must be 0 or more")
    if style not in STYLES:
        raise YolohandError(f"--style {style}: must be one of {', '.join(STYLES)}")


def generate_dataset(
    out: str | os.PathLike,
    train_ids: int = 20,
    test_ids: int = 5,
    size: int = 2048,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    style: str = "xray",
) -> SynthSummary:
    """Write a synthetic dataset in the competition layout to ``out`` (atomically).

    ``style``: ``"xray"`` (default) simulates radiographs and annotator polygons
    (:mod:`yolohand.data.phantom`), also writing ``<split>/exact_json/`` (exact contours) and
    ``known_bad.json`` (the images mislabelled on purpose); ``"flat"`` is the earlier generator,
    byte for byte, whose labels are the rendered masks.

    ``workers``: processes (default: CPU count; 0 or 1 renders in this process). The output is
    identical for a seed whatever ``workers`` is. Raises YolohandError on bad arguments (see
    :func:`check_synth_args`) or when ``out`` cannot be written (:func:`yolohand.core.paths.check_output`:
    exists without ``force``, is not a previous synthetic dataset, not writable), before any work.
    """
    from tqdm.auto import tqdm

    check_synth_args(train_ids, test_ids, size, workers, style)
    start = time.perf_counter()
    with atomic_dir(out, force, kind=DATASET) as tmp:
        jobs, train, test = plan_jobs(tmp, train_ids, test_ids, size, seed, style)
        n_workers = min(os.cpu_count() or 1, len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
        points = 0
        bad: dict[str, str] = {}
        with tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress) as bar:
            with contextlib.ExitStack() as stack:
                done = map(write_image, jobs)
                if n_workers > 1:  # a Pool (not an Executor): leaving on Ctrl-C terminates the workers at once
                    stack.enter_context(cv2_single_threaded())
                    done = stack.enter_context(start_pool(n_workers)).imap(write_image, jobs, chunksize=1)
                for job, (n, swapped) in zip(jobs, done):
                    points += n
                    if swapped:
                        bad[f"{Path(job.image_path).parent.parent.parent.name}/{job.rel_dir}/{job.name}"] = swapped
                    bar.update()
        if style != "flat":
            (tmp / KNOWN_BAD_NAME).write_text(json.dumps(
                {"why": "labels swapped on purpose, like the real ID058/ID089", "images": bad}, indent=1))
    summary = SynthSummary(
        out=Path(out),
        size=size,
        seed=seed,
        train_ids=train,
        test_ids=test,
        train_images=2 * len(train),
        test_images=2 * len(test),
        points=points,
        workers=n_workers,
        seconds=time.perf_counter() - start,
        style=style,
        mislabelled=len(bad),
    )
    return summary


__all__ = [
    "ImageJob",
    "SynthSummary",
    "bone_polygon",
    "generate_dataset",
    "hand_outlines",
    "long_bone",
    "round_bone",
    "synth_hand",
    "REF_SIZE",
    "FIRST_TIMESTAMP",
    "FINGER_NAMES",
    "BENT_WRIST",
    "Patient",
    "sample_patient",
    "Pose",
    "sample_pose",
    "Placement",
    "place_hand",
    "Look",
    "sample_look",
    "Tissue",
    "render_image",
    "tissue_shapes",
    "annotation_json",
    "write_image",
    "plan_jobs",
    "check_synth_args",
]
