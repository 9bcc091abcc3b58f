"""Class-wise fusion (ensemble --fusion) and the per-class pick of sources (yolohand pick)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolohand.core.classes import CARPALS, CLASS_INDEX, CLASSES, FINGERS, NUM_CLASSES
from yolohand.core.probmaps import save_probmap
from yolohand.errors import YolohandError
from yolohand.results import fusion as F
from yolohand.results.ensemble import soft_vote

SHAPE = (14, 11)
STEMS = [f"image{i:013d}" for i in range(3)]


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))[1:]


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Two random map folders A and B (uint8 (n, 29, H, W) each), exact ties included."""
    d = tmp_path_factory.mktemp("fusion")
    rng = np.random.default_rng(3)
    out = []
    for name in ("A", "B"):
        u8 = rng.integers(0, 256, (len(STEMS), NUM_CLASSES, *SHAPE), dtype=np.uint8)
        u8[:, :, 0, :3] = (127, 128, 0)
        for stem, m in zip(STEMS, u8):
            save_probmap(d / name / f"{stem}.npz", m)
        out.append(u8)
    return d / "A", d / "B", out[0], out[1]


def test_groups_and_compact_names():
    assert F.parse_classes("fingertips").sum() == 5 and F.parse_classes("forearm, Pisiform").sum() == 3
    phal = F.parse_classes(["phalanges"])
    assert phal.sum() == 14 and not phal[CLASS_INDEX["finger-3"]] and phal[CLASS_INDEX["finger-1"]]
    assert (F.parse_classes("metacarpals") | phal).sum() == len(FINGERS)
    assert F.parse_classes("all").all() and not F.parse_classes([]).any()
    for spec in ("carpals", ["fingers", "Radius"], ["finger-3", "Capitate"], "all", []):
        mask = F.parse_classes(spec)
        assert (F.parse_classes(F.compact_classes(mask)) == mask).all()
    assert F.compact_classes(F.parse_classes(["fingers", "Radius"])) == ["fingers", "Radius"]
    with pytest.raises(YolohandError, match="unknown class or group 'carpal'.*did you mean 'carpals'"):
        F.parse_classes("carpal")


def test_one_source_per_class_equals_that_source(maps, tmp_path):
    a, b, _, _ = maps
    only_a, only_b = tmp_path / "a.csv", tmp_path / "b.csv"
    soft_vote([], [a], only_a, progress=False)
    soft_vote([], [b], only_b, progress=False)
    spec = F.load_fusion(write_yaml(tmp_path / "all_a.yaml", {"sources": [{"probs": str(a)}, {"probs": str(b), "classes": []}]}))
    out = tmp_path / "fused.csv"
    summary = F.fuse(spec, out, progress=False)
    assert out.read_bytes() == only_a.read_bytes() and "class-wise" in summary.line()
    # Fingers from B, the rest from A (relative paths, read from the YAML's folder): row by row.
    doc = {"sources": [{"probs": "../" + a.name, "classes": "carpals, forearm"}, {"probs": "../" + b.name, "classes": ["fingers"]}]}
    (a.parent / "cfg").mkdir(exist_ok=True)
    spec = F.load_fusion(write_yaml(a.parent / "cfg" / "mix.yaml", doc))
    F.fuse(spec, out, force=True, progress=False)
    got, ra, rb = rows(out), rows(only_a), rows(only_b)
    for g, x, y in zip(got, ra, rb):
        assert g == (y if g[1] in FINGERS else x)


def test_classwise_weights_match_a_dense_reference(maps, tmp_path):
    a, b, ua, ub = maps
    doc = {"sources": [{"probs": str(a), "weights": {"carpals": 3, "Radius": 0}},
                       {"probs": str(b), "weight": 2, "classes": ["all"]}]}
    out, avg = tmp_path / "w.csv", tmp_path / "avg"
    F.fuse(F.load_fusion(write_yaml(tmp_path / "w.yaml", doc)), out, threshold=0.4, save_probs=avg, progress=False)
    wa = np.ones(NUM_CLASSES)
    wa[[CLASS_INDEX[c] for c in CARPALS]] = 3
    wa[CLASS_INDEX["Radius"]] = 0
    wb = np.full(NUM_CLASSES, 2.0)
    from yolohand.core.rle import decode

    got = rows(out)
    for i in range(len(STEMS)):
        acc = wa[:, None, None] * ua[i] + wb[:, None, None] * ub[i]
        want = acc >= 0.4 * 255.0 * (wa + wb)[:, None, None]
        for c in range(NUM_CLASSES):
            assert np.array_equal(decode(got[i * NUM_CLASSES + c][2], SHAPE), want[c])


def test_hard_classwise_vote_and_input_replacement(tmp_path):
    from yolohand.core.rle import decode, encode
    from yolohand.core.submission import write_submission

    rng = np.random.default_rng(5)
    masks = rng.random((3, len(STEMS), NUM_CLASSES, *SHAPE)) < 0.5
    paths = []
    for k in range(3):
        p = tmp_path / f"s{k}.csv"
        write_submission(p, ((f"{s}.png", [encode(m) for m in masks[k, i]]) for i, s in enumerate(STEMS)))
        paths.append(p)
    doc = {"sources": [{"csv": "x0.csv", "classes": "carpals"}, {"csv": "x1.csv"}, {"csv": "x2.csv", "classes": "fingers"}]}
    spec = F.load_fusion(write_yaml(tmp_path / "h.yaml", doc))
    out = tmp_path / "h.csv"
    with pytest.raises(YolohandError, match="3 csv source"):
        F.fuse(spec, out, csvs=paths[:2], progress=False)
    F.fuse(spec, out, csvs=paths, shape=SHAPE, progress=False)  # the CSVs replace x0..x2 in order
    carp = np.array([c in CARPALS for c in CLASSES])
    fing = np.array([c in FINGERS for c in CLASSES])
    for i, row in enumerate(np.array(rows(out)).reshape(len(STEMS), NUM_CLASSES, 3)):
        for c in range(NUM_CLASSES):
            got = decode(row[c][2], SHAPE)
            if carp[c] or fing[c]:  # two sources of weight 1: strict majority = both
                k = 0 if carp[c] else 2
                assert np.array_equal(got, masks[k, i, c] & masks[1, i, c])
            else:  # only s1 votes: its mask, exactly
                assert np.array_equal(got, masks[1, i, c])
    with pytest.raises(YolohandError, match="--threshold applies to soft voting"):
        F.fuse(spec, tmp_path / "x.csv", csvs=paths, threshold=0.3, progress=False)


def test_bad_yaml(tmp_path):
    cases = [
        ({"sources": [{"probs": "a", "classes": "carpals"}]}, "class finger-1 has no source"),
        ({"sources": [{"probs": "a", "csv": "b"}]}, "exactly one of"),
        ({"sources": [{"probs": "a", "clases": "all"}]}, "unknown key 'clases'.*did you mean 'classes'"),
        ({"sources": [{"probs": "a", "weight": -1}]}, "weight: -1 is not a number"),
        ({"sources": [{"probs": "a", "classes": "wrist"}]}, r"sources\[0\]: classes: unknown class or group 'wrist'"),
        ({"sources": []}, "expected 'sources:'"),
        ({"sources": [{"probs": "a"}], "thresholds": 1}, "unknown key 'thresholds'"),
    ]
    for doc, match in cases:
        with pytest.raises(YolohandError, match=match):
            F.load_fusion(write_yaml(tmp_path / "bad.yaml", doc))
    (tmp_path / "bad.yaml").write_text("sources: [\n")
    with pytest.raises(YolohandError, match="not valid YAML"):
        F.load_fusion(tmp_path / "bad.yaml")


def _degraded(src: Path, dst: Path, empty: set[str]) -> Path:
    """``src`` with the given classes' masks emptied."""
    with open(src, newline="") as fh, open(dst, "w", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        for k, row in enumerate(csv.reader(fh)):
            w.writerow(row if k == 0 or row[1] not in empty else [row[0], row[1], ""])
    return dst


def test_pick_then_fuse_recovers_the_truth(synth_root, tmp_path, run_cli):
    """Source A misses the carpals, source B misses finger-1..5: the pick takes B by default (the
    better overall), finger-1..5 from A; fusing A and B with it gives the ground truth back."""
    from yolohand.results.evaluate import write_gt_submission

    gt = tmp_path / "gt.csv"
    write_gt_submission(synth_root, gt, split="train", progress=False)
    a = _degraded(gt, tmp_path / "a.csv", set(CARPALS))
    b = _degraded(gt, tmp_path / "b.csv", {f"finger-{i}" for i in range(1, 6)})
    fit = F.fit_sources([a, b], [], synth_root, split="train", progress=False)
    ch = fit.choice
    assert (ch.default == 1).all()
    assert [CLASSES[c] for c in np.flatnonzero(ch.chosen == 0)] == [f"finger-{i}" for i in range(1, 6)]
    s = fit.summary()
    assert s["picked_in_sample"] == pytest.approx(1.0) and s["picked_heldout"] == pytest.approx(1.0)
    assert s["single_in_sample"] < 0.9
    out = tmp_path / "fusion.yaml"
    code, stdout, err = run_cli(["pick", a, b, "--gt", synth_root, "--split", "train", "-o", out])
    assert code == 0, err
    assert "5 of 29 classes picked from another source" in stdout and "held-out" in stdout
    doc = yaml.safe_load(out.read_text())
    assert doc["sources"][0] == {"csv": "a.csv", "classes": [f"finger-{i}" for i in range(1, 6)]}
    assert doc["fit"]["per_class"]["finger-1"]["source"] == str(a)
    fused = tmp_path / "fused.csv"
    code, stdout, err = run_cli(["ensemble", "--fusion", out, "-o", fused])
    assert code == 0, err
    assert fused.read_bytes() == gt.read_bytes()
    # The same YAML on other inputs (here B and A swapped: the result changes accordingly).
    code, _, err = run_cli(["ensemble", "--fusion", out, b, a, "-o", tmp_path / "swapped.csv"])
    assert code == 0, err
    assert fused.read_bytes() != (tmp_path / "swapped.csv").read_bytes()
    code, _, err = run_cli(["ensemble", "--fusion", out, a, "--weights", "1", "-o", tmp_path / "y.csv"])
    assert code == 1 and "--weights does not go with --fusion" in err


def test_pick_errors(synth_root, tmp_path, maps):
    a, b, _, _ = maps
    with pytest.raises(YolohandError, match="at least two sources"):
        F.fit_sources([], [a], synth_root, progress=False)
    c = tmp_path / "c"
    c.mkdir()
    save_probmap(c / f"{STEMS[0]}.npz", np.zeros((NUM_CLASSES, *SHAPE), np.uint8))
    with pytest.raises(YolohandError, match="same validation images"):
        F.fit_sources([], [a, c], synth_root, progress=False)
    with pytest.raises(YolohandError, match="is not an image of"):
        F.fit_sources([], [a, b], synth_root, progress=False)
