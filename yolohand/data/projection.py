"""Projection physics of the ``xray`` phantom: line integrals of attenuation through soft
tissue and bone (Beer-Lambert), in cm, from the bones' masks.

A bone is a tube (long bones) or a dome (carpals) whose path lengths come from its mask's
distance transform; the dense cortical shell makes a long bone's walls brighter than its middle,
and attenuation adds where bones overlap. Version 2 (:func:`bone_integral_v2`) adds what real
radiographs show: the cortex thick mid-shaft and thin at the ends, cancellous bone densest in the
ends and the carpals, a trabecular network with lengthwise struts in the shafts, flattened
forearm bones, and the hamate's hook as a ring of cortex inside it.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolohand.data.detector import XrayLook
from yolohand.data.hand import Tissue, tissue_canvas

CM_PER_REF_PX = 0.02  # 2048-px reference frame: a metacarpal shaft ~0.65 cm wide
#: Linear attenuation at ~50 keV, 1/cm (water ~0.21, cortical bone ~0.96).
MU_TISSUE, MU_CORTEX, MU_MEDULLA = 0.21, 0.96, 0.38


def local_half_width(d: np.ndarray, reach: int) -> np.ndarray:
    """Half-width of a shape around each pixel: the largest distance-to-edge within ``reach`` px.

    ``d`` float32 (h, w) distance transform. Returns float32 (h, w), never below ``d``.
    """
    return np.maximum(cv2.dilate(d, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1,) * 2)), d)


def chord(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Length of a circle's chord ``2 sqrt(d (2r - d))`` at depth ``d`` in a circle of radius ``r``
    (0 where ``d`` is outside it): the path of a ray through a round cross-section."""
    return 2.0 * np.sqrt(np.maximum(d * (2.0 * r - d), 0.0))


def tube_paths(mask: np.ndarray, cortex_frac: float | np.ndarray, cortex_min_px: float) -> tuple[np.ndarray, np.ndarray]:
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




# ----------------------------------------------------------------------------- version 2

#: Version 2's per-bone physics: (cortex as a fraction of the half-width mid-shaft, minimum cortex
#: in reference px, cancellous density factor, thickness: path length along the beam relative to a
#: round cross-section of the bone's width). The thickness factors are calibrated on the intensity
#: ladder of real radiographs (DESIGN.md 1b): finger bones are thicker front to back than their
#: projected width suggests, the radius's wide distal end is flat.
KIND_V2 = {"tip": (0.3, 2.0, 1.0, 2.1), "phalanx": (0.36, 2.5, 0.8, 2.0), "metacarpal": (0.36, 2.5, 0.8, 1.5),
           "carpal": (0.12, 1.5, 1.3, 1.7), "Radius": (0.3, 4.0, 0.85, 0.93), "Ulna": (0.32, 4.0, 0.9, 1.95)}
FINGERTIPS = {"finger-1", "finger-4", "finger-8", "finger-12", "finger-16"}
METACARPALS = {"finger-3", "finger-7", "finger-11", "finger-15", "finger-19"}


def _kind_v2(name: str) -> str:
    if name in ("Radius", "Ulna"):
        return name
    if name in FINGERTIPS:
        return "tip"
    if name in METACARPALS:
        return "metacarpal"
    return "phalanx" if name.startswith("finger-") else "carpal"


def principal_axis(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A shape's long axis and each pixel's place along it: (unit float64 (2,) x, y; float32
    (h, w) in [0, 1] from one end of the shape to the other)."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    mean = pts.mean(0)
    axis = np.linalg.svd(pts - mean, full_matrices=False)[2][0]
    h, w = mask.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    proj = (gx - np.float32(mean[0])) * np.float32(axis[0]) + (gy - np.float32(mean[1])) * np.float32(axis[1])
    inside = proj[mask > 0]
    lo, hi = float(inside.min()), float(inside.max())
    return axis, np.clip((proj - lo) / max(hi - lo, 1.0), 0, 1).astype(np.float32)


def trabecular(rng: np.random.Generator, h: int, w: int, k: float, axis: np.ndarray | None) -> np.ndarray:
    """Trabecular texture: a network of struts ~5-15 px apart at 2048 (the zero crossings of
    band-limited noise), smeared along ``axis`` (lengthwise streaks of a shaft) when given.
    Returns float32 (h, w), zero mean, unit std."""
    white = rng.standard_normal((h, w), dtype=np.float32)
    fine = cv2.GaussianBlur(white, (0, 0), max(1.8 * k, 0.6))
    band = fine - cv2.GaussianBlur(fine, (0, 0), max(5.0 * k, 1.0))
    if axis is not None:
        n = max(int(round(11 * k)) | 1, 3)
        line = np.zeros((n, n), np.float32)
        c = n // 2
        end = np.round(axis * c).astype(int)
        cv2.line(line, (c - end[0], c - end[1]), (c + end[0], c + end[1]), 1.0, 1, cv2.LINE_AA)
        band = cv2.filter2D(band, -1, line / line.sum())
    band /= np.float32(max(float(band.std()), 1e-6))
    net = np.float32(1.0) - np.minimum(np.abs(band), np.float32(1.5))  # ridges where the noise crosses zero
    net -= np.float32(net.mean())
    return net / np.float32(max(float(net.std()), 1e-6))


def bone_integral_v2(
    masks: list[tuple[str, np.ndarray, int, int]], size: int, k: float, look: XrayLook, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Version 2 of :func:`bone_integral`: the same tube model, plus the cortex thinning and the
    cancellous bone thickening towards the ends of long bones, per-bone depth, a trabecular
    network (lengthwise in shafts) and the hamate's hook. Returns (attenuation line integral,
    bone path length in cm): float32 (size, size) each; overlaps add."""
    mu = np.zeros((size, size), np.float32)
    length = np.zeros((size, size), np.float32)
    cm = np.float32(CM_PER_REF_PX / k)
    for name, crop, y0, x0 in masks:
        if crop.size == 0 or not crop.any():
            continue
        kind = _kind_v2(name)
        frac, cmin, med, depth = KIND_V2[kind]
        pad = 2
        m = cv2.copyMakeBorder(crop.astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        axis, t = principal_axis(m)
        ends = np.zeros_like(t)
        if kind in ("tip", "phalanx", "metacarpal"):  # the epiphyses: thin cortex, dense cancellous bone
            ends = np.minimum(np.exp(-((t / 0.2) ** 2)) + np.exp(-(((1 - t) / 0.2) ** 2)), 1).astype(np.float32)
        cort, medul = (a[pad:-pad, pad:-pad] * np.float32(depth) * cm
                       for a in tube_paths(m, np.float32(frac) * (1 - np.float32(0.6) * ends), cmin * k))
        hh, ww = crop.shape
        tex = trabecular(rng, hh, ww, k, axis if kind in ("phalanx", "metacarpal", "Radius", "Ulna") else None)
        density = np.float32(MU_MEDULLA * med * look.density) * (np.float32(0.75) + np.float32(0.7) * ends[pad:-pad, pad:-pad])
        mu_med = density * (1.0 + np.float32(look.texture) * tex)
        mu_cort = np.float32(MU_CORTEX * look.density) * (1.0 + np.float32(0.25 * look.texture) * tex)
        mu[y0 : y0 + hh, x0 : x0 + ww] += mu_cort * cort + mu_med * medul
        length[y0 : y0 + hh, x0 : x0 + ww] += cort + medul
        if name == "Hamate":
            mu[y0 : y0 + hh, x0 : x0 + ww] += hamate_hook(crop, axis, k, rng) * np.float32(MU_CORTEX * look.density)
    return mu, length


def hamate_hook(crop: np.ndarray, axis: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """The hamate's hook seen end-on: a ring of cortex inside the bone, towards its distal-ulnar
    corner. Returns float32 (h, w) extra cortical path in cm, zero outside the ring."""
    ys, xs = np.nonzero(crop)
    centre = np.array([xs.mean(), ys.mean()]) + axis * rng.uniform(-0.15, 0.15) * (ys.max() - ys.min())
    radius = max(0.22 * min(xs.max() - xs.min(), ys.max() - ys.min()), 2.0)
    ring = np.zeros(crop.shape, np.float32)
    cv2.ellipse(ring, (int(centre[0]), int(centre[1])), (int(radius), int(radius * rng.uniform(0.7, 1.0))),
                float(rng.uniform(0, 180)), 0, 360, 1.0, max(int(round(4 * k)), 1), cv2.LINE_AA)
    ring = cv2.GaussianBlur(ring, (0, 0), max(1.0 * k, 0.5))
    return ring * crop.astype(np.float32) * np.float32(0.35)
