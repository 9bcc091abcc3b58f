"""The ``xray`` style of ``yolohand synth``: radiographs simulated by projection physics.

The ``flat`` style (:mod:`yolohand.data.synth`) paints each bone from its label mask, so a bone's
bright, sharp outline gives its boundary away. This style simulates the radiograph instead and
derives the labels as an annotator would draw them:

1. Anatomy: the same per-patient bone outlines, with the carpus packed as in a real wrist
   (Triquetrum/Pisiform and Trapezoid/Trapezium overlapping), flexed fingers foreshortened,
   joint spaces of varying width, bent wrists up to 50 degrees, and one or two sesamoid bones
   at the thumb's MCP joint. The renderer's **exact** masks are the pixel fills of these outlines.
2. Projection (:func:`render_xray`): a PA hand at about 45-50 kV. Each ray's line integral is
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
from yolohand.data.annotate import annotator_polygon
from yolohand.data.layout import polygon_crop
from yolohand.data.synth import (
    FINGER_NAMES,
    XRAY_BENT_WRIST,
    ImageJob,
    Patient,
    Placement,
    Pose,
    Tissue,
    bone_polygon,
    hand_outlines,
    place_hand,
    round_bone,
    sample_patient,
    tissue_canvas,
    tissue_shapes,
)

CM_PER_REF_PX = 0.02  # 2048-px reference frame: a metacarpal shaft ~0.65 cm wide
#: Linear attenuation at ~50 keV, 1/cm (water ~0.21, cortical bone ~0.96).
MU_TISSUE, MU_CORTEX, MU_MEDULLA = 0.21, 0.96, 0.38
#: Rates of the artifacts and labelling quirks per image.
RATES = {
    "ring": 0.05, "nail_art": 0.04, "implant": 0.02, "bandage": 0.03, "marker": 0.3,
    "collimation": 0.25, "two_sesamoids": 0.5, "sesamoid_left_out": 0.08, "swap": 0.012,
}
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


@dataclass
class XrayLook:
    """Per-image acquisition: exposure, kV-ish contrast, blur, scatter, window, artifacts."""

    photons: float  # N0: photons per pixel at 2048 behind no object (quantum noise)
    heel: tuple[float, float]  # relative exposure slope along x and y (heel effect)
    scatter: float  # scatter-to-primary ratio of the wide halo
    blur: float  # detector/focal-spot Gaussian sigma at the 2048 reference, px
    mu_scale: float  # beam hardness: harder beams (higher kV) attenuate less
    window: tuple[float, float]  # log-signal mapped to 0 and 1
    gamma: float  # display gamma
    density: float  # bone mineral factor (patient)
    texture: float  # trabecular modulation amplitude
    artifacts: dict[str, bool]


def sample_xray_look(rng: np.random.Generator, patient: Patient) -> XrayLook:
    """Draw one image's acquisition and its artifacts (rates: :data:`RATES`)."""
    lo = float(rng.uniform(-0.26, -0.12))
    return XrayLook(
        photons=float(np.exp(rng.uniform(np.log(600), np.log(4000)))),
        heel=(float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.25, 0.25))),
        scatter=float(rng.uniform(0.05, 0.3)),
        blur=float(rng.uniform(0.9, 2.0)),
        mu_scale=float(rng.uniform(0.85, 1.1)),
        window=(lo, lo + float(rng.uniform(1.6, 2.2))),
        gamma=float(rng.uniform(0.9, 1.25)),
        density=patient.density,
        texture=float(rng.uniform(0.1, 0.25)),
        artifacts={name: bool(rng.random() < RATES[name]) for name in
                   ("ring", "nail_art", "implant", "bandage", "marker", "collimation")},
    )


# ----------------------------------------------------------------------------- anatomy


def sesamoid_outlines(outlines: dict[str, np.ndarray], two: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """One or two sesamoids over the thumb's metacarpal head (finger-3's distal end)."""
    meta = outlines["finger-3"]
    half = len(meta) // 2
    head = (meta[half - 1] + meta[half]) / 2  # the distal tip of the outline
    base = (meta[0] + meta[-1]) / 2
    axis = (head - base) / np.linalg.norm(head - base)
    nrm = np.array([-axis[1], axis[0]])
    half_width = float(np.abs((meta - base) @ nrm).max())
    out = []
    for side in ((1.0, -1.0) if two else (float(rng.choice([-1.0, 1.0])),)):
        # over the head's edge: half on the metacarpal, half sticking out beside it
        centre = head - axis * rng.uniform(16, 24) + nrm * side * half_width * rng.uniform(0.8, 0.95)
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


# ----------------------------------------------------------------------------- physics


def local_half_width(d: np.ndarray, reach: int) -> np.ndarray:
    """Half-width of a shape around each pixel: the largest distance-to-edge within ``reach`` px.

    ``d`` float32 (h, w) distance transform. Returns float32 (h, w), never below ``d``.
    """
    return np.maximum(cv2.dilate(d, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1,) * 2)), d)


def chord(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Length of a circle's chord ``2 sqrt(d (2r - d))`` at depth ``d`` in a circle of radius ``r``
    (0 where ``d`` is outside it): the path of a ray through a round cross-section."""
    return 2.0 * np.sqrt(np.maximum(d * (2.0 * r - d), 0.0))


def tube_paths(mask: np.ndarray, cortex_frac: float, cortex_min_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Path lengths (px) of rays through a bone seen as a tube with a dense shell.

    ``mask`` bool/uint8 (h, w). At distance d from the edge, with local half-width r (the
    largest distance nearby), a ray crosses ``2 sqrt(d (2r - d))`` of bone (a circle's chord);
    the inner cylinder of radius ``r - c`` (``c = max(cortex_frac * r, cortex_min_px)``) is the
    medulla. Returns (cortical, medullary) float32 (h, w), zero outside the mask.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    d = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    r = local_half_width(d, max(int(np.ceil(float(d.max()))), 1))
    outer = chord(d, r)
    c = np.maximum(cortex_frac * r, np.float32(cortex_min_px))
    di = d - c
    inner = chord(di, r - c) * (di > 0)
    return (outer - inner).astype(np.float32), inner.astype(np.float32)


def band_noise(rng: np.random.Generator, h: int, w: int, fine_px: float, coarse_px: float) -> np.ndarray:
    """Band-limited noise (structure between ``fine_px`` and ``coarse_px``), unit std: float32 (h, w)."""
    white = rng.standard_normal((h, w), dtype=np.float32)
    fine = cv2.GaussianBlur(white, (0, 0), max(fine_px, 0.5))
    band = fine - cv2.GaussianBlur(fine, (0, 0), max(coarse_px, 1.0))
    return band / np.float32(max(float(band.std()), 1e-6))


def tissue_thickness_cm(tissue: Tissue, size: int, k: float, bandage: np.ndarray | None) -> np.ndarray:
    """Soft-tissue thickness in cm at full resolution: float32 (size, size).

    Fingers and forearm are elliptic in cross-section (thickness ~ 0.75 x the chord of the
    local width), capped at ~3 cm over the palm and ~4.5 cm over the forearm.
    """
    hard, f = tissue_canvas(tissue, size)
    m = (hard > 0.5).astype(np.uint8)
    d = cv2.distanceTransform(m, cv2.DIST_L2, 3) * np.float32(f)  # image px
    width_cm = chord(d, local_half_width(d, max(int(60 * k / f), 1))) * np.float32(CM_PER_REF_PX / k)
    forearm = np.zeros_like(hard)
    cv2.fillPoly(forearm, [np.round(tissue.forearm / f).astype(np.int32).reshape(-1, 1, 2)], 1.0)
    forearm = cv2.GaussianBlur(forearm, (0, 0), max(80 * k / f, 1.0))
    thickness = np.minimum(0.75 * width_cm, 2.8 + 1.7 * forearm) * np.clip(hard * 1.5, 0, 1)
    if bandage is not None:
        thickness += cv2.resize(bandage, thickness.shape[::-1], interpolation=cv2.INTER_AREA)
    thickness = cv2.GaussianBlur(thickness, (0, 0), max(1.0 * k / f, 0.5))
    return cv2.resize(thickness, (size, size), interpolation=cv2.INTER_LINEAR)


#: Per-bone physics: (cortex as a fraction of the half-width, minimum cortex in reference px,
#: medulla density factor). Long bones: thick walls, hollow shaft; carpals: thin shell, dense
#: cancellous inside; radius/ulna: the thickest walls.
_BONE_KIND = {"long": (0.3, 2.5, 1.0), "carpal": (0.12, 1.5, 1.35), "forearm": (0.32, 4.0, 0.9)}


def _kind(name: str) -> str:
    if name in ("Radius", "Ulna"):
        return "forearm"
    return "long" if name.startswith("finger-") else "carpal"


def bone_integral(
    masks: list[tuple[str, np.ndarray, int, int]], size: int, k: float, look: XrayLook, texture: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bones' attenuation line integral and their total path length (cm): float32 (size, size) each.

    ``masks``: (kind name, crop bool (h, w), y0, x0) per bone, sesamoids included; overlaps add.
    """
    mu = np.zeros((size, size), np.float32)
    length = np.zeros((size, size), np.float32)
    cm = np.float32(CM_PER_REF_PX / k)
    for name, crop, y0, x0 in masks:
        if crop.size == 0:
            continue
        frac, cmin, med = _BONE_KIND[_kind(name)]
        pad = 2
        m = cv2.copyMakeBorder(crop.astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        cort, medul = (a[pad:-pad, pad:-pad] * cm for a in tube_paths(m, frac, cmin * k))
        hh, ww = crop.shape
        tex = texture[y0 : y0 + hh, x0 : x0 + ww]
        mu_med = np.float32(MU_MEDULLA * med * look.density) * (1.0 + np.float32(look.texture) * tex)
        mu[y0 : y0 + hh, x0 : x0 + ww] += np.float32(MU_CORTEX * look.density) * cort + mu_med * medul
        length[y0 : y0 + hh, x0 : x0 + ww] += cort + medul
    return mu, length


def detect(
    rng: np.random.Generator, integral: np.ndarray, look: XrayLook, k: float, shutter: np.ndarray | None
) -> np.ndarray:
    """Photons through the object -> blurred, scattered, noisy detector -> log readout -> uint8.

    ``integral``: float32 (H, W) attenuation line integral (dimensionless). ``shutter``: float32
    (H, W) in [0, 1], 0 where the collimator blocks the beam, or None.
    """
    h, w = integral.shape
    ramp_x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ramp_y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    heel = 1.0 + np.float32(look.heel[0]) * ramp_x + np.float32(look.heel[1]) * ramp_y
    primary = heel * cv2.exp(-integral)
    if shutter is not None:
        primary *= np.float32(0.015) + np.float32(0.985) * shutter
    small = cv2.resize(primary, (max(w // 16, 1), max(h // 16, 1)), interpolation=cv2.INTER_AREA)
    halo = cv2.GaussianBlur(small, (0, 0), max(w / 16 * 0.08, 1.0))
    signal = primary + np.float32(look.scatter) * cv2.resize(halo, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = look.blur * k
    if sigma > 0.3:
        signal = cv2.GaussianBlur(signal, (0, 0), sigma)
    # Quantum noise: counts ~ Poisson(N0 * signal) per 2048-px pixel; a smaller image bins pixels.
    counts = np.float32(look.photons / k**2) * signal
    noise = np.empty((h, w), np.float32)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    cv2.randn(noise, 0.0, 1.0)
    counts = np.maximum(counts + np.sqrt(counts) * noise, np.float32(0.5))
    readout = -cv2.log(counts * np.float32(k**2 / look.photons))  # log detector: ~ the integral
    lo, hi = look.window
    value = np.clip((readout - np.float32(lo)) * np.float32(1 / (hi - lo)), 0, 1) ** np.float32(look.gamma)
    return np.round(value * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- artifacts


def _ring_mask(shape: tuple[int, int], centre: np.ndarray, axes: tuple[float, float], angle: float, k: float) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (int(centre[0]), int(centre[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)),
                float(angle), 0, 360, 1, max(int(round(9 * k)), 1), cv2.LINE_8)
    return m


def artifact_integral(
    rng: np.random.Generator, size: int, k: float, look: XrayLook, marks: dict[str, np.ndarray],
    tissue: Tissue, place: Placement, mirror: bool,
) -> np.ndarray:
    """Attenuation of rings, nail art, implants and the lead marker: float32 (size, size)."""
    extra = np.zeros((size, size), np.float32)
    art = look.artifacts
    if art["ring"]:  # a gold/steel band around a proximal phalanx: nearly opaque
        fi = int(rng.integers(1, 5))
        a, b = place.apply(marks[FINGER_NAMES[fi]][1:3])
        mid = a + (b - a) * rng.uniform(0.3, 0.55)
        half = tissue.fingers[fi][1]
        ang = np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))
        extra += 6.0 * _ring_mask(extra.shape, mid, (half * 0.3, half * 1.05), ang, k)
    if art["nail_art"]:  # metallic polish on the fingertips: a bright crescent past the tip bone
        for finger in FINGER_NAMES:
            chain = place.apply(marks[finger])
            tip, prev = chain[-1], chain[-2]
            u = (tip - prev) / np.linalg.norm(tip - prev)
            centre = tip - u * 12 * k
            ang = np.degrees(np.arctan2(u[1], u[0]))
            m = np.zeros_like(extra)
            cv2.ellipse(m, (int(centre[0]), int(centre[1])), (max(int(22 * k), 1), max(int(13 * k), 1)),
                        float(ang), 0, 360, 1.0, -1, cv2.LINE_AA)
            extra += float(rng.uniform(0.4, 1.2)) * m
    if art["implant"]:  # a plate with screws on the distal radius or a metacarpal
        if rng.random() < 0.5:  # along a metacarpal
            a, b = place.apply(marks[FINGER_NAMES[int(rng.integers(1, 5))]][:2])
        else:  # along the distal radius
            a, b = place.apply(np.array([[-30.0, 200.0], [-34.0, 420.0]]))
        cv2.line(extra, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 8.0, max(int(14 * k), 1), cv2.LINE_AA)
        for t in np.linspace(0.15, 0.85, 4):
            p = a + (b - a) * t
            cv2.circle(extra, (int(p[0]), int(p[1])), max(int(10 * k), 1), 10.0, -1, cv2.LINE_AA)
    if art["marker"]:  # lead letter in a corner, outside the hand
        glyph = np.zeros((size, size), np.uint8)
        x = size * (0.05 if rng.random() < 0.5 else 0.85)
        cv2.putText(glyph, "L" if mirror else "R", (int(x), int(size * rng.uniform(0.08, 0.16))),
                    cv2.FONT_HERSHEY_DUPLEX, max(3.0 * k, 0.35), 255, max(int(round(10 * k)), 1), cv2.LINE_AA)
        extra += glyph.astype(np.float32) * np.float32(6 / 255)
    return extra


def bandage_thickness(rng: np.random.Generator, size: int, k: float, tissue: Tissue) -> np.ndarray:
    """Extra soft-tissue-equivalent cm of a gauze bandage across the wrist: float32 (size/4,) * 2."""
    s = max(size // 4, 1)
    band = np.zeros((s, s), np.float32)
    chain = tissue.fingers[2][0] if rng.random() < 0.5 else tissue.forearm[: len(tissue.forearm) // 2]
    a, b = chain[0] / 4, chain[1] / 4
    cv2.line(band, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, max(int(70 * k / 4), 1))
    weave = 1.0 + 0.3 * np.sin(np.arange(s, dtype=np.float32) * np.float32(2.4 / max(k, 0.1)))[None, :]
    return band * weave * np.float32(rng.uniform(0.6, 1.2))


def collimation_shutter(rng: np.random.Generator, size: int, k: float) -> np.ndarray:
    """Collimator blades on one or two edges: float32 (size, size), 1 in the beam, 0 behind a blade."""
    shutter = np.ones((size, size), np.float32)
    for edge in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        depth = int(size * rng.uniform(0.004, 0.022))
        if edge == 0:
            shutter[:depth] = 0
        elif edge == 1:
            shutter[-depth:] = 0
        elif edge == 2:
            shutter[:, :depth] = 0
        else:
            shutter[:, -depth:] = 0
    return cv2.GaussianBlur(shutter, (0, 0), max(3 * k, 0.5))


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
    """Simulate one radiograph and annotate it (see the module docstring)."""
    patient = sample_patient(np.random.default_rng(np.random.SeedSequence(job.patient_seed)))
    patient.width *= WIDTH_FACTOR
    rng = np.random.default_rng(np.random.SeedSequence(job.seed + (11,)))
    xpose = sample_xray_pose(rng, job.bent_wrist_p)
    outlines, marks = hand_outlines(patient, xpose.pose, _SCALED_CARPALS, PACKED_SCAPHOID, xpose.flexion, xpose.gap_scale)
    sesamoids = sesamoid_outlines(outlines, bool(rng.random() < RATES["two_sesamoids"]), rng)
    place = place_hand(rng, outlines, job.size, job.mirror, patient.scale, ZOOM, REACH_PX)
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
    look = sample_xray_look(rng, patient)
    masks = []
    for name in CLASSES:
        poly = metacarpal_only if name == "finger-3" else exact[name]
        masks.append((name, *polygon_crop(poly, size, size)))
    for s in sesamoids:
        masks.append(("sesamoid", *polygon_crop(bone_polygon(place.apply(s), size, size), size, size)))
    texture = band_noise(rng, size, size, 1.2 * k, 6.0 * k)
    bones, bone_cm = bone_integral(masks, size, k, look, texture)
    bandage = bandage_thickness(rng, size, k, tissue) if look.artifacts["bandage"] else None
    soft = tissue_thickness_cm(tissue, size, k, bandage)
    integral = np.float32(MU_TISSUE) * np.maximum(soft - bone_cm, 0) + bones
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
