"""The phantom's version 2 (issue 25): bones shaped like bones, the intensity ladder of real
radiographs, structured texture, and the earlier looks reproducible byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolohand.core.classes import CLASSES
from yolohand.data.anatomy import CARPAL_SHAPES, BoneShapes, carpal_outline, profile_bone
from yolohand.data.detector import XrayLook
from yolohand.data.layout import polygon_crop
from yolohand.data.phantom import xray_hand
from yolohand.data.phantom_stats import _ellipse_iou, _waist, ladder_figures
from yolohand.data.projection import bone_integral_v2
from yolohand.data.synth import ImageJob, generate_dataset


def _look(**kw) -> XrayLook:
    base = dict(photons=2000.0, heel=(0.0, 0.0), scatter=0.0, blur=0.0, mu_scale=1.0, window=(-0.1, 2.0),
                gamma=1.0, density=1.0, texture=0.0, artifacts={})
    return XrayLook(**{**base, **kw})


def _fill(outline: np.ndarray, size: int = 400) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(outline).astype(np.int32).reshape(-1, 1, 2)], 1)
    return m.astype(bool)


def _widths_along_y(mask: np.ndarray) -> np.ndarray:
    rows = mask.sum(1)
    return rows[rows > 0].astype(float)


@pytest.mark.parametrize("role", ["metacarpal", "phalanx", "tip"])
def test_a_long_bone_has_a_waist_between_a_wider_base_and_head(role: str) -> None:
    outline = BoneShapes().finger(np.array([200.0, 360.0]), np.array([200.0, 60.0]), (26.0, 16.0, 26.0), role, 0.0)
    w = _widths_along_y(_fill(outline))
    n = len(w)
    waist = w[int(0.3 * n) : int(0.7 * n)].min()
    head, base = w[: n // 3].max(), w[-n // 3 :].max()  # y grows towards the base
    assert head > 1.35 * waist and base > 1.35 * waist
    assert 0.4 < _waist(_fill(outline)) < 0.7  # the ladder's figure (real: 0.51)


def test_a_phalanx_base_is_concave_and_its_head_has_two_condyles() -> None:
    outline = profile_bone(np.array([200.0, 360.0]), np.array([200.0, 60.0]), 30, 16, 26, base=-0.2, head=0.6, notch=0.4)
    m = _fill(outline)
    cols = [np.nonzero(m[:, x])[0] for x in (200, 174, 226)]  # the axis and either side of it, near the edges
    # base (bottom): the axis ends higher than the sides (a hollow); head (top): the condyles on
    # either side reach further than the groove between them.
    assert cols[0].max() < min(c.max() for c in cols[1:]) - 2
    condyles = [np.nonzero(m[:, x])[0].min() for x in (185, 215)]
    assert cols[0].min() > max(condyles) + 1


def test_carpals_are_eight_distinct_shapes_not_ellipses() -> None:
    ious, shapes = {}, {}
    for name in CARPAL_SHAPES:
        m = _fill(carpal_outline(name, (200.0, 200.0), 60, 80, 0.0, np.zeros((3, 2))))
        ious[name] = _ellipse_iou(m)
        shapes[name] = m
    for name in ("Capitate", "Hamate", "Lunate"):
        assert ious[name] < 0.9, (name, ious[name])  # real carpals: ~0.80; an ellipse: ~0.98
    assert ious["Pisiform"] > 0.95  # the pea is round
    area = {n: m.sum() for n, m in shapes.items()}
    assert max(area.values()) < 1.03 * min(area.values())  # scaled to the same (ellipse) area
    a, b = shapes["Lunate"], shapes["Capitate"]
    assert (a & b).sum() / (a | b).sum() < 0.85  # different shapes, not one shape renamed


def test_the_shaft_texture_runs_lengthwise() -> None:
    mask = np.zeros((300, 80), bool)
    mask[10:290, 20:60] = True  # a vertical shaft
    look = _look(texture=0.5)
    integral, _ = bone_integral_v2([("finger-6", mask, 0, 0)], 300, 1.0, look, np.random.default_rng(0))
    core = integral[60:240, 30:50]
    core = core - cv2.GaussianBlur(core, (0, 0), 6)  # the texture, without the tube's profile

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    along, across = corr(core[:-3], core[3:]), corr(core[:, :-3], core[:, 3:])
    assert along > across + 0.2, (along, across)


def test_the_ladder_is_in_the_order_of_real_radiographs() -> None:
    rows = []
    for i in range(6):
        made = xray_hand(ImageJob("", "", "ID001", "image.png", 768, (5, i), (5, i), bool(i % 2), False))
        crops = [polygon_crop(made.polygons[name], 768, 768) for name in CLASSES]
        rows.append(ladder_figures(made.image.astype(np.float64) / 255, crops))
    f = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    assert f["background"] < f["tissue"] < f["fingertips"] < f["phalanges"] < f["metacarpals"] < f["carpals"]
    assert f["fingertips"] > f["tissue"] + 0.05  # clearly brighter than the tissue around them
    assert f["carpals"] <= f["radius"] + 0.02 and abs(f["radius"] - f["ulna"]) < 0.06
    assert 0.44 < f["finger_waist"] < 0.62 and f["carpal_ellipse_iou"] < 0.85


def _digest(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(root)}\n".encode() + hashlib.sha256(p.read_bytes()).hexdigest().encode())
    return h.hexdigest()


@pytest.mark.parametrize("style", ["xray19", "flat", "xray"])
def test_every_look_is_reproduced_byte_for_byte(tmp_path: Path, style: str) -> None:
    # Digests of the sets the code before version 2 wrote (commit 284a2c9: --style xray, now xray19,
    # and --style flat), with this machine's numpy and OpenCV.
    expected = {"xray19": "73c1d40ca1c168bece245d33cc72a8a62bdf3fa17fff1c1d3047efb95d39ea52",
                "flat": "63b32d6613e04b70e42aa5b988548fea24a18a1879c3e3147da9d66bb6d34da0",
                # version 2 as it landed: a later change of the default look is a new named style
                "xray": "d8179225d18154134546514b9916330fbafd5a5631361e6699d03e3a81dfa0fd"}
    generate_dataset(tmp_path / "d", 2, 1, 256, 9, workers=1, progress=False, style=style)
    assert _digest(tmp_path / "d") == expected[style]


def test_version_2_differs_from_version_1_on_the_same_seed() -> None:
    job = dict(rel_dir="ID001", name="image.png", size=256, seed=(1,), patient_seed=(1,), mirror=False, color=False)
    a = xray_hand(ImageJob("", "", style="xray19", **job))
    b = xray_hand(ImageJob("", "", style="xray", **job))
    assert not np.array_equal(a.image, b.image)
