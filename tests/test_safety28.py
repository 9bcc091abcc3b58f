"""Issue 28, run as a user would: `train --force` never destroys its own inputs, outputs never lie inside
inputs, Ctrl-C from the first instruction exits 130 and leaves no process behind, nothing reaches the
network, and absurd requests are refused up front.

In-process tests call the CLI's boundary (:func:`yolohand.cli.main`, the ``run_cli`` fixture); the
Ctrl-C and import-phase tests start ``python -m yolohand`` / the console script in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- part 0: --force and its inputs


@pytest.fixture(scope="module")
def converted(synth_root, tmp_path_factory) -> Path:
    """``synth_root`` converted (2 folds, 256 px), read-only for the tests."""
    from yolohand.data.convert import convert_dataset

    out = tmp_path_factory.mktemp("c28") / "yolo"
    convert_dataset(synth_root, out, folds=2, seed=0, imgsz=256, workers=1)
    return out


def _previous_run(runs: Path, name: str = "y") -> Path:
    """A finished run folder as every family leaves it (args.yaml, weights/{best,last}.pt, results.csv)."""
    run = runs / name / "fold0"
    (run / "weights").mkdir(parents=True)
    (run / "args.yaml").write_text("epochs: 1\n")
    (run / "results.csv").write_text("epoch,metrics/dice(M)\n1,0.5\n")
    for w in ("best.pt", "last.pt"):
        (run / "weights" / w).write_bytes(os.urandom(4096))  # never read: the refusal comes first
    return run


def _train(run_cli, converted, runs, *extra):
    return run_cli(["train", "--yolo", converted, "--runs", runs, "--name", "y", "--epochs", "1", "--imgsz", "64",
                    "--device", "cpu", "--force", *extra])


@pytest.mark.parametrize("family", ["yolo", "smp:Unet:resnet18", "refine:Unet:resnet18"])
@pytest.mark.parametrize("kind", ["model", "config", "pretrained", "detector"])
def test_force_never_deletes_an_input_inside_the_run_it_replaces(run_cli, converted, tmp_path, monkeypatch, family, kind):
    """`train --model runs/y/fold0/weights/best.pt --name y --force` (fine-tune from my last best) used to
    delete best.pt before reading it; the same for a --config, pretrained: or detector: inside the run."""
    monkeypatch.chdir(tmp_path)
    if kind == "model" and family != "yolo" or kind == "detector" and not family.startswith("refine"):
        pytest.skip("not an input of this family")
    if kind == "pretrained" and family == "yolo":
        pytest.skip("ultralytics' pretrained: is a bool here (config types)")
    run = _previous_run(tmp_path / "runs")
    best = run / "weights" / "best.pt"
    extra = [] if family == "yolo" else ["--model", family]
    if kind == "model":
        extra = ["--model", "runs/y/fold0/weights/best.pt"]
        watched, what = best, "--model"
    elif kind == "config":
        (run / "cfg.yaml").write_text("epochs: 2\n")
        extra += ["--config", "runs/y/fold0/cfg.yaml"]
        watched, what = run / "cfg.yaml", "--config"
    else:
        (tmp_path / "cfg.yaml").write_text(f"{kind}: runs/y/fold0/weights/best.pt\n")
        extra += ["--config", "cfg.yaml"]
        watched, what = best, f"{kind} (in cfg.yaml)"
    before, everything = _sha(watched), sorted(p.relative_to(run) for p in run.rglob("*"))
    code, _, err = _train(run_cli, converted, "runs", *extra)
    assert code == 1, err
    assert _errors(err) == [f"error: {watched.relative_to(tmp_path)}: {what} lies inside the run folder "
                            f"{tmp_path / 'runs/y/fold0'}, which this run replaces (--force); copy it out of "
                            f"{tmp_path / 'runs/y/fold0'} first, or train under another --name"], err
    assert _sha(watched) == before and sorted(p.relative_to(run) for p in run.rglob("*")) == everything


def test_force_never_deletes_the_data_it_trains_on(run_cli, synth_root, tmp_path):
    from yolohand.data.convert import convert_dataset

    run = _previous_run(tmp_path / "runs")
    data = run / "yolo"
    convert_dataset(synth_root, data, folds=2, seed=0, imgsz=256, workers=1)
    fold = data / "folds" / "fold0.yaml"
    before = _sha(fold)
    for family in ([], ["--model", "smp:Unet:resnet18"]):
        code, _, err = _train(run_cli, data, tmp_path / "runs", *family)
        assert code == 1 and _errors(err) == [f"error: {data}: --yolo lies inside the run folder {run}, which this run "
                                              "replaces (--force); convert the data again outside it, or train under "
                                              "another --name"], err
    assert _sha(fold) == before


def test_resume_may_read_inputs_inside_its_own_run(tmp_path, converted):
    """Only replacing is refused: --resume keeps the run folder, so a config kept in it is fine."""
    from yolohand.models.shared.runs import check_run_place, run_inputs

    run = _previous_run(tmp_path / "runs")
    (run / "cfg.yaml").write_text("epochs: 2\n")
    assert check_run_place(run, run_inputs(converted, run / "cfg.yaml"), force=False, resume=True) is False


def test_the_run_place_is_checked_before_any_model_is_set_up(converted, tmp_path):
    """A refused run answers at once: neither torch nor ultralytics nor Lightning is imported first."""
    _previous_run(tmp_path / "runs")
    probe = ("import sys\nfrom yolohand.cli import main\n"
             "for model in ('yolo11n-seg.yaml', 'refine:Unet:resnet18', 'smp:Unet:resnet18'):\n"
             "    try:\n"
             f"        main(['train', '--yolo', {str(converted)!r}, '--runs', 'runs', '--name', 'y', '--model', model])\n"
             "    except SystemExit as exc:\n"
             "        assert exc.code == 1\n"
             "print(sorted(m for m in ('torch', 'ultralytics', 'pytorch_lightning') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
    assert proc.stderr.count("run already exists") == 3, proc.stderr


# --------------------------------------------------------------------------- part 6: outputs inside inputs


@pytest.mark.parametrize("where", ["yolo", "raw"])
def test_runs_inside_the_data_are_refused(run_cli, converted, synth_root, tmp_path, where):
    """`--runs datasets/yolo/runs` (or inside the raw dataset the images link to) would write into the inputs."""
    inside = (converted if where == "yolo" else synth_root) / "runs"
    before = sorted(p.name for p in inside.parent.iterdir())
    code, _, err = run_cli(["train", "--yolo", converted, "--runs", inside, "--name", "t", "--device", "cpu"])
    what = "--yolo" if where == "yolo" else "the raw dataset"
    assert code == 1 and _errors(err) == [f"error: {inside / 't' / 'fold0'}: the run folder lies inside {what} "
                                          f"{converted if where == 'yolo' else synth_root}; a run never writes into its "
                                          "inputs: choose --runs outside it"], err
    assert sorted(p.name for p in inside.parent.iterdir()) == before


@pytest.mark.parametrize("name", ["../../somewhere", "/tmp/abs", "a/b", "..", ".", ""])
def test_a_run_name_is_a_name(run_cli, converted, tmp_path, name):
    code, _, err = run_cli(["train", "--yolo", converted, "--runs", tmp_path / "runs", "--name", name, "--device", "cpu"])
    assert code == 1 and len(_errors(err)) == 1 and "a run name is a plain folder name" in err, err
    assert not (tmp_path / "runs").exists() and sorted(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- part 5: Ctrl-C, from the first instruction


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a command started with start_new_session: it and every child)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _kill_session(sid: int) -> list[int]:
    """The survivors of session ``sid`` (given half a second to go), then killed."""
    import signal
    import time

    deadline = time.monotonic() + 0.5
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _session(sid)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


def _interrupt_when(argv: list, marker: bytes, cwd: Path, env: dict | None = None, blocked: bool = False):
    """Start ARGV in its own session with imports reported (``-X importtime`` lines on stderr), send
    SIGINT to the group as soon as stderr shows ``marker``; (exit code, stderr without the import
    lines, survivors). ``blocked``: start with SIGINT blocked and send it at once (it stays pending
    until yolohand's first instruction takes it)."""
    import select
    import signal
    import time

    env = dict(env or ENV, PYTHONPROFILEIMPORTTIME="1")
    pre = (lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})) if blocked else None
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=pre)
    seen, t0 = b"", time.monotonic()
    while not blocked and marker not in seen and time.monotonic() - t0 < 60:
        if select.select([proc.stderr], [], [], 0.05)[0]:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = "\n".join(line for line in (seen + rest).decode(errors="replace").splitlines()
                    if not line.startswith("import time:"))
    return proc.returncode, err, _kill_session(proc.pid)


def _commands() -> list[str]:
    from yolohand.cli import _COMMANDS

    return [c[0] for c in _COMMANDS]


@pytest.mark.parametrize("command", _commands())
def test_ctrl_c_while_a_command_starts_is_interrupted_130(tmp_path, command):
    """SIGINT in the import phase (once yolohand's first line ran; then while Typer loads): one
    `interrupted` line, exit 130, no traceback, nothing written, no process left."""
    for marker in (b" yolohand\n", b"| typer"):  # the package's first lines ran; Typer is loading
        code, err, left = _interrupt_when([sys.executable, "-m", "yolohand", command, "x"], marker, tmp_path)
        assert (code, err.strip().splitlines()[-1:], left) == (130, ["interrupted"], []), err[-3000:]
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["console script", "python -m", "cli.py"])
def test_ctrl_c_from_the_first_instruction(tmp_path, how):
    """A Ctrl-C pending when yolohand's first line runs (SIGINT blocked at exec, sent at once: the
    earliest moment yolohand can see) ends in `interrupted`, 130. (Before that line the interpreter's own
    start-up runs: no program can take a Ctrl-C there.)"""
    script = Path(sys.executable).with_name("yolohand")
    argv = {"console script": [script], "python -m": [sys.executable, "-m", "yolohand"],
            "cli.py": [sys.executable, ROOT / "cli.py"]}[how]
    if how == "console script" and not script.is_file():
        pytest.skip("no console script next to this interpreter")
    code, err, left = _interrupt_when([*argv, "synth", "out", "--train-ids", "50", "--size", "2048"], b"", tmp_path,
                                      blocked=True)
    assert (code, err.strip().splitlines(), left) == (130, ["interrupted"], []), err[-3000:]
    assert list(tmp_path.iterdir()) == []


def test_a_late_ctrl_c_cannot_print_a_traceback(run_cli, tmp_path):
    """After the command's boundary the program notes a Ctrl-C instead of raising it (the interpreter's
    shutdown would print a traceback); an in-process caller gets its own handler back."""
    import signal

    from yolohand import interrupts

    before = signal.getsignal(signal.SIGINT)
    code, _, _ = run_cli(["gt", "--help"])
    assert code == 0 and signal.getsignal(signal.SIGINT) is before and not interrupts.seen()


def _swallow_a_ctrl_c() -> None:
    """What the campaign saw in YOLO training: a Ctrl-C raised inside a weakref callback, which Python
    swallows (`Exception ignored in: ... WeakKeyDictionary ... KeyboardInterrupt`)."""
    import signal
    import weakref

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGINT))  # noqa: F841
    del thing  # the callback runs, the handler raises inside it, Python swallows it


def test_a_swallowed_ctrl_c_is_noted_and_raised_at_the_next_check(capfd):
    from yolohand import interrupts

    interrupts.arm()
    try:
        _swallow_a_ctrl_c()
        assert interrupts.seen()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    finally:
        interrupts.settle(program=False)
    assert "KeyboardInterrupt" not in capfd.readouterr().err and not interrupts.seen()


@pytest.mark.slow
def test_lightning_checks_for_a_swallowed_ctrl_c_after_each_batch():
    from yolohand import interrupts
    from yolohand.models.shared.engine import Interrupted

    interrupts.arm()
    try:
        Interrupted().on_train_batch_end(None, None, None, None, 0)  # nothing noted: carries on
        _swallow_a_ctrl_c()
        for hook in (Interrupted().on_train_batch_end, Interrupted().on_validation_batch_end):
            with pytest.raises(KeyboardInterrupt):
                hook(None, None, None, None, 0)
    finally:
        interrupts.settle(program=False)


_SWALLOWING_TRAIN = """
import sys
from yolohand.models.yolo.offline import setup_offline
setup_offline()
from ultralytics.utils import callbacks
sys.path.insert(0, sys.argv.pop(1))
from test_safety28 import _swallow_a_ctrl_c
calls = []
def swallow(trainer):
    calls.append(1)
    if len(calls) == 2:
        _swallow_a_ctrl_c()
default = callbacks.get_default_callbacks
def patched():
    cbs = default()
    cbs["on_train_batch_end"].insert(0, swallow)
    return cbs
callbacks.get_default_callbacks = patched
from yolohand.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_yolo_training_stops_on_a_ctrl_c_a_library_swallowed(converted, tmp_path):
    """5 of 14 Ctrl-Cs during YOLO training were swallowed and training ran on to exit 0: now the
    batch after it stops the run, 130, `interrupted`, and no `Exception ignored` report."""
    from yolohand.defaults import DEMO_WEIGHTS

    (tmp_path / "run.yaml").write_text("plots: false\n")
    args = ["train", "--yolo", converted, "--runs", tmp_path / "runs", "--name", "t", "--model", DEMO_WEIGHTS,
            "--config", tmp_path / "run.yaml", "--imgsz", "64", "--epochs", "3", "--batch", "1", "--device", "cpu",
            "--threads", "1"]
    proc = subprocess.run([sys.executable, "-c", _SWALLOWING_TRAIN, str(Path(__file__).parent), *map(str, args)],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith("interrupted") and "Exception ignored" not in proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    results = tmp_path / "runs" / "t" / "fold0" / "results.csv"
    assert not results.is_file() or len(results.read_text().splitlines()) <= 1  # stopped inside epoch 1


def test_pool_workers_never_outlive_their_command(tmp_path):
    """Workers busy in a task when their command dies (even killed) end with it, instead of sleeping
    forever re-parented to init (the campaign found two, 1 h 47 min after `timeout -s INT 0.8 ... convert`)."""
    script = ("import os, signal, time\n"
              "from yolohand.data.workers import start_pool\n"
              "pool = start_pool(2)\n"
              "pool.map(abs, range(4))\n"
              "for _ in range(2):\n"
              "    pool.apply_async(time.sleep, (60,))\n"
              "time.sleep(0.5)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=ENV, start_new_session=True)
    assert proc.wait(timeout=60) == -9
    assert _kill_session(proc.pid) == []


def test_ctrl_c_during_convert_leaves_no_process(tmp_path):
    """`timeout -s INT` at several moments of a convert with workers: exit 130, nothing left running."""
    import signal
    import time

    from yolohand.data.synth import generate_dataset

    one = tmp_path / "one"
    generate_dataset(one, train_ids=1, test_ids=0, size=1024, workers=1, progress=False)
    png = next((one / "train" / "DCM").rglob("*.png"))
    js = next((one / "train" / "outputs_json").rglob("*.json"))
    root = tmp_path / "root"
    for i in range(60):  # many images, cheaply: links to one image
        for sub, src in (("DCM", png), ("outputs_json", js)):
            link = root / "train" / sub / f"ID{i:03d}" / f"image{i}{src.suffix}"
            link.parent.mkdir(parents=True)
            link.symlink_to(src)
    for delay in (0.3, 0.8, 1.2, 1.6, 2.4):
        proc = subprocess.Popen([sys.executable, "-m", "yolohand", "convert", "--root", root, "--out", tmp_path / "y",
                                 "--folds", "2", "--imgsz", "512", "--workers", "2"], cwd=tmp_path, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        left = _kill_session(proc.pid)
        assert left == [], (delay, left)
        if proc.returncode == 130:
            assert err.decode().rstrip().endswith("interrupted") and b"Traceback" not in err, err[-2000:]
        else:  # finished before the signal
            assert proc.returncode == 0, err[-2000:]
            shutil.rmtree(tmp_path / "y")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "root"]


def _an_image(root: Path) -> Path:
    return sorted((root / "train" / "DCM").rglob("*.png"))[0]


def test_show_never_writes_into_the_dataset(run_cli, synth_root, tmp_path, monkeypatch):
    """`show --out` inside --root (or inside the dataset the image belongs to) is refused; so is the
    default output (the working directory) when show runs from inside a dataset folder."""
    root = tmp_path / "hb"
    shutil.copytree(synth_root, root)
    image = _an_image(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for argv in (["--out", root / "o.png"], ["--root", root, "--out", root / "train" / "o.png"]):
        code, _, err = run_cli(["show", image, "--gt", *argv])
        assert code == 1 and _errors(err) == [f"error: {argv[-1]}: --out lies inside the input {root}; choose an output "
                                              "outside the inputs"], err
    for where, argv in ((root / "train", [image]), (root, [image.name, "--root", "."]), (image.parent, [image])):
        monkeypatch.chdir(where)
        code, _, err = run_cli(["show", *argv, "--gt"])
        assert code == 1 and _errors(err) == [f"error: {where / (image.stem + '_overlay.png')}: the default output (the "
                                              f"working directory) lies inside the dataset {root}; pass --out with a "
                                              "place outside it"], err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    monkeypatch.chdir(tmp_path)  # outside the dataset: the default works
    code, out, err = run_cli(["show", image, "--gt"])
    assert code == 0 and (tmp_path / f"{image.stem}_overlay.png").is_file(), err


# --------------------------------------------------------------------------- part 9: the network at run time


_NO_NETWORK = """
import importlib, json, pkgutil, socket, sys
attempts = []
def blocked(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network blocked by the test")
for name in ("connect", "connect_ex"):
    setattr(socket.socket, name, blocked)
socket.create_connection = socket.getaddrinfo = blocked
import yolohand.cli
import yolohand.models
names = ["yolohand.cli." + m.name for m in pkgutil.iter_modules(yolohand.cli.__path__)]
for family in ("yolo", "smp", "refine", "shared"):
    package = importlib.import_module("yolohand.models." + family)
    names += [f"yolohand.models.{family}." + m.name for m in pkgutil.iter_modules(package.__path__)]
for name in [*names, "albumentations", "ultralytics.data.augment", "segmentation_models_pytorch"]:
    importlib.import_module(name)
print(json.dumps({"attempts": attempts, "modules": len(names)}))
"""


def _imports_offline(tmp_path: Path, script: str) -> dict:
    """Run ``script`` (which prints a JSON report last) with none of the offline variables set beforehand."""
    import json

    env = {k: v for k, v in ENV.items() if k not in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE", "YOLO_OFFLINE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "version info" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first", ["yolohand.models", "yolohand.cli"])
def test_the_offline_variables_are_set_before_any_network_library_loads(tmp_path, first):
    """The cheap half of the two tests below: importing the model families (or starting the command)
    sets the variables that keep albumentations, ultralytics and the Hugging Face hub offline."""
    from yolohand.offline import DEFAULTED, FORCED

    script = ("import json, os, sys\nsys.argv[0] = 'yolohand' if %r == 'yolohand.cli' else sys.argv[0]\n"
              "import %s\n" % (first, first) +
              "print(json.dumps({k: os.environ.get(k) for k in %r}))\n" % [*FORCED, *DEFAULTED])
    assert _imports_offline(tmp_path, script) == {**FORCED, **DEFAULTED}


@pytest.mark.slow
def test_albumentations_does_not_check_for_a_release(tmp_path):
    """albumentations' release check on import printed `warning: Error fetching version info <urlopen
    error ...>` on every smp run with the network cut: off once yolohand.models is loaded."""
    script = _NO_NETWORK.split("import yolohand.cli")[0] + (
        "import yolohand.models\nimport albumentations\nprint(json.dumps({'attempts': attempts}))\n")
    assert _imports_offline(tmp_path, script) == {"attempts": []}


@pytest.mark.slow
def test_no_module_of_any_command_reaches_the_network(tmp_path):
    """Every command's modules and the libraries under them, imported with sockets blocked: nothing
    tries to connect."""
    report = _imports_offline(tmp_path, _NO_NETWORK)
    assert report["attempts"] == [] and report["modules"] > 30, report


@pytest.mark.slow
def test_yolo_training_does_not_warn_about_gray_images(converted, tmp_path):
    """ultralytics' albumentations ToGray meets the one-channel images (`The image is already gray.`,
    several times a run): silenced once the trainer exists."""
    import warnings

    import numpy as np

    from yolohand.defaults import DEMO_WEIGHTS
    from yolohand.models.yolo.train import plan_train
    from yolohand.models.yolo.trainer import DiceSegmentationTrainer

    plan = plan_train(0, yolo=converted, runs=tmp_path / "runs", model=DEMO_WEIGHTS, imgsz=64, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DiceSegmentationTrainer(overrides=dict(plan.args))
        import albumentations as A

        A.ToGray(p=1.0)(image=np.zeros((8, 8, 1), np.uint8))
    assert not [w for w in caught if "already gray" in str(w.message)]


# --------------------------------------------------------------------------- part 10: absurd requests, up front


def test_synth_refuses_absurd_counts_before_planning(run_cli, tmp_path):
    """`synth --train-ids 100000000` planned every job in memory (13 GB before the first file)."""
    code, _, err = run_cli(["synth", tmp_path / "s", "--train-ids", "100000000"])
    assert code == 1 and _errors(err) == ["error: --train-ids 100000000 --test-ids 5: at most 100000 IDs in all (two "
                                          "images each); write several datasets (--seed) for more"], err
    assert list(tmp_path.iterdir()) == []


def test_device_mps_is_refused_where_there_is_none(run_cli, converted, tmp_path):
    """`train --device mps` trained on the CPU without a word where no Apple GPU exists."""
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    for argv in (["train", "--yolo", converted, "--runs", tmp_path / "runs"], ["predict", "--source", tmp_path]):
        code, _, err = run_cli([*argv, "--device", "mps"])
        assert code == 2 and "no Apple MPS device is available here; use --device cpu" in err, err
    assert list(tmp_path.iterdir()) == []


_SWALLOWING_IMPORT = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from test_safety28 import _swallow_a_ctrl_c
import yolohand.models.smp.importer as importer
reference = importer.reference_probs
def swallowing(*args, **kwargs):
    _swallow_a_ctrl_c()  # a Ctrl-C while the models run, swallowed by a library
    return reference(*args, **kwargs)
importer.reference_probs = swallowing
from yolohand.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_an_interrupted_import_writes_no_checkpoint(tmp_path):
    """`yolohand import` interrupted early left its output .pt behind: a Ctrl-C, even one a library
    swallowed, means nothing is written (and after the boundary a late one prints no traceback)."""
    import segmentation_models_pytorch as smp
    import torch

    torch.save(smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=29).state_dict(), tmp_path / "sd.pth")
    args = ["import", "sd.pth", "out.pt", "--imgsz", "64", "--model", "smp:Unet:resnet18"]
    proc = subprocess.run([sys.executable, "-c", _SWALLOWING_IMPORT, str(Path(__file__).parent), *args], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130 and proc.stderr.rstrip().endswith("interrupted"), proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.pth"]


_FINISHED_THEN_PINGED = """
import os, subprocess, sys
sys.argv = ["yolohand", "--version"]
from yolohand.cli import main
try:
    main()
except SystemExit as stop:
    assert not stop.code, stop.code
# the command is done; from here to the process's very end, Ctrl-C after Ctrl-C (the shutdown too)
pinger = ("import os, signal, time\\n"
          "parent = os.getppid()\\n"
          "while os.getppid() == parent:  # until the command is gone (this one is re-parented)\\n"
          "    os.kill(parent, signal.SIGINT)\\n"
          "    time.sleep(0.0002)\\n")
subprocess.Popen([sys.executable, "-c", pinger], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
import time
time.sleep(0.3)
"""


def test_ctrl_c_after_the_command_finished_is_ignored(tmp_path):
    """A Ctrl-C after the command's outcome is decided (even inside the interpreter's shutdown, where
    Python puts a noted handler back to SIG_DFL) neither kills it by the signal nor prints a traceback:
    the campaign's `timeout -s INT` at the end of a finished convert gave status -2."""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", _FINISHED_THEN_PINGED], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
