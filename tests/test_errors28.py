"""Issue 28: every failure is one ``error:`` line naming the file, with exit 1, no traceback and
nothing half-written: pathological JSON, full disks, corrupt maps and checkpoints, checkpoint
metadata, ``-o e.csv/``, special files as outputs, bad ``yolohand.yaml`` values, binary fold YAMLs.

Each class is run on the command line as a user would (:func:`yolohand.cli.main`, the console
entry point, in-process for speed; a few in a real subprocess), on tiny synthetic data.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yolohand.errors import YolohandError

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def one_error(code: int, err: str, *names: object) -> str:
    """Assert exit 1, exactly one ``error:`` line naming every one of ``names``, no traceback; the line."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert len(errors) == 1, err
    assert all(str(n) in errors[0] for n in names), (errors[0], names)
    assert "Traceback" not in err and "unexpected" not in err, err
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary or half-written files yolohand may have left under ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")) or "probe" in p.name)


def copy_split(root: Path, dest: Path, split: str = "test") -> Path:
    """A writable copy of one split of a synthetic root (the fixtures are shared, read-only)."""
    shutil.copytree(root / split, dest / split)
    return dest


# --------------------------------------------------------------------------- 1. pathological JSON


def deep_json(path: Path, depth: int = 5000) -> None:
    """An annotation file whose points nest ``depth`` levels deep (RecursionError inside json)."""
    points = "[" * depth + "]" * depth
    path.write_text('{"annotations": [{"id": "a", "label": "finger-1", "points": ' + points + "}]}")


def test_deeply_nested_json_is_the_bad_json_line_for_gt_evaluate_show(synth_root, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = copy_split(synth_root, tmp_path / "root")
    assert run_cli(["gt", "good.csv", "--root", root, "--split", "test"])[0] == 0
    bad = sorted((root / "test" / "outputs_json").rglob("*.json"))[0]
    image = root / "test" / "DCM" / bad.parent.name / (bad.stem + ".png")
    deep_json(bad)
    line = one_error(*run_cli(["gt", "g.csv", "--root", root, "--split", "test"])[::2], bad)
    assert line.endswith("not valid JSON (nested too deeply to read)")
    one_error(*run_cli(["evaluate", "good.csv", "--gt", root, "--split", "test"])[::2], bad, "not valid JSON")
    one_error(*run_cli(["show", image, "--gt", "--out", "o.png"])[::2], bad, "not valid JSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "root"]


def test_deeply_nested_json_is_skipped_by_convert(synth_root, tmp_path, run_cli):
    root = copy_split(synth_root, tmp_path / "root", "train")
    bad = sorted((root / "train" / "outputs_json").rglob("*.json"))[0]
    deep_json(bad)
    code, out, err = run_cli(["convert", "--root", root, "--out", tmp_path / "y", "--folds", "2", "--workers", "1"])
    assert code == 0, err
    warnings = [line for line in (out + err).splitlines() if line.startswith("warning:") and str(bad) in line]
    assert len(warnings) == 1 and "not valid JSON (nested too deeply to read)" in warnings[0], err


# --------------------------------------------------------------------------- 2. a full disk


@pytest.fixture(scope="module")
def inputs(synth_root, tmp_path_factory):
    """Inputs of the writing commands: the test split's ground truth as a CSV, two map folders."""
    import numpy as np

    from yolohand.core.probmaps import probmap_path, save_probmap
    from yolohand.results.evaluate import find_split

    place = tmp_path_factory.mktemp("inputs28")
    csv = place / "gt.csv"
    from yolohand.cli import main

    main(["gt", str(csv), "--root", str(synth_root), "--split", "test"])
    assert csv.is_file()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for rec in find_split(synth_root, "test").records:
            save_probmap(probmap_path(place / name, rec.name), rng.integers(0, 256, (29, 256, 256), dtype=np.uint8))
    return {"root": synth_root, "csv": csv, "a": place / "a", "b": place / "b",
            "image": find_split(synth_root, "test").records[0].image_path}


#: command -> (arguments writing under OUT, the output the error line must name)
WRITERS = {
    "gt": (lambda d, o: ["gt", o / "g.csv", "--root", d["root"], "--split", "test"], "g.csv"),
    "evaluate --json": (lambda d, o: ["evaluate", d["csv"], "--gt", d["root"], "--split", "test", "--json", o / "e.json"],
                        "e.json"),
    "ensemble": (lambda d, o: ["ensemble", d["csv"], d["csv"], "--out", o / "en.csv", "--size", "256,256"], "en.csv"),
    "ensemble --save-probs": (lambda d, o: ["ensemble", "--probs", d["a"], "--probs", d["b"], "--out", d["csv"].parent
                                            / "unused.csv", "--save-probs", o / "maps"], "maps"),
    "predict --save-probs": (lambda d, o: ["predict", "-w", SMP, "--source", d["image"], "--rle", d["csv"].parent
                                           / "unused-p.csv", "--save-probs", o / "maps"], "maps"),
    "show": (lambda d, o: ["show", d["image"], "--gt", "--out", o / "o.png"], "o.png"),
    "compare": (lambda d, o: ["compare", d["csv"], d["csv"], "--out", o / "r", "--size", "256,256", "--top", "1"], "r"),
    "convert": (lambda d, o: ["convert", "--root", d["root"], "--out", o / "y", "--folds", "2", "--workers", "1"], "y"),
}


class FullDisk:
    """A file opened for writing under ``folder`` whose writes fail as on a full disk: ENOSPC, or
    (``short``) half the bytes written and numpy's ``N requested and M written`` OSError."""

    def __init__(self, fh, short: bool) -> None:
        self._fh, self._short = fh, short

    def write(self, data):
        if self._short:
            n = len(data)
            self._fh.write(data[: n // 2])
            raise OSError(f"{n} requested and {n // 2} written")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


def fill_disk(monkeypatch, folder: Path, short: bool = False) -> None:
    """Every file opened for writing under ``folder`` (open, Path.open/write_*, os.fdopen) fails to write."""
    import builtins
    import io

    real = io.open
    folder = folder.resolve()

    def where(file) -> Path:
        return Path(os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file))

    def opened(file, mode="r", *args, **kwargs):
        fh = real(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and where(file).is_relative_to(folder):
            return FullDisk(fh, short)
        return fh

    monkeypatch.setattr(io, "open", opened)
    monkeypatch.setattr(builtins, "open", opened)


@pytest.mark.parametrize("command", list(WRITERS))
def test_full_disk_is_one_line_naming_the_output_and_leaves_nothing(inputs, tmp_path, run_cli, monkeypatch, command):
    argv, name = WRITERS[command]
    out = tmp_path / "out"
    out.mkdir()
    fill_disk(monkeypatch, out)
    code, _, err = run_cli(argv(inputs, out))
    line = one_error(code, err, out / name, "no space left on device while writing")
    assert line.endswith("nothing written (free space or choose another place)")
    assert list(out.iterdir()) == []  # neither the output nor a temporary


@pytest.mark.parametrize("command", ["gt", "ensemble --save-probs"])
def test_short_write_names_the_output(inputs, tmp_path, run_cli, monkeypatch, command):
    argv, name = WRITERS[command]
    out = tmp_path / "out"
    out.mkdir()
    fill_disk(monkeypatch, out, short=True)
    code, _, err = run_cli(argv(inputs, out))
    one_error(code, err, out / name, "a short write (", "requested and", "the disk is probably full")
    assert list(out.iterdir()) == []


def test_write_failure_keeps_the_previous_output(inputs, tmp_path, run_cli, monkeypatch):
    argv, _ = WRITERS["gt"]
    assert run_cli(argv(inputs, tmp_path))[0] == 0
    before = (tmp_path / "g.csv").read_bytes()
    fill_disk(monkeypatch, tmp_path)
    one_error(*run_cli([*argv(inputs, tmp_path), "--force"])[::2], tmp_path / "g.csv", "no space left")
    assert (tmp_path / "g.csv").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["g.csv"]


def test_read_error_inside_a_folder_output_is_not_called_a_full_disk(tmp_path):
    from yolohand.core.atomic import atomic_dir

    with pytest.raises(FileNotFoundError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
        (tmp_path / "missing-input").read_text()  # names another file: that file's own error
    with pytest.raises(YolohandError, match="no space left on device while writing sub/x"), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "sub" / "x"))
    assert list(tmp_path.iterdir()) == []


def test_real_full_tmpfs(inputs, tmp_path):
    """A real 64 KiB tmpfs, filled (in a private mount namespace; skipped where mounting is not allowed)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    run = [sys.executable, "-m", "yolohand"]
    gt = " ".join(map(str, [*run, "gt", disk / "g.csv", "--root", inputs["root"], "--split", "test"]))
    probs = " ".join(map(str, [*run, "ensemble", "--probs", inputs["a"], "--probs", inputs["b"], "--out",
                               tmp_path / "s.csv", "--save-probs", disk / "maps"]))
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} || exit 99; head -c 60000 /dev/zero > {disk}/fill; "
              f"{gt}; echo rc=$?; {probs}; echo rc=$?; ls -A {disk}")
    # A private mount namespace (as root, or a user namespace mapped to root): the mount ends with the shell.
    private = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    proc = subprocess.run([*private, "sh", "-c", script], env=ENV, capture_output=True, text=True, timeout=120)
    if proc.returncode == 99 or (proc.returncode and not proc.stdout):
        pytest.skip(f"mounting a tmpfs is not allowed here: {proc.stderr.strip()[:200]}")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.stdout.split() == ["rc=1", "rc=1", "fill"], (proc.stdout, proc.stderr)
    assert len(errors) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith(f"error: {disk / 'g.csv'}: no space left on device while writing it")
    assert errors[1].startswith(f"error: {disk / 'maps'}: no space left on device while writing")


# --------------------------------------------------------------------------- 8. `-o e.csv/`


@pytest.mark.parametrize("spelling", ["e.csv/", "./e.csv/", "--out=e.csv/"])
def test_file_output_with_a_trailing_separator_is_refused(inputs, tmp_path, run_cli, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    out = ["--out", spelling] if not spelling.startswith("--") else [spelling]
    code, _, err = run_cli(["ensemble", inputs["csv"], inputs["csv"], *out, "--size", "256,256"])
    line = one_error(code, err, "e.csv/: ends in '/' (a folder), but --out writes a submission CSV")
    assert "give a file name (e.g. e.csv/out.csv) or drop the '/'" in line
    code, _, err = run_cli(["gt", spelling.removeprefix("--out="), "--root", inputs["root"], "--split", "test"])
    one_error(code, err, "e.csv/: ends in '/'")
    assert list(tmp_path.iterdir()) == []
    # The same word without the separator, and a folder output with one, are fine.
    assert run_cli(["gt", "e.csv", "--root", inputs["root"], "--split", "test"])[0] == 0
    assert run_cli(["compare", "e.csv", "e.csv", "--out", "rep/", "--size", "256,256", "--top", "0"])[0] == 0


# --------------------------------------------------------------------------- 10. special files, empty files


def test_special_files_are_never_replaced(inputs, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("fifo.csv")
    os.symlink("/dev/null", "null.csv")
    gt = ["--root", inputs["root"], "--split", "test", "--force"]
    for out, why in [("fifo.csv", "is a named pipe (FIFO)"), ("null.csv", "is a link to a character device"),
                     ("/dev/stdout", "lies in /dev, a system folder"), ("/dev/null", "lies in /dev, a system folder")]:
        line = one_error(*run_cli(["gt", out, *gt])[::2], f"{out}: {why}")
        assert line.endswith("write to a regular file instead (refused even with --force)")
    assert os.readlink("/dev/stdout") and os.path.islink("null.csv") and Path("fifo.csv").is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.csv", "null.csv"]


def test_the_rename_never_replaces_a_special_file(tmp_path, monkeypatch):
    """Even when the place changes after the check (the final check before the rename)."""
    from yolohand.core import atomic

    out = tmp_path / "x.csv"
    with pytest.raises(YolohandError, match="is a named pipe"), atomic.atomic_file(out) as fh:
        fh.write("image_name,class,rle\n")
        os.mkfifo(out)
    assert out.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


def test_empty_regular_file_is_replaced_only_with_force(inputs, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("g.csv").touch()
    gt = ["gt", "g.csv", "--root", inputs["root"], "--split", "test"]
    one_error(*run_cli(gt)[::2], "g.csv: already exists (pass --force to replace it)")
    assert run_cli([*gt, "--force"])[0] == 0 and Path("g.csv").read_text().startswith("image_name,class,rle")


# --------------------------------------------------------------------------- 3. corrupt probability maps


def damage(npz: Path) -> None:
    """Overwrite bytes in the middle of the compressed ``probs`` stream of an .npz."""
    import zipfile

    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo("probs.npy")
    data = bytearray(npz.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the local header's size
    middle = start + info.compress_size // 2
    data[middle : middle + 64] = bytes(range(64))
    npz.write_bytes(bytes(data))


def lying_header(npz: Path, shape=(29, 30000, 30000)) -> None:
    """An .npz whose ``probs`` header claims ``shape`` but holds a few bytes."""
    import io
    import zipfile

    import numpy as np

    from yolohand.core.classes import CLASSES

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    names = io.BytesIO()
    np.save(names, np.array(CLASSES))
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("probs.npy", head.getvalue() + bytes(4096))
        zf.writestr("classes.npy", names.getvalue())


@pytest.mark.parametrize("spoil, says", [(damage, "corrupt probability map ("),
                                         (lying_header, "corrupt probability map: the header of 'probs' says "
                                                        "(29, 30000, 30000) uint8")])
def test_corrupt_maps_name_the_file_in_evaluate_and_ensemble(inputs, tmp_path, run_cli, monkeypatch, spoil, says):
    monkeypatch.chdir(tmp_path)
    maps = tmp_path / "maps"
    shutil.copytree(inputs["a"], maps)
    bad = sorted(maps.glob("*.npz"))[-1]  # the last: the first is read for the sizes of an ensemble
    spoil(bad)
    one_error(*run_cli(["evaluate", maps, "--gt", inputs["root"], "--split", "test"])[::2], bad, says)
    one_error(*run_cli(["ensemble", "--probs", inputs["b"], "--probs", maps, "--out", "s.csv"])[::2], bad, says)
    bad.rename(maps / "aaa.npz")  # now the first map, whose header gives an ensemble its sizes
    first = maps / "aaa.npz"
    code, _, err = run_cli(["ensemble", "--probs", maps, "--probs", maps, "--out", "s.csv"])
    one_error(code, err, first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


def test_a_map_larger_than_memory_is_refused_from_its_header(tmp_path, monkeypatch):
    """A consistent map too large for this machine: refused before its bytes are read or allocated."""
    import numpy as np

    from yolohand.core import probmaps

    path = tmp_path / "m.npz"
    probmaps.save_probmap(path, np.zeros((29, 64, 64), np.uint8))
    monkeypatch.setattr(probmaps, "_free_memory", lambda: 1000)
    with pytest.raises(YolohandError, match=r"m.npz: its maps are 64x64 \(0.0 GiB\), more than the 0.0 GiB of memory"):
        probmaps.load_probmap(path)


# --------------------------------------------------------------------------- 10. bad yolohand.yaml values, fold YAMLs


@pytest.mark.parametrize("value, says", [("[1, 2]", "runs: [1, 2] is not a path"), ("", "runs: empty"),
                                         ("true", "runs: True is not a path"), ("{a: 1}", "runs: {'a': 1} is not a path")])
def test_yolohand_yaml_values_of_the_wrong_type(tmp_path, run_cli, monkeypatch, value, says):
    monkeypatch.chdir(tmp_path)
    Path("yolohand.yaml").write_text(f"runs: {value}\n")
    line = one_error(*run_cli(["train"])[::2], f"yolohand.yaml: {says}")
    assert line.endswith("expected a folder, e.g. runs: runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolohand.yaml"]


def test_fold_yaml_of_random_bytes_names_the_file(tmp_path, monkeypatch):
    from yolohand.data.convert import cache_imgsz, read_fold_yaml

    fold = tmp_path / "fold0.yaml"
    fold.write_bytes(bytes(range(128, 256)) * 3)
    for read in (read_fold_yaml, cache_imgsz):
        with pytest.raises(YolohandError, match=f"^{fold}: not valid YAML \\(not UTF-8 text\\)$"):
            read(fold)
    fold.write_text("- 1\n")
    with pytest.raises(YolohandError, match=f"^{fold}: not a fold YAML"):
        read_fold_yaml(fold)
    fold.write_text("cache_imgsz: big\n")
    with pytest.raises(YolohandError, match="cache_imgsz: 'big' is not a size in pixels"):
        cache_imgsz(fold)


def test_train_on_a_fold_yaml_of_random_bytes(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fold = tmp_path / "yolo" / "folds" / "fold0.yaml"
    fold.parent.mkdir(parents=True)
    fold.write_bytes(bytes(range(250, 256)) + bytes(range(128, 250)))
    code, _, err = run_cli(["train", "--yolo", "yolo", "--runs", "runs", "--model", "yolo11n-seg.yaml"])
    assert one_error(code, err, fold) == f"error: {fold}: not valid YAML (not UTF-8 text)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolo"]


# --------------------------------------------------------------------------- 4. corrupt checkpoints on --resume

SMP = Path(__file__).resolve().parent.parent / "yolohand" / "weights" / "yolohand-synth-smp.pt"
YOLO = SMP.with_name("yolohand-synth-n.pt")


def spoil_checkpoint(path: Path, how: str) -> None:
    """``path`` made into a checkpoint that cannot be resumed, as ``how`` says."""
    import zipfile

    good = SMP.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "text":
        path.write_text("not a checkpoint\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("notes.txt", "x")
    elif how == "damaged":
        data = bytearray(good)
        data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)
        path.write_bytes(bytes(data))
    elif how == "pickle":  # an ultralytics checkpoint where a Lightning state belongs
        path.write_bytes(YOLO.read_bytes())
    elif how == "finished smp":  # a yolohand checkpoint without training state
        path.write_bytes(good)


def fake_run(tmp_path: Path, how: str, last_from: str = "smp") -> tuple[Path, Path]:
    """A converted-data folder and a run whose fold0/weights/last.pt is spoiled: (yolo, last)."""
    yolo = tmp_path / "yolo"
    (yolo / "folds").mkdir(parents=True)
    (yolo / "folds" / "fold0.yaml").write_text("path: .\ntrain: x\nval: x\nnames: {0: finger-1}\nchannels: 1\n")
    for split in ("train", "val"):
        (yolo / "folds" / f"fold0_{split}.txt").write_text("")
    weights = tmp_path / "runs" / "r" / "fold0" / "weights"
    weights.mkdir(parents=True)
    (weights.parent / "args.yaml").write_text("epochs: 1\n")
    spoil_checkpoint(weights / "last.pt", how)
    return yolo, weights / "last.pt"


RESUME_CASES = [("truncated", "a truncated or damaged archive"), ("text", "(text)"), ("empty", "(empty)"),
                ("foreign zip", "a zip archive that torch did not write"), ("damaged", "damaged: bad CRC in"),
                ("pickle", "it holds pickled Python objects"), ("finished smp", "no training state")]


@pytest.mark.parametrize("how, says", RESUME_CASES)
def test_resume_from_a_spoiled_last_pt_smp(tmp_path, run_cli, monkeypatch, how, says):
    monkeypatch.chdir(tmp_path)
    yolo, last = fake_run(tmp_path, how)
    before = last.read_bytes()
    code, _, err = run_cli(["train", "--yolo", yolo, "--runs", "runs", "--name", "r", "--resume",
                            "--model", "smp:Unet:mobilenet_v2", "--imgsz", "64"])
    line = one_error(code, err, last, "not a readable checkpoint", says)
    assert line.endswith("it cannot be resumed: start the run over with --force")
    assert last.read_bytes() == before and sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("how, says", RESUME_CASES[:5])
def test_resume_from_a_spoiled_last_pt_yolo(tmp_path, run_cli, monkeypatch, how, says):
    monkeypatch.chdir(tmp_path)
    yolo, last = fake_run(tmp_path, how)
    code, _, err = run_cli(["train", "--yolo", yolo, "--runs", "runs", "--name", "r", "--resume"])
    line = one_error(code, err, last, "not a readable checkpoint", says)
    assert line.endswith("start the run over with --force")
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]


# --------------------------------------------------------------------------- 7. checkpoint metadata


def smp_checkpoint(path: Path, change) -> Path:
    """The shipped smp checkpoint with ``change(ckpt)`` applied, saved at ``path``."""
    import torch

    ckpt = torch.load(SMP, map_location="cpu", weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


def set_meta(**values):
    return lambda ckpt: ckpt["yolohand"].update(values)


@pytest.mark.parametrize("change, says", [
    (set_meta(imgsz=-64), "checkpoint metadata imgsz: -64 is not a whole number in 1..65536"),
    (set_meta(imgsz="big"), "checkpoint metadata imgsz: 'big' is not a whole number in 1..65536"),
    (set_meta(imgsz=100, multiple=32), "checkpoint metadata imgsz: 100 is not a multiple of the network's side multiple (32)"),
    (set_meta(channels=0), "checkpoint metadata channels: 0 is not a whole number"),
    (set_meta(arch=5), "checkpoint metadata arch: 5 is not a segmentation_models_pytorch name"),
    (set_meta(encoder=""), "checkpoint metadata encoder: '' is not a segmentation_models_pytorch name"),
    (set_meta(family="gan"), "checkpoint metadata family: 'gan' is not one of yolo, smp, refine"),
    (set_meta(std=[0.0]), "checkpoint metadata std: [0.0] is not positive"),
    (lambda c: c["yolohand"]["names"].__setitem__(0, "Thumb"),
     "checkpoint metadata names: 'Thumb' is not one of the 29 classes"),
    (lambda c: c["yolohand"]["names"].pop(), "checkpoint metadata names: 28 names, not the 29 classes each once"),
    (set_meta(names="finger-1"), "checkpoint metadata names: str, not a list of the 29 class names"),
])
def test_checkpoint_metadata_is_validated_on_load(inputs, tmp_path, run_cli, monkeypatch, change, says):
    monkeypatch.chdir(tmp_path)
    bad = smp_checkpoint(tmp_path / "bad.pt", change)
    code, _, err = run_cli(["predict", "-w", bad, "--source", inputs["image"], "--rle", "p.csv"])
    one_error(code, err, bad, says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_class_names_in_another_order_are_reordered_by_name(inputs, tmp_path, run_cli, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)

    def shuffle(ckpt) -> None:  # swap two classes' names and their output channels: the same model
        names, state = ckpt["yolohand"]["names"], ckpt["state_dict"]
        names[0], names[27] = names[27], names[0]
        for key in ("model.segmentation_head.0.weight", "model.segmentation_head.0.bias"):
            state[key] = state[key][torch.tensor([27, *range(1, 27), 0, 28])].clone()

    swapped = smp_checkpoint(tmp_path / "swapped.pt", shuffle)
    assert run_cli(["predict", "-w", SMP, "--source", inputs["image"], "--rle", "a.csv"])[0] == 0
    code, _, err = run_cli(["predict", "-w", swapped, "--source", inputs["image"], "--rle", "b.csv"])
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and str(swapped) in warnings[0], err
    assert "class names are in another order than yolohand's (channel 0 is 'Radius', not 'finger-1')" in warnings[0]
    assert Path("a.csv").read_text() == Path("b.csv").read_text()


def test_nan_weights_warn_and_an_all_empty_prediction_says_so(inputs, tmp_path, run_cli, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)

    def poison(ckpt) -> None:
        ckpt["state_dict"]["model.segmentation_head.0.bias"] = torch.full((29,), float("nan"))

    nan = smp_checkpoint(tmp_path / "nan.pt", poison)
    code, _, err = run_cli(["predict", "-w", nan, "--source", inputs["image"], "--rle", "p.csv"])
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 2 and "Traceback" not in err, err
    assert warnings[0].startswith(f"warning: {nan}: 1 weight tensor(s) hold NaN or infinity")
    assert warnings[1].startswith(f"warning: {nan}: every mask is empty in all 1 readable images")


@pytest.mark.parametrize("rename, says", [
    (lambda names: {**names, 0: names[27], 27: names[0]}, "in another order than yolohand's (class 0 is 'Radius', not 'finger-1')"),
    (lambda names: {**names, 3: "Thumb"}, "not yolohand's 29 bones (class 3 is 'Thumb', not 'finger-4')"),
])
def test_a_yolo_checkpoint_with_other_class_names_is_refused(inputs, tmp_path, run_cli, monkeypatch, rename, says):
    import torch

    from yolohand.models.yolo.offline import setup_offline

    monkeypatch.chdir(tmp_path)
    setup_offline()
    ckpt = torch.load(YOLO, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            ckpt[key].names = rename(dict(ckpt[key].names))
    torch.save(ckpt, tmp_path / "renamed.pt")
    code, _, err = run_cli(["predict", "-w", "renamed.pt", "--source", inputs["image"], "--rle", "p.csv"])
    one_error(code, err, "renamed.pt", f"its class names are {says}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renamed.pt"]


# --------------------------------------------------------------------------- 2. a full disk while training


def test_full_disk_while_training_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    """The smp/refine trainer writes best.pt, last.pt (and results.csv) whole or not at all: a full disk
    is one line naming the file, and the run does not look finished (a rerun replaces it)."""
    import torch

    from yolohand.models.shared.config import DEFAULTS
    from yolohand.models.shared.engine import AtomicCheckpointIO, ResultsCsv, make_trainer

    run = tmp_path / "fold0"
    trainer, _ = make_trainer(dict(DEFAULTS, epochs=1), run, None, progress=False)
    io = trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    weights = run / "weights"
    weights.mkdir(parents=True)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(4)}}, weights / "last.pt")  # an earlier epoch's
    before = (weights / "last.pt").read_bytes()
    fill_disk(monkeypatch, run)
    for name in ("best.pt", "last.pt"):
        with pytest.raises(YolohandError, match=f"^{weights / name}: no space left on device while writing it; "):
            io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, weights / name)
    assert sorted(p.name for p in weights.iterdir()) == ["last.pt"] and (weights / "last.pt").read_bytes() == before
    csv = ResultsCsv(run / "results.csv")
    csv.rows = [{"epoch": 1, "metrics/dice(M)": "0.5"}]
    trainer_stub = type("T", (), {"global_rank": 0, "val_dataloaders": None, "limit_val_batches": 0,
                                  "callback_metrics": {}, "optimizers": [], "current_epoch": 1})()
    with pytest.raises(YolohandError, match=f"^{run / 'results.csv'}: no space left on device while writing it"):
        csv.on_train_epoch_end(trainer_stub, None)
    assert sorted(p.name for p in run.iterdir()) == ["weights"]


@pytest.mark.parametrize("step", ["save_model", "final_eval"])
def test_full_disk_while_training_yolo_removes_the_half_written_checkpoint(tmp_path, monkeypatch, step):
    """ultralytics writes last.pt / best.pt in place: the half-written one is removed, one line names it."""
    from ultralytics.engine.trainer import BaseTrainer

    from yolohand.models.yolo.trainer import DiceSegmentationTrainer

    wdir = tmp_path / "weights"
    wdir.mkdir()
    (wdir / "last.pt").write_bytes(SMP.read_bytes())  # a complete checkpoint of an earlier epoch

    def half_write(self):
        self.best.write_bytes(SMP.read_bytes()[:5000])
        if step == "save_model":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/3")

    monkeypatch.setattr(BaseTrainer, step, half_write)
    trainer = DiceSegmentationTrainer.__new__(DiceSegmentationTrainer)
    trainer.wdir, trainer.last, trainer.best = wdir, wdir / "last.pt", wdir / "best.pt"
    says = "no space left on device" if step == "save_model" else "the write failed (["
    with pytest.raises(YolohandError, match=f"^{wdir / 'best.pt'}: {re.escape(says)}"):
        getattr(trainer, step)()
    assert sorted(p.name for p in wdir.iterdir()) == ["last.pt"]


def test_dev_shm_is_an_ordinary_place(tmp_path):
    from yolohand.core import paths as P

    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    out = Path("/dev/shm") / f"yolohand-test-{os.getpid()}.csv"
    out.write_text("image_name,class,rle\n")
    try:
        assert P.not_replaceable(out) is None and P.check_output(out, P.CSV, force=True) == out
    finally:
        out.unlink()


def test_full_disk_while_caching_training_samples_names_the_cache_file(tmp_path, monkeypatch):
    import numpy as np

    from yolohand.data import samples

    fill_disk(monkeypatch, tmp_path)
    with pytest.raises(YolohandError, match=f"^{tmp_path / 'x.npy'}: no space left on device while writing it"):
        samples._save(tmp_path / "x.npy", np.zeros((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []
