"""Bone outlines shaped like bones: the anatomy of the ``xray`` phantom (version 2).

The issue-19 phantom (``--style xray19``) drew finger bones as rods with rounded ends and the
carpals as ellipses; real adult PA radiographs show otherwise (measured on held-back labelled
competition images, ``../shared/DESIGN.md`` section 1b): finger bones have a **waist** (narrowest
width mid-shaft about 0.51 of the widest end), a flared base with a concave articular surface and
a head wider than the shaft (two condyles on the phalanges, round on the metacarpals), and the
carpals are eight distinct shapes (IoU with their own fitted ellipse about 0.80, not 0.88).

Everything here is geometry in the canonical frame of :mod:`yolohand.data.synth` (reference
pixels of a 2048 image, y towards the forearm, thumb at -x). :class:`BoneShapes` is what
:func:`yolohand.data.synth.hand_outlines` calls for each bone when given; without it the older
shapes are drawn, byte for byte.

Proportions: a metacarpal's mid-shaft is about half the width of its head and base, a proximal
phalanx's shaft about 0.55 of its base (hand anthropometry, e.g. Buryanov & Kotiuk 2010; the
waist figure above); the scaphoid is a waisted, bent "boat", the lunate a crescent open
distally, the hamate a wedge, the triquetrum a pyramid, the trapezium and trapezoid irregular
quadrilaterals. Per patient, every outline is jittered (shape harmonics of
:class:`yolohand.data.synth.Patient`), so no two hands share their carpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- long bones


def _frame(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit axis ``u`` from p0 to p1, its normal ``nrm`` (u rotated +90 deg) and the length."""
    axis = np.asarray(p1, float) - np.asarray(p0, float)
    length = float(np.hypot(*axis))
    u = axis / length
    return u, np.array([-u[1], u[0]]), length


def _end_cap(centre: np.ndarray, u: np.ndarray, nrm: np.ndarray, half: float, depth: float,
             notch: float = 0.0, styloid: float = 0.0, n: int = 15) -> np.ndarray:
    """Points of a bone end from the ``+nrm`` side to the ``-nrm`` side, bulging by ``depth``
    along ``u`` (negative: a concave articular surface). ``notch``: the dip between two condyles
    (fraction of the depth); ``styloid``: a small process near the +nrm side (fraction of ``half``).
    Returns float64 (n, 2)."""
    s = np.linspace(1.0, -1.0, n)[1:-1]  # the corners belong to the sides
    bulge = np.sqrt(np.clip(1 - s**2, 0, 1)) if depth >= 0 else (1 - s**2)
    along = depth * bulge * (1 - notch * np.exp(-((s / 0.3) ** 2)))
    along += styloid * half * np.exp(-(((s - 0.72) / 0.13) ** 2))
    return centre + np.outer(s * half, nrm) + np.outer(along, u)


def profile_bone(
    p0: np.ndarray,
    p1: np.ndarray,
    w0: float,
    ws: float,
    w1: float,
    base: float = 0.25,
    head: float = 0.8,
    notch: float = 0.0,
    bend: float = 0.0,
    power: float = 1.7,
    n: int = 36,
) -> np.ndarray:
    """A long bone from its base ``p0`` to its head ``p1``: flared ends and a waisted shaft.

    Half-widths ``w0`` (base), ``ws`` (mid-shaft, the narrowest), ``w1`` (head); the width grows
    from the waist to each end as ``|t - 0.5| ** power`` (larger: a longer slim shaft). ``base``
    and ``head``: how far each end bulges beyond the sides, as a fraction of its half-width
    (``base < 0``: a concave articular surface, as a phalanx's base). ``notch``: the dip between
    two condyles of the head. The ends stay within [p0, p1]. Returns float64 (N, 2), closed
    implicitly, no self-intersection for the proportions used here.
    """
    u, nrm, length = _frame(p0, p1)
    lo = max(base, 0.0) * w0
    hi = max(head, 0.0) * w1
    t = (1 - np.cos(np.linspace(0, np.pi, n))) / 2
    s = np.abs(t - 0.5) / 0.5
    half = ws + (np.where(t < 0.5, w0, w1) - ws) * s**power
    along = lo + t * (length - lo - hi)
    centre = np.asarray(p0, float) + np.outer(along, u) + np.outer(bend * length * np.sin(np.pi * t), nrm)
    left, right = centre + np.outer(half, nrm), centre - np.outer(half, nrm)
    head_pts = _end_cap(centre[-1], u, nrm, half[-1], hi, notch)
    base_pts = _end_cap(centre[0], -u, -nrm, half[0], base * w0)
    return np.concatenate([left, head_pts, right[::-1], base_pts])


# ----------------------------------------------------------------------------- carpals

#: Control polygons of the carpals in a unit frame (x across the hand towards the ulna, y towards
#: the forearm), smoothed by corner cutting and scaled to the bone's area. Sources: PA radiograph
#: anatomy (Gray's Anatomy; Kapandji, The Physiology of the Joints vol. 1).
CARPAL_SHAPES: dict[str, tuple[tuple[float, float], ...]] = {
    # largest; a square distal body, a waist, a rounded proximal head seated in the lunate
    "Capitate": ((-0.75, -1.0), (0.05, -1.05), (0.85, -0.95), (0.95, -0.45), (0.62, 0.05), (0.8, 0.55),
                 (0.55, 0.95), (-0.05, 1.05), (-0.6, 0.9), (-0.85, 0.45), (-0.58, 0.0), (-0.95, -0.55)),
    # a wedge: wide distal base under the 4th/5th metacarpals, apex towards the lunate
    "Hamate": ((-0.85, -1.0), (0.25, -1.05), (1.0, -0.8), (0.85, -0.15), (0.45, 0.5), (-0.2, 1.05),
               (-0.65, 0.85), (-0.8, 0.2), (-1.0, -0.5)),
    # a crescent: convex towards the radius, hollow distally where the capitate's head sits
    "Lunate": ((-1.0, -0.65), (-0.45, -0.22), (0.05, -0.1), (0.5, -0.3), (1.0, -0.75), (1.0, 0.15),
               (0.62, 0.8), (0.0, 1.02), (-0.62, 0.8), (-1.0, 0.15)),
    # pyramidal, its point towards the ulna
    "Triquetrum": ((-1.0, -0.55), (0.25, -1.0), (1.0, 0.1), (0.3, 1.0), (-0.75, 0.75)),
    # a pea
    "Pisiform": ((-1.0, 0.0), (-0.7, -0.7), (0.0, -1.0), (0.7, -0.7), (1.0, 0.0), (0.7, 0.7), (0.0, 1.0),
                 (-0.7, 0.7)),
    # saddle-shaped, irregular, with its tubercle on the palmar-radial side
    "Trapezium": ((-0.9, -0.95), (0.35, -1.0), (0.9, -0.55), (1.0, 0.35), (0.5, 1.0), (-0.35, 0.9),
                  (-0.6, 0.45), (-1.0, 0.2)),
    # a small wedge ("boot") between trapezium and capitate
    "Trapezoid": ((-0.8, -1.0), (0.85, -0.9), (1.0, 0.15), (0.55, 0.95), (-0.55, 1.0), (-1.0, 0.25)),
}


def chaikin(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Corner cutting of a closed polygon (each round doubles the points): float64 (N * 2**rounds, 2)."""
    p = np.asarray(points, float)
    for _ in range(rounds):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def carpal_outline(name: str, centre: tuple[float, float], a: float, b: float, angle_deg: float,
                   harmonics: np.ndarray) -> np.ndarray:
    """A carpal bone's outline: its control polygon jittered by the patient's ``harmonics``
    (float (K, 2) amplitude, phase), smoothed, scaled to the area of the ellipse (a, b) and
    rotated by ``angle_deg`` about ``centre``. Returns float64 (N, 2)."""
    ctrl = np.array(CARPAL_SHAPES[name], float)
    phi = np.arctan2(ctrl[:, 1], ctrl[:, 0])
    r = np.ones(len(ctrl))
    for k, (amp, phase) in enumerate(harmonics, start=2):
        r += 1.5 * amp * np.cos(k * phi + phase)
    smooth = chaikin(ctrl * r[:, None] * np.array([a, b]))
    smooth -= smooth.mean(0)
    smooth *= np.sqrt(np.pi * a * b / _area(smooth))
    ang = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    return smooth @ rot.T + np.asarray(centre, float)


# ----------------------------------------------------------------------------- forearm


def radius_outline(p0: np.ndarray, p1: np.ndarray, w: float) -> np.ndarray:
    """The distal radius from ``p0`` (proximal, off the image) to ``p1`` (the articular surface):
    a slim shaft flaring over its last ~15 % to a wide end; the styloid process on the thumb
    side reaches further distally, the ulnar notch is a shallow hollow on the other side, and
    the articular surface is slightly concave (scaphoid and lunate facets). ``w``: width factor.
    Returns float64 (N, 2)."""
    u, nrm, length = _frame(p0, p1)  # nrm points to +x: the ulnar side of a right hand
    t = np.linspace(0, 1, 60)
    flare = np.clip((t - 0.8) / 0.2, 0, 1) ** 1.6
    ulnar = 33 * w + 22 * w * flare - 7 * w * np.exp(-(((t - 0.965) / 0.025) ** 2))  # the ulnar notch
    radial = 33 * w + 34 * w * flare
    centre = np.asarray(p0, float) + np.outer(t * length, u)
    left = centre + np.outer(ulnar, nrm)
    right = centre - np.outer(radial, nrm)
    styloid = right[-1] + u * 26 * w - nrm * -6 * w  # the tip, slightly back towards the axis
    s = np.linspace(0, 1, 14)[1:-1]
    top = left[-1] + np.outer(s, styloid - left[-1]) - np.outer(9 * w * np.sin(np.pi * s), u)  # concave facets
    return np.concatenate([left, top, [styloid], right[::-1]])


def ulna_outline(p0: np.ndarray, p1: np.ndarray, w: float) -> np.ndarray:
    """The distal ulna: a slim shaft, a round head and a small styloid on its ulnar side.
    Returns float64 (N, 2)."""
    u, nrm, length = _frame(p0, p1)
    head = 0.8 * 31 * w
    t = np.linspace(0, 1, 50)
    half = 21 * w + 10 * w * np.clip((t - 0.9) / 0.1, 0, 1) ** 1.5
    centre = np.asarray(p0, float) + np.outer(t * (length - head), u)
    cap = _end_cap(centre[-1], u, nrm, half[-1], head, styloid=0.35)
    return np.concatenate([centre + np.outer(half, nrm), cap, (centre - np.outer(half, nrm))[::-1]])


# ----------------------------------------------------------------------------- the set


@dataclass(frozen=True)
class BoneShapes:
    """The shapes :func:`yolohand.data.synth.hand_outlines` draws when given one: finger bones by
    their role in the ray, carpals by name, the scaphoid and the forearm bones."""

    #: mid-shaft half-width relative to the rest table's (the waist)
    shaft: float = 0.78
    #: end half-widths relative to the rest table's (flared ends keep the bone's area)
    ends: float = 1.06
    #: how far a flexed joint's bones project onto each other (fraction of the head's half-width;
    #: the rods' 0.9 would make the blunter heads and flared bases overlap too much)
    flexed_overlap: float = 0.55

    def finger(self, p0: np.ndarray, p1: np.ndarray, widths: tuple[float, float, float], role: str,
               bend: float) -> np.ndarray:
        """``role``: "metacarpal", "phalanx" (proximal or middle) or "tip" (distal phalanx)."""
        w0, ws, w1 = widths
        w0, ws, w1 = w0 * self.ends, ws * self.shaft, w1 * self.ends
        if role == "metacarpal":  # a flat-ish base on the carpus, a round head
            return profile_bone(p0, p1, w0, ws, w1, base=0.12, head=0.85, bend=bend, power=1.6)
        if role == "phalanx":  # a concave base cupping the head before it, two condyles
            return profile_bone(p0, p1, w0, ws, w1 * 0.98, base=-0.16, head=0.6, notch=0.3, bend=bend, power=1.7)
        # the distal phalanx: a flared base, a slim shaft, the tuft at the tip
        return profile_bone(p0, p1, w0, ws * 0.92, w1 * 1.12, base=-0.12, head=0.55, bend=bend, power=1.4)

    def carpal(self, name: str, centre: tuple[float, float], a: float, b: float, angle: float,
               harmonics: np.ndarray) -> np.ndarray:
        return carpal_outline(name, centre, a, b, angle, harmonics)

    def scaphoid(self, s0: np.ndarray, s1: np.ndarray, w: float, h: np.ndarray) -> np.ndarray:
        """The boat: a waisted, slightly bent bone lying obliquely under the trapezium."""
        return profile_bone(s0, s1, 33 * w * (1 + h[0]), 21 * w, 31 * w * (1 + h[1]), base=0.8, head=0.8,
                            bend=0.07, power=1.3)

    def radius(self, w: float) -> np.ndarray:
        return radius_outline(np.array([-28.0, 1400.0]), np.array([-44.0, 150.0]), w)

    def ulna(self, w: float) -> np.ndarray:
        return ulna_outline(np.array([70.0, 1400.0]), np.array([70.0, 176.0]), w)


__all__ = ["BoneShapes", "CARPAL_SHAPES", "carpal_outline", "chaikin", "profile_bone", "radius_outline",
           "ulna_outline"]
