"""Hard and soft voting against dense numpy references, and refusal of disagreeing inputs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from yolohand.cli.options import parse_size, parse_weights
from yolohand.core.classes import NUM_CLASSES
from yolohand.core.probmaps import load_probmap, probmap_path, save_probmap
from yolohand.errors import YolohandError
from yolohand.results.ensemble import ensemble, hard_vote, soft_vote

SHAPE = (12, 10)
NAMES = [f"image{i}.png" for i in range(3)]


# ----------------------------------------------------------------------------- references


def naive_encode(mask: np.ndarray) -> str:
    """The straightforward encoder: flatten, pad, diff, pairs."""
    pixels = np.concatenate([[0], mask.ravel().astype(np.int8), [0]])
    runs = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs))


def naive_decode(text: str, shape) -> np.ndarray:
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    values = [int(v) for v in text.split()]
    for start, length in zip(values[0::2], values[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(shape)


def random_masks(rng, n_images=len(NAMES), shape=SHAPE) -> np.ndarray:
    """bool (n, 29, H, W): per class a random density, including empty and full masks."""
    density = rng.random((n_images, NUM_CLASSES, 1, 1))
    density[:, 0] = 0.0
    density[:, 1] = 1.0
    return rng.random((n_images, NUM_CLASSES, *shape)) < density


def write_csv(path: Path, masks: np.ndarray, names=NAMES) -> Path:
    """Written with the csv module and the naive encoder (independent of yolohand.core.submission)."""
    from yolohand.core.classes import CLASSES

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image_name", "class", "rle"])
        for name, per_class in zip(names, masks):
            for cls, m in zip(CLASSES, per_class):
                w.writerow([name, cls, naive_encode(m)])
    return path


def read_csv(path: Path, shape=SHAPE) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_name", "class", "rle"]
    rows = rows[1:]
    assert len(rows) % NUM_CLASSES == 0
    names = [r[0] for r in rows[::NUM_CLASSES]]
    masks = np.stack([naive_decode(r[2], shape) for r in rows]).reshape(len(names), NUM_CLASSES, *shape)
    return names, masks


def dense_hard(masks: list[np.ndarray], weights=None, min_votes=None) -> np.ndarray:
    w = np.ones(len(masks)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = sum(wi * m for wi, m in zip(w, masks))
    return total > w.sum() / 2 if min_votes is None else total >= min_votes


# ----------------------------------------------------------------------------- hard voting


@pytest.fixture
def three(tmp_path):
    rng = np.random.default_rng(0)
    masks = [random_masks(rng) for _ in range(3)]
    return masks, [write_csv(tmp_path / f"in{k}.csv", m) for k, m in enumerate(masks)]


@pytest.mark.parametrize(
    "n, weights, min_votes",
    [
        (3, None, None),          # strict majority: 2 of 3
        (4, None, None),          # even count: 3 of 4 (a 2-2 tie is dropped)
        (3, None, 1),             # union
        (3, None, 3),             # intersection
        (3, [1, 2, 1], None),     # > 2: the weight-2 input plus any other
        (3, [1, 2, 1], 2),        # the weight-2 input alone suffices
        (4, [0.5, 1.25, 2.0, 0.75], None),
        (4, [0.5, 1.25, 2.0, 0.75], 1.75),
    ],
)
def test_hard_vote_equals_dense_reference(tmp_path, n, weights, min_votes):
    rng = np.random.default_rng(n + len(weights or []) + int(min_votes or 0))
    masks = [random_masks(rng) for _ in range(n)]
    inputs = [write_csv(tmp_path / f"in{k}.csv", m) for k, m in enumerate(masks)]
    out = tmp_path / "out.csv"
    summary = hard_vote(inputs, out, weights=weights, min_votes=min_votes, shape=SHAPE, progress=False)
    names, voted = read_csv(out)
    assert names == NAMES
    np.testing.assert_array_equal(voted, dense_hard(masks, weights, min_votes))
    assert (summary.inputs, summary.images, summary.rows) == (n, 3, 3 * NUM_CLASSES)


def test_hard_vote_exact_ties_with_float_weights(tmp_path):
    # Weights 0.1 + 0.2 (= 0.30000000000000004 in floats) against min_votes 0.3 must count as reached.
    a, b, c = (np.zeros((1, NUM_CLASSES, *SHAPE), bool) for _ in range(3))
    a[0, 5, 0, :4] = b[0, 5, 0, 2:6] = True
    inputs = [write_csv(tmp_path / f"{k}.csv", m, NAMES[:1]) for k, m in zip("abc", (a, b, c))]
    hard_vote(inputs, tmp_path / "out.csv", weights=[0.1, 0.2, 0.7], min_votes=0.3, shape=SHAPE, progress=False)
    _, voted = read_csv(tmp_path / "out.csv")
    assert np.flatnonzero(voted[0, 5].ravel()).tolist() == [2, 3]


def _refused(tmp_path, inputs, match, **kw):
    out = tmp_path / "out.csv"
    with pytest.raises(YolohandError, match=match):
        hard_vote(inputs, out, shape=SHAPE, progress=False, **kw)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp file either


def test_refuses_different_order(tmp_path, three):
    masks, inputs = three
    swapped = write_csv(tmp_path / "swapped.csv", masks[2], [NAMES[0], NAMES[2], NAMES[1]])
    _refused(tmp_path, [inputs[0], inputs[1], swapped], r"swapped.csv: image #2 is 'image2.png' but .*in0.csv has 'image1.png'")


def test_refuses_different_image_sets(tmp_path, three):
    masks, inputs = three
    short = write_csv(tmp_path / "short.csv", masks[1][:2], NAMES[:2])
    _refused(tmp_path, [inputs[0], short], r"short.csv: 2 images but .*in0.csv has 3; .*in0.csv goes on with 'image2.png'")
    _refused(tmp_path, [short, inputs[0]], r"in0.csv: 3 images but .*short.csv has 2")
    renamed = write_csv(tmp_path / "renamed.csv", masks[1], ["x.png", *NAMES[1:]])
    _refused(tmp_path, [inputs[0], renamed], r"renamed.csv: image #1 is 'x.png'")


def test_refuses_different_classes(tmp_path, three):
    masks, inputs = three
    bad = tmp_path / "bad.csv"
    bad.write_text(inputs[1].read_text().replace(",Pisiform,", ",pisiform,"))
    _refused(tmp_path, [inputs[0], bad, inputs[2]], r"bad.csv:\d+: .*unknown class 'pisiform'")


def test_refuses_bad_rle_without_output(tmp_path, three):
    masks, inputs = three
    lines = inputs[1].read_text().splitlines()
    lines[-1] = lines[-1].rsplit(",", 1)[0] + ",1 0"  # last row of the last image: zero length
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    _refused(tmp_path, [inputs[0], bad], r"bad.csv:88: .*not positive")


def test_refuses_bad_arguments(tmp_path, three):
    _, inputs = three
    _refused(tmp_path, inputs[:1], "at least two")
    _refused(tmp_path, inputs, "4 exceeds|at most the total weight 3", min_votes=4)
    _refused(tmp_path, inputs, "2 weights given for 3 inputs", weights=[1, 2])
    _refused(tmp_path, inputs, "weights must be finite", weights=[1, -1, 1])
    with pytest.raises(YolohandError, match="also an input"):
        hard_vote(inputs, inputs[0], shape=SHAPE, force=True, progress=False)
    with pytest.raises(YolohandError, match="past the image"):
        hard_vote(inputs, tmp_path / "out.csv", shape=(2, 2), progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_existing_output_needs_force(tmp_path, three):
    _, inputs = three
    out = tmp_path / "out.csv"
    out.write_text("image_name,class,rle\n")  # a previous (empty) submission
    with pytest.raises(YolohandError, match="already exists"):
        hard_vote(inputs, out, shape=SHAPE, progress=False)
    assert out.read_text() == "image_name,class,rle\n"
    hard_vote(inputs, out, shape=SHAPE, force=True, progress=False)
    assert out.read_text().startswith("image_name,class,rle\nimage0.png,")


def test_force_replaces_only_a_previous_submission(tmp_path, three):
    _, inputs = three
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(YolohandError, match="not a previous yolohand submission CSV"):
        hard_vote(inputs, notes, shape=SHAPE, force=True, progress=False)
    (tmp_path / "folder").mkdir()
    with pytest.raises(YolohandError, match="is a folder"):
        hard_vote(inputs, tmp_path / "folder", shape=SHAPE, force=True, progress=False)
    assert notes.read_text() == "mine" and not list((tmp_path / "folder").iterdir())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_image_sizes_from_images_folder(tmp_path, three):
    cv2 = pytest.importorskip("cv2")
    _, inputs = three
    img_dir = tmp_path / "images" / "ID001"
    img_dir.mkdir(parents=True)
    for name in NAMES:
        cv2.imwrite(str(img_dir / name), np.zeros(SHAPE, np.uint8))
    hard_vote(inputs, tmp_path / "a.csv", images=tmp_path / "images", progress=False)
    cv2.imwrite(str(img_dir / NAMES[1]), np.zeros((2, 3), np.uint8))  # now one image is tiny
    with pytest.raises(YolohandError, match="image 'image1.png' class .*past the image's 2x3"):
        hard_vote(inputs, tmp_path / "b.csv", images=tmp_path / "images", progress=False)
    assert not (tmp_path / "b.csv").exists()


# ----------------------------------------------------------------------------- soft voting


def write_probs(folder: Path, u8: np.ndarray, names=NAMES) -> Path:
    folder.mkdir()
    for name, maps in zip(names, u8):
        save_probmap(probmap_path(folder, name), maps)
    return folder


def dense_soft(probs: list[np.ndarray], weights, threshold) -> np.ndarray:
    """Mean of probabilities (u8 / 255, CSV masks as 0/1) with weights, then threshold."""
    w = np.asarray(weights, dtype=np.float64)
    mean = sum(wi * p for wi, p in zip(w, probs)) / w.sum()
    return mean >= threshold


@pytest.mark.parametrize(
    "n_csv, n_probs, weights, threshold",
    [
        (0, 3, None, 0.5),
        (0, 2, [1, 2.5], 0.5),
        (1, 2, None, 0.5),
        (2, 1, [1, 1.5, 2], 0.3),
        (0, 1, None, 0.7),  # one folder: thresholding maps into a CSV
    ],
)
def test_soft_vote_equals_dense_reference(tmp_path, n_csv, n_probs, weights, threshold):
    rng = np.random.default_rng(10 * n_csv + n_probs)
    csv_masks = [random_masks(rng) for _ in range(n_csv)]
    u8s = [rng.integers(0, 256, (len(NAMES), NUM_CLASSES, *SHAPE), dtype=np.uint8) for _ in range(n_probs)]
    for u8 in u8s:
        u8[:, 2] = 0  # an all-zero class
    csvs = [write_csv(tmp_path / f"c{k}.csv", m) for k, m in enumerate(csv_masks)]
    dirs = [write_probs(tmp_path / f"p{k}", u8) for k, u8 in enumerate(u8s)]
    out = tmp_path / "soft.csv"
    summary = soft_vote(csvs, dirs, out, weights=weights, threshold=threshold, shape=SHAPE,
                        save_probs=tmp_path / "avg", progress=False)
    names, voted = read_csv(out)
    assert names == NAMES and summary.images == 3 and summary.inputs == n_csv + n_probs
    w = weights or [1] * (n_csv + n_probs)
    probs = [m.astype(np.float64) for m in csv_masks] + [u8 / 255.0 for u8 in u8s]
    np.testing.assert_array_equal(voted, dense_soft(probs, w, threshold))
    # The averaged maps: round(weighted mean * 255); thresholding them at 128 gives the 0.5 vote.
    for i, name in enumerate(NAMES):
        avg = load_probmap(probmap_path(tmp_path / "avg", name))
        mean255 = sum(wi * p[i] for wi, p in zip(w, probs)) / sum(w) * 255
        assert np.abs(avg.astype(float) - mean255).max() <= 0.5 + 1e-9


def test_soft_vote_tie_is_kept(tmp_path):
    # 128 and 127 average to exactly 127.5 = 0.5 * 255: ">= threshold" keeps the pixel.
    a = np.zeros((1, NUM_CLASSES, *SHAPE), np.uint8)
    b = a.copy()
    a[0, 3, 4, 5], b[0, 3, 4, 5] = 128, 127
    a[0, 3, 4, 6], b[0, 3, 4, 6] = 127, 127
    a[0, 3, 4, 7], b[0, 3, 4, 7] = 255, 0    # a 0/1 tie, as two CSV-like maps make it
    a[0, 3, 4, 8], b[0, 3, 4, 8] = 255, 1
    dirs = [write_probs(tmp_path / k, m, NAMES[:1]) for k, m in (("a", a), ("b", b))]
    summary = soft_vote([], dirs, tmp_path / "o.csv", shape=SHAPE, progress=False)
    _, voted = read_csv(tmp_path / "o.csv")
    assert np.argwhere(voted[0]).tolist() == [[3, 4, 5], [3, 4, 7], [3, 4, 8]]
    assert summary.rule == "weighted mean >= 0.5"
    # --strict: mean > threshold, the public soft_voting.py rule; ties are dropped.
    summary = soft_vote([], dirs, tmp_path / "s.csv", shape=SHAPE, progress=False, strict=True)
    _, strict = read_csv(tmp_path / "s.csv")
    assert np.argwhere(strict[0]).tolist() == [[3, 4, 8]]
    assert summary.rule == "weighted mean > 0.5"


def test_strict_equals_public_soft_voting_reference(tmp_path):
    """soft_voting.py as published: mean of the maps as float probabilities, then > 0.5."""
    rng = np.random.default_rng(11)
    u8s = [rng.choice(np.array([0, 127, 128, 255], np.uint8), (len(NAMES), NUM_CLASSES, *SHAPE)) for _ in range(2)]
    dirs = [write_probs(tmp_path / f"p{k}", u8) for k, u8 in enumerate(u8s)]
    soft_vote([], dirs, tmp_path / "o.csv", shape=SHAPE, progress=False, strict=True)
    _, voted = read_csv(tmp_path / "o.csv")
    reference = (u8s[0].astype(np.float64) + u8s[1]) / 2 / 255 > 0.5
    np.testing.assert_array_equal(voted, reference)
    assert ((u8s[0].astype(int) + u8s[1]) == 255).any()  # the case has ties


def test_summary_states_the_exact_rule(tmp_path, three):
    _, inputs = three
    u8 = np.full((3, NUM_CLASSES, *SHAPE), 128, np.uint8)
    probs = write_probs(tmp_path / "p", u8)
    s = soft_vote([], [probs], tmp_path / "a.csv", threshold=0.5000001, shape=SHAPE, progress=False)
    assert "weighted mean >= 0.5000001" in s.line()
    h = hard_vote(inputs, tmp_path / "b.csv", weights=[0.5, 1, 1.25], min_votes=1.0000001, shape=SHAPE, progress=False)
    assert "summed weight >= 1.0000001 of 2.75" in h.line()
    h = hard_vote(inputs, tmp_path / "c.csv", shape=SHAPE, progress=False)
    assert "summed weight > 1.5 of 3" in h.line()


def test_ensemble_refuses_options_of_the_other_vote(tmp_path, three):
    _, inputs = three
    probs = write_probs(tmp_path / "p", np.zeros((3, NUM_CLASSES, *SHAPE), np.uint8))
    out = tmp_path / "o.csv"
    for kw, match in [(dict(threshold=0.4), "--threshold applies to soft"), (dict(strict=True), "--strict applies"),
                      (dict(save_probs=tmp_path / "avg"), "--save-probs applies")]:
        with pytest.raises(YolohandError, match=match):
            ensemble(inputs, [], out, shape=SHAPE, progress=False, **kw)
    with pytest.raises(YolohandError, match="--min-votes applies to hard"):
        ensemble(inputs, [probs], out, min_votes=2, shape=SHAPE, progress=False)
    assert not out.exists()


def test_outputs_overlapping_inputs_are_refused(tmp_path, three):
    _, inputs = three
    probs = write_probs(tmp_path / "p", np.zeros((3, NUM_CLASSES, *SHAPE), np.uint8))
    before = sorted(p.name for p in probs.iterdir())
    cases = [
        (dict(out=probs), "is also an input"),
        (dict(out=probs / "x.csv"), "lies inside the input"),
        (dict(out=tmp_path / "o.csv", save_probs=probs), "is also an input"),
        (dict(out=tmp_path / "o.csv", save_probs=tmp_path / "o.csv"), "is also an input"),
        (dict(out=tmp_path / "o.csv", save_probs=inputs[0]), "is also an input"),
    ]
    for kw, match in cases:
        with pytest.raises(YolohandError, match=match):
            soft_vote(inputs[:1], [probs], shape=SHAPE, force=True, progress=False, **kw)
        assert sorted(p.name for p in probs.iterdir()) == before and inputs[0].read_text().startswith("image_name")
    assert not (tmp_path / "o.csv").exists()


def test_saved_maps_and_outputs_get_the_umask_modes(tmp_path):
    import stat

    probs = write_probs(tmp_path / "p", np.zeros((3, NUM_CLASSES, *SHAPE), np.uint8))
    old = os.umask(0o022)
    try:
        soft_vote([], [probs], tmp_path / "o.csv", shape=SHAPE, save_probs=tmp_path / "avg", progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "avg").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "avg").iterdir()} == {0o644}


def test_soft_vote_refusals(tmp_path, three):
    masks, inputs = three
    rng = np.random.default_rng(5)
    u8 = rng.integers(0, 256, (3, NUM_CLASSES, *SHAPE), dtype=np.uint8)
    good = write_probs(tmp_path / "good", u8)
    partial = write_probs(tmp_path / "partial", u8[:2], NAMES[:2])
    extra = write_probs(tmp_path / "extra", np.concatenate([u8, u8[:1]]), [*NAMES, "other.png"])
    out = tmp_path / "o.csv"
    cases = [
        (dict(csvs=inputs[:1], prob_dirs=[partial]), r"partial/image2.npz: missing \(1 of 3 maps"),
        (dict(csvs=inputs[:1], prob_dirs=[extra]), r"extra/other.npz: image not listed by .*in0.csv"),
        (dict(csvs=[], prob_dirs=[good, partial]), r"partial/image2.npz: missing"),
        (dict(csvs=[], prob_dirs=[good], shape=(5, 5)), r"good/image0.npz: maps are 12x10 but the image is 5x5"),
        (dict(csvs=inputs[:1], prob_dirs=[good], weights=[1]), "1 weights given for 2 inputs"),
        (dict(csvs=inputs[:1], prob_dirs=[good], threshold=0), "threshold"),
        (dict(csvs=inputs[:1], prob_dirs=[]), "at least one probability-map folder"),
    ]
    for kw, match in cases:
        kw.setdefault("shape", SHAPE)
        with pytest.raises(YolohandError, match=match):
            soft_vote(out=out, progress=False, save_probs=tmp_path / "avg", **kw)
        assert not out.exists() and not (tmp_path / "avg").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_soft_vote_order_from_images_folder(tmp_path):
    cv2 = pytest.importorskip("cv2")
    u8 = np.random.default_rng(6).integers(0, 256, (3, NUM_CLASSES, *SHAPE), dtype=np.uint8)
    probs = write_probs(tmp_path / "p", u8)
    # The images live in ID folders whose order differs from the names' order.
    for pid, name in zip(["ID003", "ID001", "ID002"], NAMES):
        (tmp_path / "img" / pid).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "img" / pid / name), np.zeros(SHAPE, np.uint8))
    soft_vote([], [probs], tmp_path / "o.csv", images=tmp_path / "img", progress=False)
    names, voted = read_csv(tmp_path / "o.csv")
    assert names == [NAMES[1], NAMES[2], NAMES[0]]
    np.testing.assert_array_equal(voted, (u8 >= 128)[[1, 2, 0]])


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def cli():
    from yolohand.cli.ensemble import ensemble

    app = typer.Typer()
    app.command()(ensemble)
    return app


def test_cli_hard_and_soft(tmp_path, three, cli):
    masks, inputs = three
    runner = CliRunner()
    out = tmp_path / "e.csv"
    args = [*map(str, inputs), "--out", str(out), "--size", "12,10", "--weights", "1,2,1"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "3 images, 87 rows" in res.output and "hard vote of 3 inputs" in res.output
    np.testing.assert_array_equal(read_csv(out)[1], dense_hard(masks, [1, 2, 1]))
    res = runner.invoke(cli, args)
    assert isinstance(res.exception, YolohandError) and "already exists" in str(res.exception)

    u8 = np.random.default_rng(7).integers(0, 256, (3, NUM_CLASSES, *SHAPE), dtype=np.uint8)
    probs = write_probs(tmp_path / "p", u8)
    res = runner.invoke(cli, [str(inputs[0]), "--probs", str(probs), "--out", str(out), "--size", "12x10",
                              "--threshold", "0.4", "--force"])
    assert res.exit_code == 0, res.output
    assert "soft vote of 2 inputs" in res.output
    np.testing.assert_array_equal(read_csv(out)[1], dense_soft([masks[0].astype(float), u8 / 255], [1, 1], 0.4))


def test_parsers():
    assert parse_weights("1,2, 0.5") == [1.0, 2.0, 0.5]
    assert parse_weights(None) is None
    assert parse_size("1024,2048") == (1024, 2048) and parse_size("8x9") == (8, 9)
    for bad in ("1,x", "1,nan", "inf,1"):
        with pytest.raises(YolohandError):
            parse_weights(bad)
    for bad in ("12", "a,b", "0,5", "0,0", "-1,4", "70000,2"):
        with pytest.raises(YolohandError):
            parse_size(bad)


def test_cli_main_refuses_mismatch_with_one_line_error(tmp_path, three):
    import subprocess
    import sys

    masks, inputs = three
    short = write_csv(tmp_path / "short.csv", masks[1][:2], NAMES[:2])
    out = tmp_path / "e.csv"
    res = subprocess.run(
        [sys.executable, "-m", "yolohand", "ensemble", str(inputs[0]), str(short), "--out", str(out), "--size", "12,10"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and "short.csv: 2 images but" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_numeric_core_imports_neither_torch_nor_ultralytics():
    import subprocess
    import sys

    code = (
        "import sys, yolohand.results.ensemble, yolohand.results.evaluate, yolohand.core.probmaps, yolohand.cli.ensemble, "
        "yolohand.cli.evaluate; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ultralytics')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- batched vote (property)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    masks=arrays(np.bool_, (3, NUM_CLASSES, 3, 5)),
    weights=st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=3, max_size=3).filter(any)),
    min_votes=st.one_of(st.none(), st.integers(1, 3)),
)
def test_vote_image_equals_per_class_vote(masks, weights, min_votes):
    """One sweep over all 29 classes (shifted apart) == 29 separate rle.vote calls."""
    from yolohand.core import rle
    from yolohand.results.ensemble import vote_image

    if weights is not None and min_votes is not None and min_votes > sum(weights):
        min_votes = sum(weights)
    per_input = [[rle.mask_to_runs(m) for m in per_class] for per_class in masks]
    got = vote_image(per_input, weights, min_votes, stride=3 * 5 + 1)
    want = [rle.runs_to_string(rle.vote([p[c] for p in per_input], weights, min_votes))
            for c in range(NUM_CLASSES)]
    assert got == want


def test_soft_vote_reads_each_image_size_from_its_maps(tmp_path, cli):
    """Issue 21: two map folders of non-2048 images fuse without --size or --images."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, NUM_CLASSES, *SHAPE), dtype=np.uint8)
    b = rng.integers(0, 256, (3, NUM_CLASSES, *SHAPE), dtype=np.uint8)
    dirs = [write_probs(tmp_path / "a", a), write_probs(tmp_path / "b", b)]
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(cli, ["--probs", str(dirs[0]), "--probs", str(dirs[1]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_csv(out)[1], dense_soft([a / 255, b / 255], [1, 1], 0.5))
    # maps of one image that disagree in size are refused, naming the file
    small = write_probs(tmp_path / "c", rng.integers(0, 256, (3, NUM_CLASSES, 6, 5), dtype=np.uint8))
    with pytest.raises(YolohandError, match=r"c/image0.npz: maps are 6x5 but the image is 12x10"):
        soft_vote([], [dirs[0], small], tmp_path / "x.csv", progress=False)
    assert not (tmp_path / "x.csv").exists()


def test_probmap_shape_reads_the_header_only(tmp_path):
    from yolohand.core.probmaps import probmap_shape

    path = write_probs(tmp_path / "p", np.zeros((1, NUM_CLASSES, 7, 9), np.uint8)) / "image0.npz"
    assert probmap_shape(path) == (7, 9)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(YolohandError, match="bad.npz: not a readable .npz probability map"):
        probmap_shape(tmp_path / "bad.npz")
