"""yolohand.core.submission: atomic streaming writer, validating streaming reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolohand.core import rle
from yolohand.core.classes import CLASSES
from yolohand.core.submission import (
    COLUMNS,
    SubmissionWriter,
    iter_submission,
    read_image_names,
    write_submission,
)
from yolohand.errors import YolohandError

SHAPE = (3, 4)  # tiny images: H*W = 12
HEADER = "image_name,class,rle\n"


def rows_for(name: str, rles=None) -> str:
    rles = rles or [""] * len(CLASSES)
    return "".join(f"{name},{cls},{r}\n" for cls, r in zip(CLASSES, rles))


def write_text(tmp_path, text: str):
    path = tmp_path / "sub.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_columns():
    assert COLUMNS == ("image_name", "class", "rle")


def test_roundtrip(tmp_path):
    rles = ["1 2 8 2"] + [""] * 27 + ["12 1"]
    path = tmp_path / "out.csv"
    n = write_submission(path, [("a.png", rles), ("b.png", [""] * 29)])
    assert n == 2
    lines = path.read_text().splitlines()
    assert lines[0] == "image_name,class,rle"
    assert lines[1] == "a.png,finger-1,1 2 8 2"
    assert lines[29] == "a.png,Ulna,12 1"
    assert len(lines) == 1 + 2 * 29
    got = list(iter_submission(path, SHAPE))
    assert [name for name, _ in got] == ["a.png", "b.png"]
    assert [rle.runs_to_string(r) for r in got[0][1]] == rles
    assert all(r.shape == (0, 2) for r in got[1][1])
    assert read_image_names(path) == ["a.png", "b.png"]


def test_writer_accepts_runs_and_none(tmp_path):
    path = tmp_path / "out.csv"
    with SubmissionWriter(path) as out:
        out.write_image("a.png", [rle.string_to_runs("3 2"), None] + [""] * 27)
    assert path.read_text().splitlines()[1:3] == ["a.png,finger-1,3 2", "a.png,finger-2,"]


def test_pandas_can_read_ours_and_we_read_pandas(tmp_path):
    path = tmp_path / "ours.csv"
    write_submission(path, [("a.png", ["1 2"] + [""] * 28)])
    df = pd.read_csv(path)
    assert list(df.columns) == list(COLUMNS) and len(df) == 29 and df.rle.isna().sum() == 28
    # pandas writes NaN as an empty field by default; older pandas' astype(str) (or na_rep) gives
    # the literal "nan", which we also read as empty.
    other = tmp_path / "pandas.csv"
    df.to_csv(other, index=False, na_rep="nan")
    assert "a.png,finger-2,nan" in other.read_text()
    [(name, runs)] = list(iter_submission(other, SHAPE))
    assert name == "a.png" and runs[0].tolist() == [[0, 2]] and runs[1].shape == (0, 2)


def test_quoted_fields_are_read(tmp_path):
    """Files written with quoting (e.g. pandas QUOTE_ALL) take the csv-module path."""
    path = tmp_path / "quoted.csv"
    df = pd.DataFrame({"image_name": ["a.png"] * 29, "class": CLASSES, "rle": ["1 2"] + [""] * 28})
    df.to_csv(path, index=False, quoting=1)  # csv.QUOTE_ALL
    [(name, runs)] = list(iter_submission(path, SHAPE))
    assert name == "a.png" and runs[0].tolist() == [[0, 2]] and runs[1].shape == (0, 2)


def test_line_numbers_count_multiline_quoted_fields(tmp_path):
    body = HEADER + 'a.png,finger-1,"1\n2"\n' + "".join(rows_for("a.png").splitlines(True)[1:3])
    body = body.replace("a.png,finger-3,", "a.png,finger-3,1 99")
    path = write_text(tmp_path, body)
    with pytest.raises(YolohandError) as info:
        list(iter_submission(path, SHAPE))
    # header (1), quoted record over lines 2-3, finger-2 (4), finger-3 (5)
    assert str(info.value).startswith(f"{path}:5: "), str(info.value)
    assert "ends past the image" in str(info.value)


def test_bom_and_blank_lines_tolerated(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes(("\ufeff" + HEADER + "\n" + rows_for("a.png") + "\n").encode("utf-8"))
    assert read_image_names(path) == ["a.png"]


def test_header_only_is_zero_images(tmp_path):
    assert list(iter_submission(write_text(tmp_path, HEADER), SHAPE)) == []


def test_writer_refuses_wrong_count_and_writes_nothing(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(YolohandError, match="expected 29 masks, got 28"):
        write_submission(path, [("a.png", [""] * 29), ("b.png", [""] * 28)])
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_writer_refuses_duplicate_image(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(YolohandError, match="written twice"):
        write_submission(path, [("a.png", [""] * 29), ("a.png", [""] * 29)])
    assert not path.exists()


def test_failure_midway_leaves_nothing(tmp_path):
    path = tmp_path / "out.csv"

    def items():
        yield "a.png", [""] * 29
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_submission(path, items())
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "out.csv"
    write_submission(path, [("b.png", [""] * 29)])
    with pytest.raises(YolohandError, match="already exists"):
        write_submission(path, [("a.png", [""] * 29)])
    assert read_image_names(path) == ["b.png"]
    assert write_submission(path, [("a.png", [""] * 29)], force=True) == 1
    assert read_image_names(path) == ["a.png"]
    # --force replaces a previous submission only, never a user's file.
    notes = tmp_path / "notes.csv"
    notes.write_text("keep me")
    with pytest.raises(YolohandError, match="not a previous yolohand submission CSV"):
        write_submission(notes, [("a.png", [""] * 29)], force=True)
    assert notes.read_text() == "keep me"


def _bad_class_order() -> str:
    text = rows_for("a.png").splitlines(keepends=True)
    text[2], text[3] = text[3], text[2]
    return "".join(text)


def _rle_at(row: int, value: str) -> str:
    rles = [""] * 29
    rles[row] = value
    return rows_for("a.png", rles)


# (file body, line of the error, fragment of the message)
MALFORMED = {
    "empty file": ("", 1, "empty file"),
    "wrong header": ("image,class,rle\n" + rows_for("a.png"), 1, "header is"),
    "extra column": ("image_name,class,rle,x\n", 1, "header is"),
    "class order": (HEADER + _bad_class_order(), 4, "class 'finger-4' where row 3 of the image must be 'finger-3'"),
    "unknown class": (HEADER + rows_for("a.png").replace("finger-5", "finger-99"), 6, "unknown class 'finger-99'"),
    "too few rows": (HEADER + "".join(rows_for("a.png").splitlines(True)[:28]) + rows_for("b.png"), 30,
                     "image a.png has only 28 of 29 rows"),
    "truncated at end": (HEADER + rows_for("a.png") + "b.png,finger-1,\n", 31, "only 1 of 29 rows at end of file"),
    "not contiguous": (HEADER + rows_for("a.png") + rows_for("b.png") + rows_for("a.png"), 60,
                       "image a.png appears again"),
    "field count": (HEADER + "a.png,finger-1\n", 2, "expected 3 fields"),
    "empty image name": (HEADER + rows_for(""), 2, "empty image_name"),
    "odd values": (HEADER + _rle_at(4, "1 2 3"), 6, "odd number of values"),
    "non-integer": (HEADER + _rle_at(0, "1 two"), 2, "not an integer: 'two'"),
    "float values": (HEADER + _rle_at(0, "1.0 2.0"), 2, "not an integer"),
    "zero length": (HEADER + _rle_at(1, "1 0"), 3, "length 0 is not positive"),
    "negative length": (HEADER + _rle_at(1, "3 -2"), 3, "length -2 is not positive"),
    "start zero": (HEADER + _rle_at(2, "0 1"), 4, "start 0 < 1"),
    "start past H*W": (HEADER + _rle_at(28, "13 1"), 30, "starts past the image"),
    "end past H*W": (HEADER + _rle_at(28, "10 5"), 30, "ends past the image"),
    "unsorted": (HEADER + _rle_at(3, "6 1 2 1"), 5, "out of order"),
    "overlapping": (HEADER + _rle_at(3, "2 3 4 1"), 5, "overlaps the previous run"),
    "quoted garbage": (HEADER + 'a.png,finger-1,"1 2\n', 2, "only 1 of 29 rows"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_inputs_name_file_and_line(tmp_path, case):
    body, line, fragment = MALFORMED[case]
    path = write_text(tmp_path, body)
    with pytest.raises(YolohandError) as info:
        list(iter_submission(path, SHAPE))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_errors_carry_image_and_class(tmp_path):
    path = write_text(tmp_path, HEADER + _rle_at(1, "1 x"))
    with pytest.raises(YolohandError, match=r"image a.png, class finger-2: malformed rle"):
        list(iter_submission(path, SHAPE))


def test_read_image_names_checks_structure_not_rle(tmp_path):
    assert read_image_names(write_text(tmp_path, HEADER + _rle_at(0, "1 x"))) == ["a.png"]
    with pytest.raises(YolohandError):
        read_image_names(write_text(tmp_path, HEADER + _bad_class_order()))


def test_missing_file(tmp_path):
    with pytest.raises(YolohandError, match="cannot open"):
        list(iter_submission(tmp_path / "nope.csv"))


def test_not_utf8(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes(HEADER.encode() + b"\xff\xfe,finger-1,\n")
    with pytest.raises(YolohandError, match="not UTF-8"):
        list(iter_submission(path, SHAPE))


@st.composite
def submissions(draw):
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    n = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = []
    for i in range(n):
        masks = rng.random((29, h, w)) < rng.random((29, 1, 1))
        images.append((f"img{i}.png", masks))
    return (h, w), images


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(submissions())
def test_roundtrip_property(tmp_path, data):
    shape, images = data
    path = tmp_path / "prop.csv"
    items = [(name, [rle.encode(m) for m in masks]) for name, masks in images]
    assert write_submission(path, items, force=True) == len(images)
    got = list(iter_submission(path, shape))
    assert [n for n, _ in got] == [n for n, _ in images]
    for (_, runs), (_, masks) in zip(got, images):
        for r, m in zip(runs, masks):
            np.testing.assert_array_equal(rle.runs_to_mask(r, shape), m)
