"""Never destroy a user's data (issue 12): output places, interrupts, exit codes, one-line errors.

Subprocess tests run ``python -m yolohand ...`` as a user would (exit codes, SIGINT to the
process group as a terminal's Ctrl-C sends it, tracebacks); the rest call the CLI's boundary
(:func:`yolohand.cli.main`) or the mechanism (:mod:`yolohand.core.paths`, :mod:`yolohand.core.atomic`)
directly.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from yolohand.cli import main
from yolohand.core import paths as P
from yolohand.core.atomic import atomic_dir, atomic_file
from yolohand.errors import YolohandError

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def _hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")) or "probe" in p.name]


# --------------------------------------------------------------------------- the mechanism


def test_overlap_equal_inside_contains_through_symlinks(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    assert P.overlap(tmp_path / "link", [data]) == (data, "equals")
    assert P.overlap(tmp_path / "link" / "sub" / "x.csv", [data])[1] == "inside"
    assert P.overlap(tmp_path, [tmp_path / "link" / "sub"])[1] == "contains"
    assert P.overlap(tmp_path / "other", [data, None]) is None
    # An output that is a symlink to an input file: the link is what would be replaced, but its
    # target is the input, so it is refused too.
    (data / "a.csv").write_text("image_name,class,rle\n")
    (tmp_path / "b.csv").symlink_to(data / "a.csv")
    assert P.overlap(tmp_path / "b.csv", [data / "a.csv"])[1] == "equals"


@pytest.mark.parametrize("kind, make, ok", [
    (P.CSV, lambda p: p.write_text("image_name,class,rle\nx.png,finger-1,\n"), True),
    (P.CSV, lambda p: p.write_text("\ufeffimage_name,class,rle\n"), True),
    (P.CSV, lambda p: p.write_text("my notes\n"), False),
    (P.JSON, lambda p: p.write_text('{"mean_dice": 1}'), True),
    (P.JSON, lambda p: p.write_text("[1, 2]"), False),
    (P.PNG, lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n...."), True),
    (P.PNG, lambda p: p.write_bytes(b"JFIF"), False),
    (P.YOLO, lambda p: (p.mkdir(), (p / "convert_report.json").write_text("{}")), True),
    (P.YOLO, lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), False),
    (P.DATASET, lambda p: (p.mkdir(), (p / "train").mkdir()), False),  # a real dataset looks the same
    (P.DATASET, lambda p: (p.mkdir(), P.write_marker(p, P.DATASET), (p / "train").mkdir()), True),
    (P.REPORT, lambda p: (p.mkdir(), P.write_marker(p, P.PROBMAPS), (p / "x.npz").write_text("")), False),
    (P.PROBMAPS, lambda p: (p.mkdir(), (p / "a.npz").write_bytes(b"")), True),
    (P.PROBMAPS, lambda p: (p.mkdir(), (p / "a.npz").write_bytes(b""), (p / "b.txt").write_text("")), False),
    (P.RUN, lambda p: (p.mkdir(), (p / "fold0").mkdir(), (p / "fold0" / "args.yaml").write_text("")), True),
    (P.FOLDER, lambda p: p.mkdir(), True),  # an empty folder holds nothing to lose
])
def test_force_replaces_only_a_previous_output_of_the_same_kind(tmp_path, kind, make, ok):
    out = tmp_path / "out"
    make(out)
    assert P.is_previous_output(out, kind) is ok
    if ok:
        assert P.check_output(out, kind, force=True) == out
    else:
        with pytest.raises(YolohandError, match="not replaced, even with --force"):
            P.check_output(out, kind, force=True)
    with pytest.raises(YolohandError, match="already exists|not replaced"):
        P.check_output(out, kind, force=False)


def test_file_where_folder_is_written_and_back(tmp_path):
    (tmp_path / "f").write_text("mine")
    (tmp_path / "d").mkdir()
    with pytest.raises(YolohandError, match="exists and is not a folder"):
        P.check_output(tmp_path / "f", P.PROBMAPS, force=True, flag="--save-probs")
    with pytest.raises(YolohandError, match="is a folder; --rle writes a submission CSV"):
        P.check_output(tmp_path / "d", P.CSV, force=True, flag="--rle")


def test_unwritable_places_fail_in_the_check(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(YolohandError, match="is not a folder"):
        P.check_output(tmp_path / "file" / "sub" / "x.csv", P.CSV)
    with pytest.raises(YolohandError, match="cannot write in /proc"):
        P.check_output("/proc/x.csv", P.CSV)
    # A missing parent is fine when its nearest existing ancestor is writable (it is created).
    assert P.check_output(tmp_path / "new" / "deep" / "x.csv", P.CSV) == tmp_path / "new" / "deep" / "x.csv"
    assert not (tmp_path / "new").exists() and not _hidden_leftovers(tmp_path)


def test_atomic_outputs_get_umask_modes_and_leave_nothing_behind(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "a.csv", kind=P.CSV) as fh:
            fh.write("image_name,class,rle\n")
        with atomic_dir(tmp_path / "maps", kind=P.PROBMAPS) as tmp:
            (tmp / "x.npz").write_bytes(b"")
        with atomic_dir(tmp_path / "maps", force=True, kind=P.PROBMAPS) as tmp:  # replaces its own output
            (tmp / "y.npz").write_bytes(b"")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "maps").stat().st_mode) == 0o750
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [P.MARKER, "y.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "maps"]  # no .maps.*.old, no temp


def test_failed_write_leaves_the_previous_output(tmp_path):
    with atomic_dir(tmp_path / "maps", kind=P.PROBMAPS) as tmp:
        (tmp / "x.npz").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "maps", force=True, kind=P.PROBMAPS) as tmp:
        (tmp / "y.npz").write_bytes(b"new")
        raise KeyboardInterrupt
    assert (tmp_path / "maps" / "x.npz").read_bytes() == b"old" and not (tmp_path / "maps" / "y.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


# --------------------------------------------------------------------------- the CLI boundary


@pytest.mark.parametrize("exc, line", [
    (YolohandError("x.csv:3: bad rle"), "error: x.csv:3: bad rle"),
    (PermissionError(13, "Permission denied", "/data/out.csv"), "error: /data/out.csv: Permission denied"),
    (OSError(28, "No space left on device", "/data/out.csv"), "error: /data/out.csv: No space left on device"),
    (MemoryError("Unable to allocate 7.3 TiB"), "error: out of memory (Unable to allocate 7.3 TiB); "
                                                 "try smaller inputs, --batch or --workers"),
    (ValueError("merge must be one of ('top1', 'union')"), "error: merge must be one of ('top1', 'union')"),
])
def test_boundary_turns_errors_into_one_line(monkeypatch, run_cli, exc, line):
    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr("yolohand.cli.app", failing)
    code, _, err = run_cli([])
    assert code == 1 and err.splitlines() == [line]


def test_boundary_unexpected_error_is_one_line_with_a_debug_hint(monkeypatch, run_cli):
    def failing(*args, **kwargs):
        raise KeyError("x")

    monkeypatch.setattr("yolohand.cli.app", failing)
    code, _, err = run_cli([])
    assert code == 1 and len(err.splitlines()) == 1 and "YOLOHAND_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("YOLOHAND_DEBUG", "1")
    with pytest.raises(KeyError):
        main([])


@pytest.mark.parametrize("returned, code, err", [(7, 7, ""), (130, 130, "interrupted\n"), (None, 0, ""), (0, 0, "")])
def test_exit_codes_returned_by_typer_become_the_exit_code(monkeypatch, run_cli, returned, code, err):
    # standalone_mode=False: typer returns Exit's code (Ctrl-C arrives as Exit(130)) instead of exiting.
    monkeypatch.setattr("yolohand.cli.app", lambda *a, **k: returned)
    assert run_cli([])[0::2] == (code, err)


def test_interrupt_outside_typer_is_130(monkeypatch, run_cli):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("yolohand.cli.app", interrupted)
    assert run_cli([])[0::2] == (130, "interrupted\n")


def test_warnings_print_as_one_line(monkeypatch, run_cli):
    import warnings

    def warns(*args, **kwargs):
        warnings.warn("x.png: not a readable\n  image (truncated)", UserWarning, stacklevel=1)

    monkeypatch.setattr("yolohand.cli.app", warns)
    code, _, err = run_cli([])
    assert code == 0 and err == "warning: x.png: not a readable image (truncated)\n"


# --------------------------------------------------------------------------- commands as a user meets them


def test_bad_config_is_one_line_with_file_and_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolohand.yaml").write_text("root: [a, b\nyolo: x\n")
    code, _, err = run_cli(["convert"])
    assert code == 1 and err.splitlines() == ["error: yolohand.yaml:2: not valid YAML (expected ',' or ']', but got ':')"]
    (tmp_path / "yolohand.yaml").write_text("roots: a\n")
    code, _, err = run_cli(["convert"])
    assert err.splitlines() == ["error: yolohand.yaml: unknown setting 'roots' (did you mean 'root'?); known: root, runs, yolo"]


def test_train_config_types_and_typos(tmp_path):
    from yolohand.models.yolo.train import read_run_config

    (tmp_path / "a.yaml").write_text("lr0: abc\n")
    with pytest.raises(YolohandError, match=r"a.yaml: lr0: 'abc' is not a number \(default 0.01\)"):
        read_run_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("mosiac: 0.5\n")
    with pytest.raises(YolohandError, match=r"'mosiac' is not an ultralytics train argument \(did you mean 'mosaic'\?\)"):
        read_run_config(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("amp: 3\n")
    with pytest.raises(YolohandError, match="amp: 3 is not true or false"):
        read_run_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("lr0: 0.002\nimgsz: [512, 512]\nmosaic: 1\n")
    assert read_run_config(tmp_path / "d.yaml") == {"lr0": 0.002, "imgsz": [512, 512], "mosaic": 1}


@pytest.mark.parametrize("argv, message", [
    (["predict", "--rle", "p.csv", "--iou", "5"], "Invalid value for '--iou'"),
    (["predict", "--rle", "p.csv", "--imgsz", "0"], "Invalid value for '--imgsz'"),
    (["predict", "--rle", "p.csv", "--device", "bogus"], "Invalid value for '--device'"),
    (["train", "--device", "bogus"], "Invalid value for '--device'"),
    (["compare", "a.csv", "b.csv", "--size", "0,0"], "Invalid value for '--size'"),
    (["app", "--size", "0,0"], "Invalid value for '--size'"),
    (["synth", "x", "--size", "999999999"], "Invalid value for '--size'"),
])
def test_bad_option_values_are_refused_up_front(tmp_path, run_cli, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_device_without_a_gpu(run_cli, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["predict", "--rle", "p.csv", "--device", "0"])
    assert code == 2 and "no CUDA GPU is available here; use --device cpu" in err


def test_predict_checks_outputs_and_ground_truth_before_inference(synth_root, tmp_path, run_cli, monkeypatch):
    import yolohand.models.family as family

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(family, "load_network", no_model)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("mine")
    source = synth_root / "test" / "DCM"
    cases = [
        (["--rle", tmp_path / "dir"], "is a folder; --rle writes a submission CSV"),
        (["--rle", tmp_path / "p.csv", "--save-probs", tmp_path / "file", "--force"], "exists and is not a folder"),
        (["--rle", source / "p.csv"], "--rle lies inside the input"),
        (["--rle", tmp_path / "p.csv", "--gt", tmp_path / "dir"], "not a dataset root"),
        (["--rle", "/proc/p.csv"], "cannot write in /proc"),
    ]
    for extra, match in cases:
        code, _, err = run_cli(["predict", "--source", source, *extra])
        assert code == 1 and match in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


# --------------------------------------------------------------------------- Ctrl-C, for real


def _interrupt(args, cwd: Path, wait_for: bytes, timeout: float = 120) -> tuple[int, str]:
    """Start ``python -m yolohand ARGS`` in its own process group, wait until stderr shows
    ``wait_for`` (the work has started), send SIGINT to the group (what a terminal's Ctrl-C
    does), return (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "yolohand", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    seen, t0 = b"", time.monotonic()
    while wait_for not in seen and time.monotonic() - t0 < timeout:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    assert wait_for in seen, seen.decode(errors="replace")
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=timeout)
    return proc.returncode, (seen + rest).decode(errors="replace")


def test_ctrl_c_during_synth_exits_130_and_leaves_nothing(tmp_path):
    code, err = _interrupt(["synth", "out", "--size", "2048", "--train-ids", "20", "--test-ids", "0",
                            "--workers", "2"], tmp_path, b"synth:")
    assert code == 130 and err.rstrip().endswith("interrupted") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder


def test_ctrl_c_during_convert_exits_130_and_leaves_nothing(tmp_path):
    from yolohand.data.synth import generate_dataset

    one = tmp_path / "one"
    generate_dataset(one, train_ids=1, test_ids=0, size=2048, workers=1, progress=False)
    png = next((one / "train" / "DCM").rglob("*.png"))
    js = next((one / "train" / "outputs_json").rglob("*.json"))
    root = tmp_path / "root"
    for i in range(150):  # many images, cheaply: links to one 2048 px image
        for sub, src, ext in (("DCM", png, ".png"), ("outputs_json", js, ".json")):
            d = root / "train" / sub / f"ID{i:03d}"
            d.mkdir(parents=True)
            (d / f"image{i}{ext}").symlink_to(src)
    before = _tree(root)
    code, err = _interrupt(["convert", "--root", root, "--out", tmp_path / "yolo", "--folds", "2",
                            "--workers", "2"], tmp_path, b"convert:")
    assert code == 130 and err.rstrip().endswith("interrupted") and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "root"], list(tmp_path.iterdir())
    assert _tree(root) == before


def test_cli_errors_from_a_subprocess_are_one_grep_able_line(tmp_path):
    (tmp_path / "a.csv").write_text("image_name,class,rle\n")
    proc = subprocess.run([sys.executable, "-m", "yolohand", "compare", "a.csv", "nothere.csv", "--size", "2,2",
                           "--out", "r"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == ["error: nothere.csv: cannot open: No such file or directory"]
    assert "Traceback" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_compare_cannot_eat_its_input(tmp_path):
    from yolohand.core.submission import write_submission

    write_submission(tmp_path / "a.csv", [("x.png", ["1 2"] + [""] * 28)])
    write_submission(tmp_path / "b.csv", [("x.png", [""] * 29)])
    before = _tree(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "yolohand", "compare", "a.csv", "b.csv", "--out", "a.csv", "--force",
                           "--size", "2,2"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1].startswith("error: a.csv: --out is also an input")
    assert _tree(tmp_path) == before


def test_umask_modes_of_command_outputs(tmp_path):
    env = dict(ENV)
    code = subprocess.run(["sh", "-c", f"umask 022 && {sys.executable} -m yolohand synth s --size 64 --train-ids 1 "
                           "--test-ids 1 --workers 1 && "
                           f"{sys.executable} -m yolohand gt g.csv --root s --split test"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "g.csv").stat().st_mode) == 0o644
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "s").rglob("*.png")} == {0o644}
    assert np.all([stat.S_IMODE(p.stat().st_mode) == 0o755 for p in (tmp_path / "s").rglob("*") if p.is_dir()])
