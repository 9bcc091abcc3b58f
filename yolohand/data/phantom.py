"""The ``xray`` style of ``yolohand synth``: radiographs simulated by projection physics.

The ``flat`` style (:mod:`yolohand.data.synth`) paints each bone from its label mask, so a bone's
bright, sharp outline gives its boundary away. This style simulates the radiograph instead and
derives the labels as an annotator would draw them. This module samples one image and puts the
parts together; each part has a module of its own, imported one way (no circle):
:mod:`~yolohand.data.hand` (the skeleton in geometry, pose, placement), :mod:`~yolohand.data.anatomy`
(version 2's bone shapes), :mod:`~yolohand.data.projection` (line integrals through tissue and
bone), :mod:`~yolohand.data.detector` (acquisition, detector, artifacts) and
:mod:`~yolohand.data.annotate` (the annotator's polygons).

Two versions, each reproducible byte for byte: ``--style xray`` (version 2, issue 25: waisted
finger bones with flared bases and condyles, eight carpal shapes, the distal radius and ulna,
cortex and cancellous bone varying along each bone, a trabecular network, per-bone thickness
calibrated on the intensity ladder of real radiographs, wider domain randomisation, detector
striping and a saturated top band) and ``--style xray19`` (the first phantom, issue 19).

1. Anatomy: per-patient bone outlines, with the carpus packed as in a real wrist
   (Triquetrum/Pisiform and Trapezoid/Trapezium overlapping), flexed fingers foreshortened,
   joint spaces of varying width, bent wrists up to 50 degrees, and one or two sesamoid bones
   at the thumb's MCP joint. The renderer's **exact** masks are the pixel fills of these outlines.
2. Projection (:func:`~yolohand.data.projection.bone_integral`): a PA hand at about 45-50 kV. Each ray's line integral is
   ``mu_tissue * (T - sum L_bone) + sum(mu_cortex * L_cortex + mu_medulla * L_medulla)`` in cm;
   a bone is a tube (or, for the carpals, a dome) whose path lengths come from its mask's distance
   transform: the dense cortical shell makes a long bone's walls brighter than its middle, and
   attenuation adds where bones overlap. Trabecular texture modulates the medulla. Photons
   ``N0 * heel * exp(-integral)`` plus a wide scatter halo pass a detector blur and Poisson
   (Gaussian-approximated) noise; the readout is logarithmic and windowed to 8 bits. Exposure
   (N0), window, blur and scatter vary per image; collimation edges, a lead side marker, rings,
   nail art, a metal implant and bandages appear at low rates.
3. Annotation (:mod:`yolohand.data.annotate`): the JSON polygon is what an annotator would
   draw: tens of points on the edge with 1-3 px (at 2048) deviation, locally smoothed, slivers
   cut or added at overlaps; the sesamoid left out of finger-3 in ~8 % of images; ~1 % of the
   images with two classes swapped (listed in ``known_bad.json``). The polygons are the ground
   truth (as in the competition); the exact contours go to ``<split>/exact_json/`` only to report
   the label ceiling (:mod:`yolohand.data.phantom_stats`).

Units: outlines are in reference pixels of a 2048 image; ``CM_PER_REF_PX`` turns them into cm
(a hand of ~19 cm from the wrist to the middle fingertip). Each image draws from its own seed,
so the bytes depend only on (seed, ID, hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from yolohand.core.classes import CLASSES
from yolohand.data.anatomy import BoneShapes
from yolohand.data.annotate import annotator_polygon
from yolohand.data.detector import (
    LOOK_V1,
    LOOK_V2,
    RATES,
    XrayLook,
    artifact_integral,
    bandage_thickness,
    collimation_shutter,
    detect,
    sample_xray_look,
)
from yolohand.data.hand import (
    ImageJob,
    Pose,
    bone_polygon,
    hand_outlines,
    place_hand,
    round_bone,
    sample_patient,
    tissue_shapes,
)
from yolohand.data.layout import polygon_crop
from yolohand.data.projection import (
    CM_PER_REF_PX,
    MU_CORTEX,
    MU_MEDULLA,
    MU_TISSUE,
    band_noise,
    bone_integral,
    bone_integral_v2,
    tissue_thickness_cm,
    tube_paths,
)

#: The xray style follows the real shares of bent wrists (DESIGN.md): ~11 % of train, ~58 % of test.
XRAY_BENT_WRIST = {"train": 0.11, "test": 0.58}
#: Label swaps of the mislabelled images (like the real ID089: Trapezium <-> Trapezoid).
SWAPS = (("Trapezium", "Trapezoid"), ("Triquetrum", "Pisiform"), ("finger-4", "finger-8"))

# Carpals packed as in a real wrist: centre, half-axes, angle (reference px, canonical frame).
# Pisiform lies palmar to the triquetrum and projects mostly onto it (IoU ~0.45); the
# trapezoid tucks under the trapezium (IoU ~0.2); neighbours touch or overlap slightly.
PACKED_CARPALS: dict[str, tuple[tuple[float, float], float, float, float]] = {
    "Capitate": ((-4, 14), 33, 55, 0),
    "Hamate": ((64, 8), 31, 47, 15),
    "Trapezoid": ((-62, -6), 26, 29, -10),
    "Trapezium": ((-100, 12), 34, 36, -30),
    "Lunate": ((-10, 110), 36, 31, 0),
    "Triquetrum": ((60, 92), 32, 26, 28),
    "Pisiform": ((67, 100), 20, 18, 0),
}
#: Bones ~20 % wider than the flat style's and the hand larger in the image (bone share ~12 %).
WIDTH_FACTOR = 1.25
CARPAL_FACTOR = 0.96  # the carpals keep their size (1.25 * 0.96 = 1.2): wider ones overlap too much
ZOOM, REACH_PX = (1.3, 1.6), (130.0, 260.0)
PACKED_SCAPHOID = ((-56.0, 140.0), (-112.0, 62.0))
_SCALED_CARPALS = {n: (c, a * CARPAL_FACTOR, b * CARPAL_FACTOR, ang) for n, (c, a, b, ang) in PACKED_CARPALS.items()}
#: Version 2: anatomical outlines, and hands more rotated on the detector (sd 12 deg, was 7).
SHAPES_V2 = BoneShapes()
ROTATION_SD_V2 = 12.0
ZOOM_V2 = (1.36, 1.68)  # the waisted bones cover less: the hand a little larger keeps the bone share ~12 %


# ----------------------------------------------------------------------------- sampling


@dataclass
class XrayPose:
    """Per-image pose beyond :class:`Pose`: finger flexion and joint spaces."""

    pose: Pose
    flexion: np.ndarray  # float (5, 3) radians per finger and joint
    gap_scale: np.ndarray  # float (5, 3) joint-space factors


def sample_xray_pose(rng: np.random.Generator, bent_wrist_p: float) -> XrayPose:
    """Draw a pose: finger spread, a flexed finger now and then, a bent wrist (up to 50 deg)."""
    bend = float(rng.normal(0, 2.5))
    if rng.random() < bent_wrist_p:
        bend = float(rng.choice([-1, 1]) * rng.uniform(12, 50))
    pose = Pose(
        spread=float(rng.uniform(-1.5, 7.0)),
        finger_jitter=rng.normal(0, 2.0, 5),
        thumb_abduction=float(rng.uniform(-8, 16)),
        wrist_bend=bend,
    )
    flexed = rng.random(5) < 0.2
    flexion = np.where(flexed[:, None], rng.uniform(0.15, 0.7, (5, 3)), rng.uniform(0.0, 0.12, (5, 3)))
    gap_scale = np.clip(rng.normal(1.0, 0.25, (5, 3)), 0.45, 1.6)
    return XrayPose(pose, flexion, gap_scale)


# ----------------------------------------------------------------------------- anatomy


def sesamoid_outlines(outlines: dict[str, np.ndarray], two: bool, rng: np.random.Generator,
                      ends: np.ndarray | None = None) -> list[np.ndarray]:
    """One or two sesamoids over the thumb's metacarpal head (finger-3's distal end).

    ``ends``: float (2, 2) the metacarpal's base and head points (the thumb's joint chain);
    None reads them off the outline as the issue-19 rods were laid out (tip mid-array)."""
    meta = outlines["finger-3"]
    if ends is None:
        half = len(meta) // 2
        head = (meta[half - 1] + meta[half]) / 2  # the distal tip of the outline
        base = (meta[0] + meta[-1]) / 2
    else:
        base, head = np.asarray(ends[0], float), np.asarray(ends[1], float)
    axis = (head - base) / np.linalg.norm(head - base)
    nrm = np.array([-axis[1], axis[0]])
    half_width = float(np.abs((meta - base) @ nrm).max())
    out = []
    for side in ((1.0, -1.0) if two else (float(rng.choice([-1.0, 1.0])),)):
        # over the head's edge: half on the metacarpal, half sticking out beside it
        out_by = 1.0 if ends is None else 1.12  # the waisted shaft: the head's sides stand out further
        centre = head - axis * rng.uniform(16, 24) + nrm * side * half_width * rng.uniform(0.8, 0.95) * out_by
        r = rng.uniform(8, 11)
        out.append(round_bone(tuple(centre), r, r * rng.uniform(0.8, 1.0), float(rng.uniform(0, 180)),
                              np.zeros((1, 2)), n=24))
    return out


def union_polygon(outlines_px: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Integer pixel contour of the union of several float outlines: int32 (N, 2) x, y."""
    pts = np.concatenate(outlines_px)
    x0, y0 = (np.floor(pts.min(0)) - 2).astype(int).clip(0, [w, h])
    x1, y1 = (np.ceil(pts.max(0)) + 3).astype(int).clip(0, [w, h])
    canvas = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
    for o in outlines_px:
        q = np.round((o - (x0, y0)) * 8).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [q], 1, lineType=cv2.LINE_8, shift=3)
    contours, _ = cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    return best.reshape(-1, 2).astype(np.int32) + np.array([x0, y0], np.int32)


# ----------------------------------------------------------------------------- one image


@dataclass
class XrayImage:
    """One simulated radiograph with its labels."""

    image: np.ndarray  # uint8 (S, S)
    polygons: dict[str, np.ndarray]  # class name -> int32 (N, 2): the annotator's polygons (ground truth)
    exact: dict[str, np.ndarray]  # class name -> int32 (M, 2): the renderer's exact pixel contours
    swapped: tuple[str, str] | None  # the two classes whose labels were swapped, if any
    bent: bool  # the wrist is bent (|angle| >= 12 deg)


def xray_hand(job: ImageJob) -> XrayImage:
    """Simulate one radiograph and annotate it (see the module docstring). ``job.style``:
    ``"xray"`` (version 2: anatomical shapes, the measured intensity ladder) or ``"xray19"``
    (the issue-19 version, byte for byte)."""
    v2 = job.style != "xray19"
    patient = sample_patient(np.random.default_rng(np.random.SeedSequence(job.patient_seed)))
    patient.width *= WIDTH_FACTOR
    rng = np.random.default_rng(np.random.SeedSequence(job.seed + (11,)))
    xpose = sample_xray_pose(rng, job.bent_wrist_p)
    outlines, marks = hand_outlines(patient, xpose.pose, _SCALED_CARPALS, PACKED_SCAPHOID, xpose.flexion, xpose.gap_scale,
                                    shapes=SHAPES_V2 if v2 else None)
    sesamoids = sesamoid_outlines(outlines, bool(rng.random() < RATES["two_sesamoids"]), rng,
                                  marks["thumb"][:2] if v2 else None)
    place = place_hand(rng, outlines, job.size, job.mirror, patient.scale, ZOOM_V2 if v2 else ZOOM, REACH_PX,
                       rotation_sd=ROTATION_SD_V2 if v2 else 7.0)
    k, size = place.scale, job.size
    exact: dict[str, np.ndarray] = {}
    metacarpal_only = None
    for name in CLASSES:
        px = place.apply(outlines[name])
        if name == "finger-3":  # the sesamoids are labelled as part of the thumb metacarpal
            exact[name] = union_polygon([px] + [place.apply(s) for s in sesamoids], size, size)
            metacarpal_only = bone_polygon(px, size, size)
        else:
            exact[name] = bone_polygon(px, size, size)
        if len(exact[name]) < 3:
            raise RuntimeError(f"{job.name}: bone {name} fell outside the image")

    tissue = tissue_shapes(outlines, marks, patient, place)
    look = sample_xray_look(rng, patient, LOOK_V2 if v2 else LOOK_V1)
    masks = []
    for name in CLASSES:
        poly = metacarpal_only if name == "finger-3" else exact[name]
        masks.append((name, *polygon_crop(poly, size, size)))
    for s in sesamoids:
        masks.append(("sesamoid", *polygon_crop(bone_polygon(place.apply(s), size, size), size, size)))
    if v2:
        bones, bone_cm = bone_integral_v2(masks, size, k, look, rng)
    else:
        bones, bone_cm = bone_integral(masks, size, k, look, band_noise(rng, size, size, 1.2 * k, 6.0 * k))
    bandage = bandage_thickness(rng, size, k, tissue) if look.artifacts["bandage"] else None
    soft = tissue_thickness_cm(tissue, size, k, bandage)
    integral = np.float32(MU_TISSUE * look.tissue) * np.maximum(soft - bone_cm, 0) + bones  # version 1: tissue 1.0
    integral *= np.float32(look.mu_scale)
    integral += artifact_integral(rng, size, k, look, marks, tissue, place, job.mirror)
    shutter = collimation_shutter(rng, size, k) if look.artifacts["collimation"] else None
    image = detect(rng, integral, look, k, shutter)

    arng = np.random.default_rng(np.random.SeedSequence(job.seed + (13,)))
    polygons = {}
    for name in CLASSES:
        source = exact[name]
        if name == "finger-3" and arng.random() < RATES["sesamoid_left_out"]:
            source = metacarpal_only
        polygons[name] = annotator_polygon(source, exact, name, size, arng)
    swapped = None
    if arng.random() < RATES["swap"]:
        a, b = SWAPS[int(arng.integers(0, len(SWAPS)))]
        polygons[a], polygons[b] = polygons[b], polygons[a]
        swapped = (a, b)
    return XrayImage(image, polygons, exact, swapped, abs(xpose.pose.wrist_bend) >= 12)


__all__ = [
    "CM_PER_REF_PX", "MU_TISSUE", "MU_CORTEX", "MU_MEDULLA", "RATES", "SWAPS", "XRAY_BENT_WRIST",
    "PACKED_CARPALS", "XrayImage", "XrayLook", "XrayPose", "band_noise", "bone_integral", "detect",
    "sample_xray_look", "sample_xray_pose", "tissue_thickness_cm", "tube_paths", "union_polygon", "xray_hand",
]
