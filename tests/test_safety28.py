"""Issue 28, run as a user would: `train --force` never destroys its own inputs, outputs never lie inside
inputs, Ctrl-C from the first instruction exits 130 and leaves no process behind, nothing reaches the
network, and absurd requests are refused up front.

In-process tests call the CLI's boundary (:func:`yolohand.cli.main`, the ``run_cli`` fixture); the
Ctrl-C and import-phase tests start ``python -m yolohand`` / the console script in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
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
