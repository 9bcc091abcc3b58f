"""yolohand: an Ultralytics YOLO toolkit for 29-bone hand X-ray segmentation.

The public API, one name per job (each also lives in its subpackage, listed in ``_EXPORTS``)::

    import yolohand
    yolohand.generate_dataset("datasets/handbone", train_ids=20, test_ids=5, size=1024)
    yolohand.convert_dataset("datasets/handbone", "datasets/yolo", folds=2, imgsz=512)
    result = yolohand.train_fold(0, model="yolo11n-seg.yaml", imgsz=512, epochs=3)
    yolohand.predict_to_submission("fold0.csv", weights=[result.best])
    print(yolohand.format_table(yolohand.evaluate("fold0.csv", "datasets/handbone", split="test")))
    yolohand.hard_vote(["a.csv", "b.csv", "c.csv"], "vote.csv")
    mask = yolohand.decode(rle_string, (2048, 2048)); text = yolohand.encode(mask)

Names are imported on first use (a module-level ``__getattr__``), so ``import yolohand`` loads
nothing heavy: no numpy-heavy modules, no torch, no ultralytics. The numeric core (``core``,
``results``) imports neither torch nor ultralytics; only ``train_fold``/``predict_to_submission``
reach a model family, and only the ``yolo`` family imports ultralytics.
"""

from __future__ import annotations

# First, before any other import: as the `yolohand` command, a Ctrl-C from here on ends in
# `interrupted`, exit 130 (yolohand/interrupts.py); a library user's handler is left alone.
from yolohand import interrupts as _interrupts

_interrupts.early()
if _interrupts.is_command():  # and no library under it reaches the network (yolohand/offline.py)
    from yolohand.offline import stay_offline as _stay_offline

    _stay_offline()

import importlib  # noqa: E402
from typing import Any  # noqa: E402

__version__ = "0.1.0"

#: public name -> the module that defines it (imported lazily by __getattr__).
_EXPORTS: dict[str, str] = {
    # classes and errors
    "CLASSES": "yolohand.core.classes",
    "NUM_CLASSES": "yolohand.core.classes",
    "YolohandError": "yolohand.errors",
    # run-length encoding and the metric (numpy only)
    "encode": "yolohand.core.rle",
    "decode": "yolohand.core.rle",
    "mask_to_runs": "yolohand.core.rle",
    "runs_to_mask": "yolohand.core.rle",
    "dice_score": "yolohand.core.metrics",
    # submission CSVs and probability maps
    "iter_submission": "yolohand.core.submission",
    "read_image_names": "yolohand.core.submission",
    "write_submission": "yolohand.core.submission",
    "SubmissionWriter": "yolohand.core.submission",
    "load_probmap": "yolohand.core.probmaps",
    "save_probmap": "yolohand.core.probmaps",
    # data
    "find_split": "yolohand.data.layout",
    "read_annotation": "yolohand.data.layout",
    "read_image": "yolohand.data.layout",
    "generate_dataset": "yolohand.data.synth",
    "convert_dataset": "yolohand.data.convert",
    # results: scoring and fusing any model's outputs
    "evaluate": "yolohand.results.evaluate",
    "format_table": "yolohand.results.evaluate",
    "hard_vote": "yolohand.results.ensemble",
    "soft_vote": "yolohand.results.ensemble",
    "fit_thresholds": "yolohand.results.thresholds",
    "load_thresholds": "yolohand.results.thresholds",
    "load_fusion": "yolohand.results.fusion",
    "fuse": "yolohand.results.fusion",
    "fit_sources": "yolohand.results.fusion",
    "pseudo_labels": "yolohand.data.pseudo",
    "compare_submissions": "yolohand.viz.compare",
    # models (torch; ultralytics for the yolo family)
    "train_fold": "yolohand.models.train",
    "train_folds": "yolohand.models.train",
    "predict_to_submission": "yolohand.models.predict",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'yolohand' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
