"""Train a YOLO segmentation model on one fold (or every fold) of a converted dataset.

``train_fold(0)`` trains on ``<yolo>/folds/fold0.yaml`` (written by ``yolohand convert``) and
writes ``<runs>/<name>/fold0/`` (``weights/best.pt``, ``weights/last.pt``, ``results.csv``,
``args.yaml``, plots). ``best.pt`` is the epoch with the best validation Dice
(:mod:`yolohand.models.yolo.val`), logged per epoch in the ``metrics/dice(M)`` column of results.csv.

Arguments, lowest to highest precedence (:func:`merge_train_args`):

1. :data:`DATA_DEFAULTS`, chosen for this data (below);
2. ``--config run.yaml``: any ultralytics train argument (``lr0: 0.005``, ``time: 1.5``, ...);
3. explicit flags (``--imgsz``, ``--epochs``, ...).

Run layout arguments (``data``, ``project``, ``name``, ``exist_ok``, ``resume``, ``task``,
``mode``, ``save_dir``) are set by yolohand from ``--fold``/``--yolo``/``--runs``/``--name``/
``--resume`` and refused in the config file.

Choices for hand X-rays (:data:`DATA_DEFAULTS`):

* ``overlap_mask=False``: one target mask per instance, so where two bones overlap in
  projection (Trapezium/Trapezoid, Triquetrum/Pisiform) each keeps its full mask. ultralytics'
  default ``True`` merges the instances into one index map in which the smaller bone wins the
  shared pixels: the bigger bone is trained to leave a hole.
* ``hsv_h=0, hsv_s=0``: the images are grey, hue/saturation jitter is meaningless.
  ``hsv_v=0.3``: a mild brightness jitter for exposure differences.
* ``fliplr=0.5`` (kept): a mirrored right hand is an anatomically valid left hand and the data
  has both hands (``_L``/``_R`` pairs per patient). Class identities do not change under the flip:
  the mirrored right thumb metacarpal is the left thumb metacarpal (``finger-3`` either way);
  bone names carry no side. ``flipud=0``: the forearm is always at the bottom.
* ``mosaic=0``: a bone's class is told by its place in the whole hand (finger-5 and finger-9
  look alike: the index and middle proximal phalanges), while mosaic tiles show parts of four
  hands; and the model is used on whole single hands. (A pilot run saw validation Dice jump
  when mosaic closed, but that run also suffered the BatchNorm lag fixed in
  :func:`yolohand.models.yolo.trainer.recalibrate_batchnorm`, so it does not isolate mosaic's effect.)
  Re-enable with ``mosaic: 1.0`` in ``--config``; ``close_mosaic=10`` then turns it off for the
  last 10 epochs (for all of a run of <= 10 epochs).
* ``pretrained=False`` when the model is a ``*.yaml`` (built from scratch; no weights are
  looked up); a local ``.pt`` is fine-tuned from its own weights.
* ``amp``: always passed explicitly: ``False`` on CPU, ``True`` on a GPU (ultralytics' AMP
  check, which downloads a checkpoint, is replaced by an offline one, see trainer.py).

Grayscale: ultralytics reads images the way the data YAML's ``channels`` says (``channels: 1`` ->
``cv2.IMREAD_GRAYSCALE`` and a 1-channel first conv), and stores ``channels`` in the checkpoint,
so prediction with that checkpoint reads images the same way. A ``.pt`` with another channel count
(an RGB COCO checkpoint, say) can still be fine-tuned: ultralytics builds the model for the data's
channels and fills the first convolution from the checkpoint's filters (summed for grayscale).

``imgsz``: ``--imgsz``, else the ``imgsz`` of ``--config``, else the fold YAML's ``cache_imgsz``
(``yolohand convert --imgsz N`` caches images resized to N and ultralytics loads that cache
whenever it exists), else :data:`DEFAULT_IMGSZ`. A larger imgsz than the cache gets a warning.

CPU: ultralytics sets torch to ``min(8, cores - 1)`` threads and ``workers=0``; yolohand resets
the threads to every core, or to ``threads=``/``--threads`` (logged as ``yolohand: torch uses N
CPU thread(s)``). On a machine whose cores are busy with other work fewer threads can be much
faster: on the shared 2-core development box a yolo11n-seg step ran 7x faster with 1 thread
than with 2. Multi-GPU: ``device="0,1"`` launches ultralytics' DDP workers, which re-import
:class:`yolohand.models.yolo.trainer.DiceSegmentationTrainer` (it needs the ``cloudpickle`` package).

Offline: :func:`yolohand.models.yolo.offline.setup_offline` runs before ultralytics is imported; weights are
never downloaded (a ``.pt`` that is not on disk is a :class:`YolohandError`).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolohand.defaults import DICE_KEY
from yolohand.errors import YolohandError
from yolohand.models.shared.runs import TrainResult, check_run_place, fold_yaml, run_folder, run_inputs

__all__ = [
    "DATA_DEFAULTS", "DEFAULT_IMGSZ", "DEFAULT_MODEL", "DICE_KEY", "TrainPlan", "plan_train", "run_plan", "train_fold",
    "merge_train_args", "read_run_config", "parse_device", "resolve_model", "best_from_results",
]

DEFAULT_MODEL = "yolo11n-seg.yaml"
DEFAULT_NAME = "train"

#: ultralytics train arguments yolohand sets differently from ultralytics' defaults (module docstring).
DATA_DEFAULTS: dict[str, Any] = {
    "overlap_mask": False,
    "hsv_h": 0.0,
    "hsv_s": 0.0,
    "hsv_v": 0.3,
    "fliplr": 0.5,
    "flipud": 0.0,
    "mosaic": 0.0,
    "close_mosaic": 10,
}

#: Network input size when neither --imgsz, --config nor the data YAML's ``cache_imgsz`` says.
DEFAULT_IMGSZ = 1024

#: Arguments set by yolohand itself (from --fold/--yolo/--runs/--name/--resume); refused in --config.
RESERVED_KEYS: frozenset[str] = frozenset({"data", "project", "exist_ok", "resume", "task", "mode", "save_dir"})


# ----------------------------------------------------------------------------- arguments


def ultralytics_train_defaults() -> dict[str, Any]:
    """ultralytics' ``cfg/default.yaml``: every train argument and its default (read as YAML;
    ultralytics is not imported)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise YolohandError("ultralytics is not installed")
    for base in spec.submodule_search_locations:
        path = Path(base) / "cfg" / "default.yaml"
        if path.is_file():
            return dict(yaml.safe_load(path.read_text()))
    raise YolohandError("ultralytics/cfg/default.yaml not found: broken ultralytics install")


def ultralytics_train_keys() -> frozenset[str]:
    """Every key of ultralytics' ``cfg/default.yaml``."""
    return frozenset(ultralytics_train_defaults())


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``--config`` YAML of ultralytics train arguments; YolohandError naming the file and key."""
    from yolohand.config import check_like_defaults, did_you_mean, read_yaml

    path = Path(path)
    if not path.is_file():
        raise YolohandError(f"{path}: config file not found")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise YolohandError(f"{path}: expected a mapping of ultralytics train arguments (key: value)")
    defaults = ultralytics_train_defaults()
    for key in data:
        if key in RESERVED_KEYS:
            raise YolohandError(f"{path}: '{key}' is set by yolohand (use --fold/--yolo/--runs/--name/--resume)")
        if key not in defaults:
            raise YolohandError(f"{path}: '{key}' is not an ultralytics train argument{did_you_mean(key, defaults)}")
    check_like_defaults(str(path), data, defaults)  # lr0: abc fails here, not inside ultralytics
    return data


def merge_train_args(config: Mapping[str, Any] | None = None, flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`DATA_DEFAULTS` < ``config`` (from --config) < ``flags`` (CLI options; ``None`` = not given)."""
    merged = dict(DATA_DEFAULTS)
    merged.update(config or {})
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    return merged


def parse_device(device: str | int | None) -> str:
    """Normalise ``--device``: ``None`` -> ``"0"`` when CUDA is available else ``"cpu"``; ``"cuda:0"`` -> ``"0"``."""
    if device is None or str(device).strip() == "":
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    text = str(device).strip().lower().replace(" ", "")
    text = re.sub(r"^cuda:?", "", text) or "0"
    if text.startswith("cpu:"):
        raise YolohandError(f"--device {device!r}: ultralytics trains in one CPU process; cpu:N (N CPU processes) "
                            "is for the smp and refine families")
    if text != "cpu" and not re.fullmatch(r"\d+(,\d+)*", text) and text != "mps":
        raise YolohandError(f"--device {device!r}: expected cpu, mps, a GPU index (0) or a list (0,1)")
    return text


def resolve_model(model: str | os.PathLike) -> str:
    """Return the model argument for ultralytics, checked locally (never a download).

    * an existing ``.pt`` -> its absolute path; a missing one -> YolohandError;
    * an existing ``.yaml``/``.yml`` file -> its absolute path;
    * a bundled ultralytics model yaml (``yolo11n-seg.yaml``, ``yolo26s-seg.yaml``, ...) -> the name,
      after checking ultralytics knows it and that it is a segmentation model.
    """
    text = str(model)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".pt":
        if not path.is_file():
            raise YolohandError(
                f"{text}: checkpoint not found (yolohand never downloads weights: give the path of a local .pt, "
                f"or a model yaml such as {DEFAULT_MODEL} to train from scratch)"
            )
        return str(path.resolve())
    if suffix not in {".yaml", ".yml"}:
        raise YolohandError(f"--model {text}: expected an ultralytics model yaml (e.g. {DEFAULT_MODEL}) or a local .pt")
    if path.is_file():
        resolved = str(path.resolve())
    else:
        resolved = text
    from yolohand.models.yolo.offline import setup_offline

    setup_offline()
    from ultralytics.nn.tasks import yaml_model_load

    try:
        cfg = yaml_model_load(resolved)
    except Exception as exc:  # FileNotFoundError or YAML errors from ultralytics
        raise YolohandError(f"--model {text}: not a file and not an ultralytics model yaml ({exc})") from None
    head = cfg.get("head") or []
    last = str(head[-1][2]) if head and len(head[-1]) > 2 else ""
    if "Segment" not in last:
        raise YolohandError(f"--model {text}: not a segmentation model (its head is {last or 'unknown'}); use a *-seg.yaml")
    return resolved


def _data_channels(data_yaml: Path) -> int:
    from yolohand.data.convert import read_fold_yaml

    channels = read_fold_yaml(data_yaml).get("channels", 3)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise YolohandError(f"{data_yaml}: channels: {channels!r}, expected 1 or 3 (re-run `yolohand convert`)")
    return int(channels)


def _load_checkpoint(pt: Path) -> Any:
    """``torch.load`` of an ultralytics ``.pt`` on the CPU; YolohandError naming the file if unreadable."""
    import torch

    from yolohand.models.yolo.offline import setup_offline

    setup_offline()
    try:
        return torch.load(pt, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise YolohandError(f"{pt}: not a readable PyTorch checkpoint ({exc})") from None


def _checkpoint_channels(pt: Path) -> int | None:
    """Input channels of a checkpoint's first conv (None when it cannot be told)."""
    ckpt = _load_checkpoint(pt)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if model is None:
        raise YolohandError(f"{pt}: no model in this checkpoint (not an ultralytics .pt?)")
    if getattr(model, "task", None) not in (None, "segment"):
        raise YolohandError(f"{pt}: a '{model.task}' model; yolohand trains segmentation models")
    for p in model.parameters():
        if p.ndim == 4:
            return int(p.shape[1])
    return None


def _choose_imgsz(data_yaml: Path, imgsz: int | None) -> tuple[int, str | None]:
    """(imgsz, warning or None): ``imgsz`` if given, else the fold YAML's resize-cache size (``convert --imgsz``),
    else DEFAULT_IMGSZ.

    ultralytics loads convert's ``.npy`` resize cache instead of the PNG whenever it exists, so an
    ``imgsz`` above the cache size would train on upsampled images: warn about it.
    """
    from yolohand.data.convert import cache_imgsz

    cached = cache_imgsz(data_yaml)
    if imgsz is None:
        return int(cached or DEFAULT_IMGSZ), None
    if cached and int(imgsz) > cached:
        return int(imgsz), (f"warning: {data_yaml}: images are cached at {cached} px; imgsz={imgsz} trains on upsampled "
                            f"images (re-run `yolohand convert --imgsz {imgsz}`)")
    return int(imgsz), None


def _check_resumable(last: Path) -> None:
    """YolohandError when ``last.pt`` is not a readable checkpoint (truncated, damaged, foreign: start over with
    --force) or is from a finished run (ultralytics strips its optimizer, epoch -1)."""
    from yolohand.models.shared.checkpoint import read_resumable
    from yolohand.models.yolo.offline import setup_offline

    setup_offline()  # unpickling an ultralytics checkpoint imports ultralytics
    ckpt = read_resumable(last, trust_pickle=True)
    if ckpt.get("epoch", -1) == -1 or ckpt.get("optimizer") is None:
        raise YolohandError(
            f"{last}: that run finished, nothing to resume; train more with --model {last.parent / 'best.pt'} "
            f"--name <new name> (fine-tuning), or start again with --force"
        )


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class TrainPlan:
    """Everything one fold's training will do, decided before anything is written.

    ``args``: the ultralytics train arguments (overrides); ``data``: the fold YAML; ``run_dir``:
    ``<runs>/<name>/fold<k>``; ``replace``: the existing ``run_dir`` is deleted first (``--force``);
    ``threads``: ``$YOLOHAND_CPU_THREADS`` for the run (None: unchanged); ``notes`` / ``warnings``:
    lines the runner prints to stdout / stderr.
    """

    fold: int
    data: Path
    run_dir: Path
    args: dict[str, Any]
    replace: bool = False
    threads: int | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    preprocess: str | None = None  # JSON for $YOLOHAND_PREPROCESS (None: unchanged, e.g. a resume)


def _model_args(args: dict[str, Any], data: Path) -> list[str]:
    """Set ``pretrained`` for a yaml; for a ``.pt`` return a note when its channels differ from the data's."""
    if args["model"].endswith((".yaml", ".yml")):
        args["pretrained"] = False  # from scratch: never look up pretrained weights
        return []
    ch_model, ch_data = _checkpoint_channels(Path(args["model"])), _data_channels(data)
    if ch_model is None or ch_model == ch_data:
        return []
    # ultralytics builds the model for the data's channels and fills the first conv from the
    # checkpoint's (an RGB checkpoint's filters summed for grayscale), e.g. COCO yolo11x-seg.pt.
    return [f"yolohand: {Path(args['model']).name} takes {ch_model}-channel images, the data {ch_data}: "
            f"its first convolution is adapted ({'RGB filters summed' if ch_data == 1 else 'filters copied'})"]


def _resume_args(args: dict[str, Any], run_dir: Path, resume: bool) -> None:
    """With --resume: check ``last.pt`` can be continued and point ``resume``/``model`` at it."""
    if resume:
        last = run_dir / "weights" / "last.pt"
        _check_resumable(last)
        args["resume"] = args["model"] = str(last)


def plan_train(
    fold: int = 0,
    *,
    yolo: str | os.PathLike | None = None,
    runs: str | os.PathLike | None = None,
    name: str = DEFAULT_NAME,
    model: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    device: str | int | None = None,
    force: bool = False,
    resume: bool = False,
    threads: int | None = None,
    clahe: Any = None,
    gamma: Any = None,
    **flags: Any,
) -> TrainPlan:
    """The :class:`TrainPlan` of :func:`train_fold` (same arguments); reads files, writes and changes nothing.

    YolohandError for every user error (missing fold/config/checkpoint, bad device, existing run
    without --force, nothing to resume, --threads < 1).
    """
    preprocess = _preprocess(fold, clahe, gamma, flags, resume)
    data = fold_yaml(yolo, fold)
    if threads is not None and threads < 1:
        raise YolohandError(f"--threads {threads}: must be at least 1")
    cfg = read_run_config(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    args = merge_train_args(cfg, flags)
    run_dir = run_folder(runs, name, fold)
    # The run place and every input, before the model is looked at (ultralytics' import, seconds)
    # and long before anything is deleted: a run never replaces a folder holding one of its inputs.
    replace = check_run_place(run_dir, run_inputs(yolo, config, model, args), force, resume)
    args["model"] = resolve_model(model if model is not None else args.get("model", DEFAULT_MODEL))
    args["imgsz"], warning = _choose_imgsz(data, args.get("imgsz"))
    args["device"] = parse_device(device if device is not None else args.get("device"))
    on_cpu = args["device"] in {"cpu", "mps"}
    if "amp" not in cfg or on_cpu:
        args["amp"] = not on_cpu  # explicit: AMP needs CUDA; the GPU check is made offline (trainer.py)
    notes = _model_args(args, data)
    _resume_args(args, run_dir, resume)
    args.update(data=str(data), project=str(run_dir.parent), name=f"fold{fold}", exist_ok=True)
    return TrainPlan(fold, data, run_dir, args, replace, threads, tuple(notes), (warning,) if warning else (), preprocess)


def _preprocess(fold: Any, clahe: Any, gamma: Any, flags: dict[str, Any], resume: bool) -> str | None:
    """The run's ``--clahe``/``--gamma`` as :data:`~yolohand.models.yolo.trainer.PREPROCESS_ENV` JSON
    (None on --resume: the run keeps what its model holds); YolohandError for what YOLO runs cannot do
    (``--fold none``, windows, weight averaging: the smp/refine families'), popped from ``flags``."""
    import json

    from yolohand.data.preprocess import parse_clahe, parse_gamma

    if fold == "none":
        raise YolohandError("--fold none (training on every image, no validation) is for the smp and refine families; "
                            "ultralytics chooses best.pt on a validation set")
    for key, flag in (("window", "--window"), ("stride", "--stride"), ("swa_epochs", "--swa")):
        if flags.pop(key, None):
            raise YolohandError(f"{flag}: an smp/refine option (README, \"Leaderboard techniques\"); YOLO trains on "
                                "whole images at --imgsz")
    pre = {"clahe": parse_clahe(clahe), "gamma": parse_gamma(gamma)}
    if resume:
        if pre["clahe"] or pre["gamma"]:
            raise YolohandError("--clahe/--gamma with --resume: a resumed run keeps the preprocessing it started with")
        return None
    return json.dumps({k: list(v) if v else None for k, v in pre.items()})


# ----------------------------------------------------------------------------- run


def _read_results(csv_path: Path) -> list[dict[str, float]]:
    """results.csv rows as dicts of floats (keys stripped; a value that is not a number -> nan)."""
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            try:
                parsed[k.strip()] = float(v)
            except (TypeError, ValueError):
                parsed[k.strip()] = math.nan
        out.append(parsed)
    return out


def best_from_results(rows: list[dict[str, float]]) -> tuple[float, int]:
    """(best :data:`DICE_KEY`, its 1-based epoch) over results.csv rows; (nan, -1) when none is finite.

    The first epoch reaching the maximum wins, as ultralytics replaces best.pt only on a strictly
    better fitness. Used where the trainer's own state is not there (a DDP parent, a resume whose
    epochs never improved on the best); the CSV's values are rounded to 5 significant digits, so
    two epochs within 1e-5 of each other can tie where the trainer told them apart.
    """
    best, epoch = math.nan, -1
    for i, row in enumerate(rows):
        score = row.get(DICE_KEY, math.nan)
        if math.isfinite(score) and (math.isnan(best) or score > best):
            e = row.get("epoch", math.nan)
            best, epoch = score, int(e) if math.isfinite(e) else i + 1
    return best, epoch


def _result(trainer: Any, plan: TrainPlan) -> TrainResult:
    """TrainResult from the trainer's state; results.csv where the trainer has none (DDP parent, see module doc)."""
    best = Path(trainer.best)
    if not best.is_file():
        raise YolohandError(f"{plan.run_dir}: training ended without weights/best.pt (see the log above)")
    rows = _read_results(Path(trainer.csv))
    csv_dice, csv_epoch = best_from_results(rows)
    dice = float(trainer.best_fitness) if trainer.best_fitness is not None else csv_dice
    final = trainer.metrics.get(DICE_KEY) if isinstance(trainer.metrics, dict) else None
    if final is not None and math.isfinite(float(final)):
        dice = float(final)  # re-validation of the saved best.pt (what is shipped)
    epoch = getattr(trainer, "yolohand_best_epoch", None) or csv_epoch
    return TrainResult(best=best.resolve(), dice=dice, run_dir=plan.run_dir.resolve(), fold=plan.fold,
                       best_epoch=int(epoch), epochs=len(rows))


@contextlib.contextmanager
def _threads_env(threads: int | None) -> Iterator[None]:
    """``$YOLOHAND_CPU_THREADS`` = ``threads`` for the block (None: untouched); the previous value restored after."""
    if threads is None:
        yield
        return
    from yolohand.models.yolo.trainer import THREADS_ENV

    old = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)  # the env, not an argument: DDP workers inherit it
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = old


@contextlib.contextmanager
def _preprocess_env(text: str | None) -> Iterator[None]:
    """``$YOLOHAND_PREPROCESS`` = ``text`` for the block (None: unset, so a resumed model keeps its own)."""
    from yolohand.models.yolo.trainer import PREPROCESS_ENV

    old = os.environ.pop(PREPROCESS_ENV, None)
    if text is not None:
        os.environ[PREPROCESS_ENV] = text  # the env, not an argument: DDP workers inherit it
    try:
        yield
    finally:
        os.environ.pop(PREPROCESS_ENV, None)
        if old is not None:
            os.environ[PREPROCESS_ENV] = old


def run_plan(plan: TrainPlan) -> TrainResult:
    """Carry out a :class:`TrainPlan`: replace the old run if planned, train, return best.pt and its Dice."""
    for line in plan.warnings:
        print(line, file=sys.stderr)
    for line in plan.notes:
        print(line)
    if plan.replace:
        shutil.rmtree(plan.run_dir)
    from yolohand.models.yolo.trainer import DiceSegmentationTrainer  # imports ultralytics (after setup_offline)

    with _threads_env(plan.threads), _preprocess_env(plan.preprocess):
        try:
            trainer = DiceSegmentationTrainer(overrides=dict(plan.args))
        except (FileNotFoundError, AssertionError, SyntaxError, RuntimeError) as exc:
            # ultralytics reports a bad dataset/argument/resume this way (8.4.190 wraps the dataset
            # check's errors in RuntimeError): show it as a user error
            raise YolohandError(f"{plan.data}: {exc}") from None
        trainer.train()
    return _result(trainer, plan)


def train_fold(fold: int = 0, **kwargs: Any) -> TrainResult:
    """Train on ``<yolo>/folds/fold<fold>.yaml`` into ``<runs>/<name>/fold<fold>``; return best.pt and its Dice.

    ``run_plan(plan_train(fold, **kwargs))``. Arguments:

    - ``yolo``, ``runs``: dataset and runs folders (defaults via ``yolohand.config.default_path``);
    - ``name``: run name (a folder under ``runs``);
    - ``model``: ultralytics seg yaml or local ``.pt`` (:func:`resolve_model`); default
      ``--config``'s ``model`` or :data:`DEFAULT_MODEL`;
    - ``config``: a run YAML path or a mapping of ultralytics train arguments;
    - ``device``: ``cpu``, ``0``, ``0,1`` (DDP) ...; default GPU 0 when available else CPU;
    - ``force``: replace an existing run folder (otherwise refused, unless ``resume``);
    - ``resume``: continue ``<run>/weights/last.pt`` (ultralytics keeps that run's arguments,
      except imgsz, batch, device, workers, time, patience, ...);
    - ``threads``: torch CPU threads when training on CPU (default: every core); sets
      ``$YOLOHAND_CPU_THREADS`` for this run only (DDP workers inherit it);
    - other keywords: ultralytics train arguments (``imgsz``, ``epochs``, ``batch``, ``workers``,
      ``time``, ...); ``None`` values are ignored (not given on the command line).

    The Dice is best.pt's re-validation, else the trainer's best fitness; with DDP
    (``device="0,1"``) this process never trains, and both come from results.csv
    (:func:`best_from_results`). The best epoch is the one the trainer saved as best.pt
    (:func:`yolohand.models.yolo.trainer.note_best_epoch`), else results.csv's.
    """
    return run_plan(plan_train(fold, **kwargs))
