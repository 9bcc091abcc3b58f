"""The shipped checkpoints' recipe (issue 26): how a sitting finds where the training stands."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from yolohand.core.classes import CLASSES, REPORT_GROUPS, group_means
from yolohand.recipes import shipped


def _run(root: Path, name: str, dice: list[float], epoch: int | None) -> Path:
    run = root / "runs" / name / "fold0"
    (run / "weights").mkdir(parents=True)
    rows = ["epoch, metrics/dice(M)"] + [f"{i + 1}, {d}" for i, d in enumerate(dice)]
    (run / "results.csv").write_text("\n".join(rows) + "\n")
    if epoch is not None:
        torch.save({"epoch": epoch}, run / "weights" / "last.pt")
    return run


def test_best_dice_reads_the_best_epoch_of_results(tmp_path: Path) -> None:
    run = _run(tmp_path, "yolo", [0.8, 0.91, 0.9], None)
    assert shipped.best_dice(run, shipped.YOLO_DICE) == (0.91, 2)
    assert shipped.best_dice(tmp_path / "nowhere", shipped.YOLO_DICE) == (-1.0, -1)


def test_stages_and_which_one_is_best(tmp_path: Path) -> None:
    assert shipped._stages(tmp_path, "yolo") == []
    assert shipped.train_yolo_best(tmp_path) == shipped.DEMO_WEIGHTS  # no stage yet: the shipped one
    first = _run(tmp_path, "yolo", [0.90, 0.92], -1)
    second = _run(tmp_path, "yolo-2", [0.91, 0.93], 4)
    assert shipped._stages(tmp_path, "yolo") == [first, second]
    assert shipped.train_yolo_best(tmp_path) == second / "weights" / "best.pt"


def test_a_run_that_spent_its_budget_is_finished_one_stopped_midway_is_not(tmp_path: Path) -> None:
    # ultralytics strips last.pt at the end of training (epoch -1); a run stopped by the end of a
    # sitting keeps its epoch and is resumed, a finished one is continued by a next stage.
    assert shipped._finished(_run(tmp_path, "yolo", [0.9], -1))
    assert not shipped._finished(_run(tmp_path, "yolo-2", [0.9], 7))
    assert shipped._finished(_run(tmp_path, "yolo-3", [0.9], None))  # never saved: nothing to resume


def test_report_groups_cover_every_class_once() -> None:
    names = [c for group in REPORT_GROUPS.values() for c in group]
    assert sorted(names) == sorted(CLASSES) and len(names) == len(set(names)) == 29
    per_class = {c: float(i) for i, c in enumerate(CLASSES)}
    means = group_means(per_class)
    assert means["radius/ulna"] == pytest.approx((27 + 28) / 2)
    assert means["fingertips"] == pytest.approx((0 + 3 + 7 + 11 + 15) / 5)


def test_smp_stages_resume_with_their_own_length_and_continue_from_the_best(tmp_path: Path, monkeypatch) -> None:
    """A sitting of `smp --epochs N`: no stage -> smp256 from the shipped model; a stage stopped
    midway -> resumed with the length it was started with (its config's `# epochs:` line), whatever
    N says; a finished stage -> the next stage, from the best checkpoint of all stages so far."""
    calls = []

    def fake(work, name, spec, config_text, imgsz, epochs, log, yolo=None):
        calls.append((name, config_text.rsplit("pretrained: ", 1)[1].strip(), imgsz, epochs))
        (work / f"{name}.yaml").write_text(f"# epochs: {epochs}\n" + config_text)
        if not (work / "runs" / name).exists():
            _run(work, name, [], None)
        return work / "runs" / name / "fold0" / "weights" / "best.pt"

    monkeypatch.setattr(shipped, "_train_lightning", fake)
    shipped.train_smp(tmp_path, 6, [], imgsz=256)
    assert calls[-1] == ("smp256", str(shipped.DEMO_SMP), 256, 6)
    shutil.rmtree(tmp_path / "runs" / "smp256")
    _run(tmp_path, "smp256", [0.80, 0.85, 0.84], 2)  # stopped after 3 of its 6 epochs
    shipped.train_smp(tmp_path, 20, [], imgsz=256)
    assert calls[-1][0] == "smp256" and calls[-1][3] == 6
    with open(tmp_path / "runs" / "smp256" / "fold0" / "results.csv", "a") as fh:
        fh.write("4, 0.86\n5, 0.88\n6, 0.87\n")
    assert shipped.train_smp(tmp_path, 20, [], imgsz=256) == tmp_path / "runs" / "smp256" / "fold0" / "weights" / "best.pt"
    assert calls[-1] == ("smp256-2", str(tmp_path / "runs" / "smp256" / "fold0" / "weights" / "best.pt"), 256, 20)


def test_refiner_priors_and_run_follow_the_best_detector_stage(tmp_path: Path, monkeypatch) -> None:
    """The refiner learns its own detector's errors: behind stage `yolo` its priors and run keep
    their first names; behind a better `yolo-2` both get names of their own (never stale priors)."""
    steps, runs = [], []
    monkeypatch.setattr(shipped, "run_step", lambda args, log: steps.append(args))
    monkeypatch.setattr(shipped, "_has", lambda p: p.name in ("phantom_refine", "yolo_refine"))
    monkeypatch.setattr(shipped, "_train_lightning",
                        lambda work, name, spec, text, imgsz, epochs, log, yolo=None: runs.append((name, text)))
    _run(tmp_path, "yolo", [0.90, 0.92], -1)
    shipped.train_refiner(tmp_path, 6, 0.5, [])
    assert steps[-1][steps[-1].index("--save-probs") + 1] == str(tmp_path / "priors_refine")
    assert runs[-1][0] == "refine-mix50" and f"priors: {tmp_path / 'priors_refine'}\n" in runs[-1][1]
    second = _run(tmp_path, "yolo-2", [0.91, 0.93], -1)
    shipped.train_refiner(tmp_path, 6, 0.5, [])
    assert steps[-1][steps[-1].index("--weights") + 1] == str(second / "weights" / "best.pt")
    assert steps[-1][steps[-1].index("--save-probs") + 1] == str(tmp_path / "priors_refine-yolo-2")
    assert runs[-1][0] == "refine-mix50-yolo-2" and f"detector: {second / 'weights' / 'best.pt'}\n" in runs[-1][1]
