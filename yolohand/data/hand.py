"""The hand in geometry, shared by every style of ``yolohand synth``: bone outlines, the hand
assembled in its pose, its placement in the image, pixel polygons, the soft-tissue envelope, and
the job that describes one image.

Canonical frame: reference pixels of a 2048 image, origin at the capitate, y towards the forearm,
thumb at -x (a right hand in PA view); a left hand is the mirror image. The ``flat`` style
(:mod:`yolohand.data.synth`) paints these shapes; the ``xray`` phantom
(:mod:`yolohand.data.phantom`) projects them, with the anatomical outlines of
:mod:`yolohand.data.anatomy` in its version 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from yolohand.data.anatomy import BoneShapes

REF_SIZE = 2048  # the canonical frame is in pixels of a 2048 x 2048 image
FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")


# ----------------------------------------------------------------------------- bone shapes


def long_bone(
    p0: np.ndarray,
    p1: np.ndarray,
    w0: float,
    ws: float,
    w1: float,
    cap0: float = 1.0,
    cap1: float = 1.0,
    bend: float = 0.0,
    skew1: float = 0.0,
    n: int = 48,
    flare: float = 0.2,
) -> np.ndarray:
    """Outline of a long bone from its proximal end ``p0`` to its distal end ``p1``.

    Half-widths: ``w0`` at the base, ``ws`` along the shaft, ``w1`` at the head; the ends are
    rounded with elliptic caps of length ``cap0 * w0`` / ``cap1 * w1`` (small = flat end).
    ``bend`` bows the shaft sideways (fraction of the length); ``skew1`` slants the distal end
    (the radial styloid); ``flare``: length of the widening at each end, as a fraction of the
    length (short for the long forearm bones). Returns float64 (2n, 2) x, y, counter-clockwise-ish, closed implicitly.
    """
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.hypot(*axis))
    u = axis / length
    nrm = np.array([-u[1], u[0]])
    # Denser sampling near the ends, where the outline curves most.
    t = (1 - np.cos(np.linspace(0, np.pi, n))) / 2
    half = ws + (w0 - ws) * np.exp(-((t / flare) ** 2)) + (w1 - ws) * np.exp(-(((1 - t) / flare) ** 2))
    c0 = min(cap0 * w0 / length, 0.45)
    c1 = min(cap1 * w1 / length, 0.45)
    cap = np.ones_like(t)
    lo = t < c0
    cap[lo] = np.sqrt(np.clip(1 - ((c0 - t[lo]) / c0) ** 2, 0, 1))
    hi = t > 1 - c1
    cap[hi] = np.sqrt(np.clip(1 - ((t[hi] - (1 - c1)) / c1) ** 2, 0, 1))
    half = half * np.maximum(cap, 0.0)
    centre = p0 + np.outer(t * length, u) + np.outer(bend * length * np.sin(np.pi * t), nrm)
    ramp = np.clip((t - 0.75) / 0.25, 0, 1) ** 2  # skew acts on the distal quarter only
    left = centre + np.outer(half, nrm) + np.outer(skew1 * half * ramp, u)
    right = centre - np.outer(half, nrm) - np.outer(skew1 * half * ramp, u)
    return np.concatenate([left, right[::-1]])


def round_bone(
    centre: tuple[float, float],
    a: float,
    b: float,
    angle_deg: float,
    harmonics: np.ndarray,
    n: int = 64,
) -> np.ndarray:
    """Outline of a carpal bone: an ellipse (half-axes a, b, rotated) made lumpy by harmonics.

    ``harmonics`` float (K, 2): amplitude and phase of radial harmonics 2..K+1. Returns float64
    (n, 2) x, y.
    """
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(phi)
    for k, (amp, phase) in enumerate(harmonics, start=2):
        r += amp * np.cos(k * phi + phase)
    x = a * r * np.cos(phi)
    y = b * r * np.sin(phi)
    ang = np.deg2rad(angle_deg)
    c, s = np.cos(ang), np.sin(ang)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)


def _direction(angle_deg: float) -> np.ndarray:
    """Unit vector pointing distally (up, -y) tilted by angle (positive towards +x, the ulna)."""
    a = np.deg2rad(angle_deg)
    return np.array([np.sin(a), -np.cos(a)])


def _rotate_about(points: np.ndarray, pivot: np.ndarray, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - pivot) @ rot.T + pivot


# ----------------------------------------------------------------------------- anatomy

# Finger rays in the canonical frame (reference pixels). base: carpometacarpal joint; angle:
# degrees from vertical (+ towards the little finger); lengths and half-widths
# (base, shaft, head) from the metacarpal to the distal phalanx.
_RAYS: dict[str, dict] = {
    "thumb": dict(base=(-116, -30), angle=-34, lengths=(170, 128, 92),
                  widths=((27, 19, 26), (25, 16, 21), (21, 12, 15))),
    "index": dict(base=(-58, -50), angle=-6, lengths=(262, 188, 112, 84),
                  widths=((25, 16, 27), (24, 16, 20), (20, 13, 17), (18, 10, 12))),
    "middle": dict(base=(-2, -56), angle=0, lengths=(252, 202, 128, 88),
                   widths=((26, 16, 27), (25, 16, 20), (21, 14, 17), (18, 10, 12))),
    "ring": dict(base=(52, -48), angle=7, lengths=(232, 188, 120, 86),
                 widths=((23, 15, 25), (23, 15, 19), (20, 13, 16), (17, 10, 12))),
    "little": dict(base=(94, -40), angle=15, lengths=(205, 150, 90, 78),
                   widths=((22, 14, 23), (21, 13, 17), (18, 12, 14), (16, 9, 11))),
}
# Finger bone class numbers, distal -> metacarpal (DESIGN.md).
_FINGER_CLASSES: dict[str, tuple[int, ...]] = {
    "thumb": (1, 2, 3), "index": (4, 5, 6, 7), "middle": (8, 9, 10, 11),
    "ring": (12, 13, 14, 15), "little": (16, 17, 18, 19),
}
# Carpals: centre, half-axes a, b, angle. Trapezium/Trapezoid and Triquetrum/Pisiform overlap.
_CARPALS: dict[str, tuple[tuple[float, float], float, float, float]] = {
    "Capitate": ((-2, 12), 38, 64, 0),
    "Hamate": ((64, 8), 36, 54, 15),
    "Trapezoid": ((-58, -12), 27, 32, -10),
    "Trapezium": ((-100, 8), 36, 38, -30),
    "Lunate": ((-10, 110), 40, 36, 0),
    "Triquetrum": ((56, 92), 34, 27, 28),
    "Pisiform": ((76, 106), 24, 23, 0),
}
_WRIST_PIVOT = np.array([-10.0, 160.0])  # a bent wrist rotates carpus and fingers about this


@dataclass
class Patient:
    """Per-ID anatomy: proportions shared by the left and right hand of one person."""

    scale: float  # overall hand size relative to the canonical hand
    finger_len: dict[str, float]  # per-finger length factor
    width: float  # bone width factor
    carpal_harmonics: dict[str, np.ndarray]  # lumpy carpal outlines, (3, 2) each
    bends: np.ndarray  # (19,) shaft bow of the finger bones
    density: float  # bone density factor (age, sex)


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw one person's anatomy."""
    harm = {}
    for name in list(_CARPALS) + ["Scaphoid"]:
        amps = rng.uniform(0.0, 0.05, 3) / np.arange(1, 4)
        harm[name] = np.stack([amps, rng.uniform(0, 2 * np.pi, 3)], axis=1)
    return Patient(
        scale=float(rng.uniform(0.92, 1.12)),
        finger_len={f: float(rng.normal(1.0, 0.03)) for f in FINGER_NAMES},
        width=float(rng.uniform(0.9, 1.12)),
        carpal_harmonics=harm,
        bends=rng.normal(0, 0.015, 19),
        density=float(rng.uniform(0.8, 1.15)),
    )


@dataclass
class Pose:
    """Per-image pose: how the hand lies on the detector."""

    spread: float  # degrees between neighbouring fingers added to the rest pose
    finger_jitter: np.ndarray  # (5,) degrees per finger
    thumb_abduction: float  # degrees
    wrist_bend: float  # degrees, 0 for a straight wrist (radial/ulnar deviation)


def sample_pose(rng: np.random.Generator, bent_wrist_p: float = 0.2) -> Pose:
    """Draw one image's pose; a bent wrist in about ``bent_wrist_p`` of the images."""
    bend = 0.0
    if rng.random() < bent_wrist_p:
        bend = float(rng.choice([-1, 1]) * rng.uniform(12, 28))
    return Pose(
        spread=float(rng.uniform(-1.5, 6.0)),
        finger_jitter=rng.normal(0, 2.0, 5),
        thumb_abduction=float(rng.uniform(-8, 14)),
        wrist_bend=bend,
    )


def hand_outlines(
    patient: Patient,
    pose: Pose,
    carpals: dict | None = None,
    scaphoid: tuple[tuple[float, float], tuple[float, float]] = ((-60.0, 146.0), (-120.0, 62.0)),
    flexion: np.ndarray | None = None,
    gap_scale: np.ndarray | None = None,
    shapes: BoneShapes | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """All 29 bone outlines of a right hand (thumb at -x) in the canonical frame.

    ``carpals``: centre, half-axes and angle per carpal (default: the flat style's loose carpus);
    ``scaphoid``: its proximal and distal end. ``flexion``: float (5, 3) radians per finger and
    joint (MCP, PIP, DIP; the thumb uses two): a flexed finger's phalanges are foreshortened
    and its joints project onto each other. ``gap_scale``: float (5, 3) joint-space factors.
    ``shapes``: the anatomical outlines of :mod:`yolohand.data.anatomy` (waisted finger bones,
    eight carpal shapes, the distal radius and ulna); None draws the older rods and ellipses.
    Returns (outlines: class name -> float64 (N, 2), landmarks: name -> float64 (K, 2) points
    used to draw the soft tissue: each finger's joint chain, carpometacarpal joint first).
    """
    w = patient.width
    out: dict[str, np.ndarray] = {}
    marks: dict[str, np.ndarray] = {}
    for fi, finger in enumerate(FINGER_NAMES):
        ray = _RAYS[finger]
        base = np.array(ray["base"], float)
        angle = ray["angle"] + pose.finger_jitter[fi] * 0.3
        if finger == "thumb":
            angle -= pose.thumb_abduction * 0.6
        lengths = np.array(ray["lengths"]) * patient.finger_len[finger]
        classes = _FINGER_CLASSES[finger][::-1]  # metacarpal first
        chain = [base]
        p = base
        for bi, (length, (w0, ws, w1), cls) in enumerate(zip(lengths, ray["widths"], classes)):
            if bi == 1:  # phalanges fan out around the metacarpophalangeal joint
                spread_step = {"thumb": -1.5, "index": -1, "middle": 0, "ring": 1, "little": 2}[finger]
                angle += pose.spread * spread_step + pose.finger_jitter[fi]
                if finger == "thumb":
                    angle -= pose.thumb_abduction * 0.4
            d = _direction(angle)
            gap = 0.04 * length + 5 if bi > 0 else 0.0  # joint space
            if bi > 0 and flexion is not None:  # foreshortened in projection; the heads overlap
                theta = float(flexion[fi, bi - 1])
                scale_gap = 1.0 if gap_scale is None else float(gap_scale[fi, bi - 1])
                overlap = 0.9 if shapes is None else shapes.flexed_overlap
                gap = gap * scale_gap * np.cos(theta) - np.sin(theta) * ray["widths"][bi - 1][2] * w * overlap
                length = length * np.cos(theta)
            p0 = p + d * gap
            p1 = p0 + d * length
            is_tip = bi == len(lengths) - 1
            if shapes is not None:
                role = "metacarpal" if bi == 0 else "tip" if is_tip else "phalanx"
                outline = shapes.finger(p0, p1, (w0 * w, ws * w, w1 * w), role, float(patient.bends[cls - 1]))
            else:
                outline = long_bone(
                    p0, p1, w0 * w, ws * w, w1 * w,
                    cap0=0.35, cap1=0.55 if is_tip else 0.85,
                    bend=float(patient.bends[cls - 1]),
                )
            out[f"finger-{cls}"] = outline
            chain.append(p1)
            p = p1
        marks[finger] = np.array(chain)

    for name, (centre, a, b, ang) in (carpals or _CARPALS).items():
        args = (centre, a * w * 1.06, b * w * 1.06, ang, patient.carpal_harmonics[name])
        out[name] = round_bone(*args) if shapes is None else shapes.carpal(name, *args)
    # Scaphoid: an elongated, waisted bone lying obliquely under the trapezium.
    h = patient.carpal_harmonics["Scaphoid"][:, 0]
    s0 = np.array(scaphoid[0], float)
    s1 = np.array(scaphoid[1], float)
    if shapes is not None:
        out["Scaphoid"] = shapes.scaphoid(s0, s1, w, h)
    else:
        out["Scaphoid"] = long_bone(s0, s1, 34 * w * (1 + h[0]), 26 * w, 31 * w * (1 + h[1]), cap0=1.0, cap1=1.0, n=40)

    if pose.wrist_bend:
        for name in list(out):
            if name not in ("Radius", "Ulna"):
                out[name] = _rotate_about(out[name], _WRIST_PIVOT, pose.wrist_bend)
        for name in FINGER_NAMES:
            marks[name] = _rotate_about(marks[name], _WRIST_PIVOT, pose.wrist_bend)

    # Forearm: the radius ends under scaphoid and lunate with a slanted distal end (styloid on
    # the thumb side), the ulna slightly shorter on the other side. Both run off the image.
    if shapes is not None:
        out["Radius"], out["Ulna"] = shapes.radius(w), shapes.ulna(w)
        return out, marks
    out["Radius"] = long_bone(
        (-28, 1400), (-42, 158), 40 * w, 37 * w, 68 * w, cap0=0.3, cap1=0.25, skew1=-0.4, n=96, flare=0.1
    )
    out["Ulna"] = long_bone((70, 1400), (70, 178), 24 * w, 23 * w, 31 * w, cap0=0.3, cap1=0.8, n=80, flare=0.07)
    return out, marks


# ----------------------------------------------------------------------------- placement


@dataclass
class Placement:
    """Canonical -> image affine map."""

    matrix: np.ndarray  # float64 (2, 3)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """float (N, 2) canonical -> float64 (N, 2) image x, y."""
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


def place_hand(
    rng: np.random.Generator,
    outlines: dict[str, np.ndarray],
    size: int,
    mirror: bool,
    scale: float,
    zoom: tuple[float, float] = (1.15, 1.45),
    reach_px: tuple[float, float] = (250, 450),
    rotation_sd: float = 7.0,
) -> Placement:
    """Rotate, mirror, scale (by ``zoom``, at most what fits) and translate the hand into the image.

    Every bone but the forearm, plus the distal ``reach_px`` reference px of radius and ulna,
    must fit inside the margins; the forearm then runs off the bottom edge as in real radiographs.
    """
    ang = np.deg2rad(rng.normal(0, rotation_sd))
    c, s = np.cos(ang), np.sin(ang)
    lin = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
    k = size / REF_SIZE * scale * rng.uniform(*zoom)
    # The distal part of each forearm bone must fit (cut per bone: the ulna's head can sit
    # lower than the radius', and a shared cut once left the whole ulna off the image).
    reach = rng.uniform(*reach_px)
    parts = [v for n, v in outlines.items() if n not in ("Radius", "Ulna")]
    for name in ("Radius", "Ulna"):
        bone = outlines[name]
        parts.append(bone[bone[:, 1] < float(np.min(bone[:, 1])) + reach])
    pts = np.concatenate(parts) @ lin.T
    margin = 0.03 * size
    extent = pts.max(0) - pts.min(0)
    k = min(k, (size - 2 * margin) / extent.max())  # shrink to fit
    pts = pts * k
    lo, hi = pts.min(0), pts.max(0)
    # Translation range that keeps the box inside the margins.
    tx_lo, tx_hi = margin - lo[0], size - margin - hi[0]
    ty_lo, ty_hi = margin - lo[1], size - margin - hi[1]
    tx = rng.uniform(tx_lo, tx_hi)
    ty = ty_lo + (ty_hi - ty_lo) * rng.uniform(0.4, 1.0)  # rather low: room for the forearm
    matrix = np.concatenate([lin * k, np.array([[tx], [ty]])], axis=1)
    return Placement(matrix)


# ----------------------------------------------------------------------------- polygons

_SUB = 8  # sub-pixel bits for cv2.fillPoly(shift=3)


def bone_polygon(outline_px: np.ndarray, h: int, w: int) -> np.ndarray:
    """Integer pixel contour of a float outline (image px), clipped to the image.

    Rasterises with sub-pixel precision, then takes the largest outer contour
    (CHAIN_APPROX_SIMPLE: only collinear runs are dropped, so cv2.fillPoly of the result is the
    same set of pixels as of the full pixel chain). Returns int32 (N, 2) x, y; (0, 2) when
    the bone falls outside the image.
    """
    x0 = int(np.clip(np.floor(outline_px[:, 0].min()) - 2, 0, w))
    y0 = int(np.clip(np.floor(outline_px[:, 1].min()) - 2, 0, h))
    x1 = int(np.clip(np.ceil(outline_px[:, 0].max()) + 3, 0, w))
    y1 = int(np.clip(np.ceil(outline_px[:, 1].max()) + 3, 0, h))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 2), np.int32)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((outline_px - (x0, y0)) * _SUB).astype(np.int32)
    cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=3)
    contours, _ = cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 2), np.int32)
    best = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    return best.reshape(-1, 2).astype(np.int32) + np.array([x0, y0], np.int32)


@dataclass
class Tissue:
    """Soft-tissue shapes in image pixels."""

    fingers: list[tuple[np.ndarray, float]]  # per finger: float (K, 2) joint chain, half width (px)
    palm: np.ndarray  # float (M, 2) polygon
    forearm: np.ndarray  # float (M, 2) polygon (wrist and forearm)


def tissue_canvas(tissue: Tissue, size: int) -> tuple[np.ndarray, int]:
    """The soft-tissue silhouette at low resolution: (float32 (ceil(size/f),) * 2 in [0, 1], f).

    Drawn anti-aliased at 1/f of the image side (f = 4 from 512 px up): soft tissue is smooth,
    so full resolution would only cost time.
    """
    f = 4 if size >= 512 else 2 if size >= 256 else 1
    lh = lw = -(-size // f)
    hard8 = np.zeros((lh, lw), np.uint8)  # cv2 anti-aliases on 8-bit images only

    def low(p: np.ndarray) -> np.ndarray:  # image px -> low-res fixed point (shift=4)
        return np.round(p * (16 / f)).astype(np.int32).reshape(-1, 1, 2)

    cv2.fillPoly(hard8, [low(tissue.forearm)], 255, cv2.LINE_AA, shift=4)
    cv2.fillPoly(hard8, [low(tissue.palm)], 255, cv2.LINE_AA, shift=4)
    for chain, half_width in tissue.fingers:
        thick = max(int(round(2 * half_width / f)), 1)
        cv2.polylines(hard8, [low(chain)], False, 255, thick, cv2.LINE_AA, shift=4)
    return hard8.astype(np.float32) * np.float32(1 / 255), f


@dataclass
class ImageJob:
    """Everything a worker needs to write one image and its JSON (picklable)."""

    image_path: str
    json_path: str
    rel_dir: str  # "ID001"
    name: str  # "image1661130828152_R.png"
    size: int
    seed: tuple[int, ...]  # SeedSequence entropy for this image
    patient_seed: tuple[int, ...]  # same for both hands of one ID
    mirror: bool  # True: left hand (thumb at +x)
    color: bool  # write a 3-channel PNG
    bent_wrist_p: float = 0.15  # probability of a bent wrist
    style: str = "xray"  # "xray" (version 2) / "xray19": simulated radiograph + annotator polygons; "flat": painted masks
    exact_path: str = ""  # xray style: where the renderer's exact contours go (for the label ceiling)


def tissue_shapes(
    outlines: dict[str, np.ndarray], marks: dict[str, np.ndarray], patient: Patient, place: Placement
) -> Tissue:
    """Soft-tissue envelope around the skeleton, built in the canonical frame, then placed."""
    k = place.scale
    fingers = []
    for finger in FINGER_NAMES:
        chain = marks[finger]
        step = chain[-1] - chain[-2]
        tip = chain[-1] + step / np.linalg.norm(step) * 16  # the pulp reaches past the bone
        half = {"thumb": 40, "index": 37, "middle": 38, "ring": 36, "little": 32}[finger] * patient.width
        fingers.append((place.apply(np.vstack([chain, tip])), half * k))
    # Palm: hull of the metacarpals (thumb only to its middle: the web is not filled) and carpus.
    thumb = marks["thumb"]
    palm_src = [marks[f][:2] for f in FINGER_NAMES[1:]] + [thumb[:1], (thumb[:1] + thumb[1:2]) / 2]
    palm_src += [outlines[n] for n in _CARPALS] + [outlines["Scaphoid"]]
    forearm_bones = np.vstack([outlines["Radius"], outlines["Ulna"]])
    wrist_y = forearm_bones[:, 1].min()
    palm_src.append(forearm_bones[forearm_bones[:, 1] < wrist_y + 60])  # the palm reaches the forearm
    hull = cv2.convexHull(np.vstack(palm_src).astype(np.float32)).reshape(-1, 2).astype(float)
    centre = hull.mean(0)
    palm = centre + (hull - centre) * np.array([1.14, 1.06])
    # Forearm: hull of radius and ulna, widened sideways more and more away from the wrist.
    fhull = cv2.convexHull(forearm_bones.astype(np.float32)).reshape(-1, 2).astype(float)
    fx = fhull[:, 0].mean()
    widen = 1.15 + 0.35 * np.clip((fhull[:, 1] - wrist_y) / 500, 0, 1)
    forearm = np.stack([fx + (fhull[:, 0] - fx) * widen, fhull[:, 1]], axis=1)
    return Tissue(fingers, place.apply(palm), place.apply(forearm))


