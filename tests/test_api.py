"""The top-level public API: lazy, light, and each name the object of its home module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import yolohand

HEAVY = ("torch", "ultralytics", "segmentation_models_pytorch", "timm", "streamlit", "matplotlib")


def _loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which heavy modules did it load?"""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_yolohand_is_light():
    loaded = _loaded_after("import yolohand")
    assert not any(loaded.values()), loaded
    loaded = _loaded_after("import sys, yolohand; assert 'numpy' not in sys.modules and 'cv2' not in sys.modules")
    assert not any(loaded.values()), loaded


def test_core_and_results_names_stay_torch_free():
    code = ("import yolohand\n"
            "for n in ('encode', 'decode', 'iter_submission', 'write_submission', 'evaluate', 'hard_vote', "
            "'soft_vote', 'dice_score', 'find_split'):\n    getattr(yolohand, n)\n")
    loaded = _loaded_after(code)
    assert not loaded["torch"] and not loaded["ultralytics"], loaded


def test_every_public_name_is_its_modules_object():
    for name, module in yolohand._EXPORTS.items():
        assert getattr(yolohand, name) is getattr(importlib.import_module(module), name), name
    assert set(yolohand.__all__) == {"__version__", *yolohand._EXPORTS}
    assert set(yolohand._EXPORTS) <= set(dir(yolohand))


def test_encode_decode_round_trip_through_the_top_level():
    import numpy as np

    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[0, 1] = mask[1, 3] = mask[2, 0] = True
    assert yolohand.encode(mask) == "1 2 8 2"  # DESIGN.md's example
    assert np.array_equal(yolohand.decode("1 2 8 2", (3, 4)), mask)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        yolohand.nope  # noqa: B018
