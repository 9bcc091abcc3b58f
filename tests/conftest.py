"""Shared fixtures: tiny synthetic datasets in the competition layout (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset root: 3 train IDs + 1 test ID (8 images) at 256x256, seed 0.

    ``<root>/train/DCM/IDnnn/*.png``, ``<root>/train/outputs_json/...``, and the same for test
    (test ground truth included). Read-only: copy it before modifying anything.
    """
    from yolohand.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "handbone"
    generate_dataset(root, train_ids=3, test_ids=1, size=256, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def synth_root_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``synth_root`` at 512x512 (2 train IDs + 1 test ID, 6 images, seed 1)."""
    from yolohand.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth512") / "handbone"
    generate_dataset(root, train_ids=2, test_ids=1, size=512, seed=1, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def synth_root_flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth_root`` in the ``flat`` style (the earliest look): for what is about that style, and for
    fast training mechanics checks that need bones a one-epoch model finds at 256 px."""
    from yolohand.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synthflat") / "handbone"
    generate_dataset(root, train_ids=3, test_ids=1, size=256, seed=0, workers=1, progress=False, style="flat")
    return root


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture):
    """``run_cli([...])`` -> (exit code, stdout, stderr) of ``yolohand.cli.main`` (arguments str()-ed)."""
    from yolohand.cli import main

    def run(argv: list) -> tuple[int, str, str]:
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
