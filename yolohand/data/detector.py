"""The detector side of the ``xray`` phantom: one image's acquisition (:class:`XrayLook`), the
photons' way from the object to 8-bit pixels (:func:`detect`), and the things that are not the
hand: rings, nail art, implants, bandages, lead markers, collimator blades and, in version 2,
the detector's own marks (faint vertical striping, the saturated band along the top edge).

Every function draws from the generator it is given, in a fixed order, so an image's bytes
depend only on its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from yolohand.data.hand import FINGER_NAMES, Patient, Placement, Tissue

#: Rates of the artifacts and labelling quirks per image.
RATES = {
    "ring": 0.05, "nail_art": 0.04, "implant": 0.02, "bandage": 0.03, "marker": 0.3,
    "collimation": 0.25, "two_sesamoids": 0.5, "sesamoid_left_out": 0.08, "swap": 0.012,
}
#: Version 2's detector marks: the saturated band along the top edge (many competition images).
TOP_BAND_RATE = 0.25


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
    stripes: float = 0.0  # version 2: relative gain spread of the detector's columns
    top_band: float = 0.0  # version 2: height of the saturated band along the top edge, fraction of the side
    tissue: float = 1.0  # version 2: soft-tissue attenuation factor (body habitus, positioning)


@dataclass(frozen=True)
class LookRanges:
    """The ranges one image's acquisition is drawn from (uniform; photons log-uniform)."""

    window_lo: tuple[float, float]
    photons: tuple[float, float]
    heel: tuple[float, float]  # +- range along x, along y
    scatter: tuple[float, float]
    blur: tuple[float, float]
    mu_scale: tuple[float, float]
    window_width: tuple[float, float]
    gamma: tuple[float, float]
    texture: tuple[float, float]
    #: version 2: (stripes range, top-band height range, soft-tissue factor range); None: none drawn
    detector_marks: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None


#: Version 1 (the issue-19 phantom, ``--style xray19``).
LOOK_V1 = LookRanges(window_lo=(-0.26, -0.12), photons=(600, 4000), heel=(0.15, 0.25), scatter=(0.05, 0.3),
                     blur=(0.9, 2.0), mu_scale=(0.85, 1.1), window_width=(1.6, 2.2), gamma=(0.9, 1.25),
                     texture=(0.1, 0.25))
#: Version 2: wider domain randomisation (exposure, window, gamma, blur, scatter, soft-tissue
#: thickness), a trabecular texture that carries structure, column striping and the top band.
LOOK_V2 = LookRanges(window_lo=(-0.34, -0.12), photons=(400, 5000), heel=(0.2, 0.3), scatter=(0.04, 0.35),
                     blur=(0.8, 2.2), mu_scale=(0.85, 1.12), window_width=(1.6, 2.4), gamma=(0.8, 1.3),
                     texture=(0.3, 0.55), detector_marks=((0.002, 0.012), (0.015, 0.035), (0.55, 0.72)))


def sample_xray_look(rng: np.random.Generator, patient: Patient, ranges: LookRanges = LOOK_V1) -> XrayLook:
    """Draw one image's acquisition and its artifacts (rates: :data:`RATES`) from ``ranges``;
    version 2's detector marks (a top band in :data:`TOP_BAND_RATE` of the images) are drawn last."""
    r = ranges
    lo = float(rng.uniform(*r.window_lo))
    look = XrayLook(
        photons=float(np.exp(rng.uniform(np.log(r.photons[0]), np.log(r.photons[1])))),
        heel=(float(rng.uniform(-r.heel[0], r.heel[0])), float(rng.uniform(-r.heel[1], r.heel[1]))),
        scatter=float(rng.uniform(*r.scatter)),
        blur=float(rng.uniform(*r.blur)),
        mu_scale=float(rng.uniform(*r.mu_scale)),
        window=(lo, lo + float(rng.uniform(*r.window_width))),
        gamma=float(rng.uniform(*r.gamma)),
        density=patient.density,
        texture=float(rng.uniform(*r.texture)),
        artifacts={name: bool(rng.random() < RATES[name]) for name in
                   ("ring", "nail_art", "implant", "bandage", "marker", "collimation")},
    )
    if r.detector_marks is not None:
        stripes, band, tissue = r.detector_marks
        look.stripes = float(rng.uniform(*stripes))
        look.top_band = float(rng.uniform(*band)) if rng.random() < TOP_BAND_RATE else 0.0
        look.tissue = float(rng.uniform(*tissue))
    return look


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
    if look.stripes > 0:  # version 2: the detector's columns differ slightly in gain
        columns = cv2.GaussianBlur(rng.standard_normal((1, w)).astype(np.float32), (0, 0), 1.5)
        primary *= np.float32(1.0) + np.float32(look.stripes) * columns / np.float32(max(float(columns.std()), 1e-6))
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
    if look.top_band > 0:  # version 2: a saturated band along the top edge, with a soft lower edge
        rows = np.arange(h, dtype=np.float32)[:, None] / np.float32(h)
        band = np.clip((np.float32(look.top_band) - rows) * np.float32(h / 3.0) + 1, 0, 1)
        value = np.maximum(value, band)
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


