"""Default paths, optionally overridden by a ``yolohand.yaml`` in the working directory.

Precedence: CLI flag > ``yolohand.yaml`` > the defaults below. Example ``yolohand.yaml``::

    root: /data/handbone      # raw competition data
    yolo: /data/yolo          # converted YOLO dataset
    runs: /data/runs          # training runs
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from yolohand.defaults import PATHS
from yolohand.errors import YolohandError

DEFAULTS: dict[str, str] = PATHS
CONFIG_FILE = "yolohand.yaml"


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``" (did you mean 'mosaic'?)"`` for the closest of ``known`` (difflib), or ``""``."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_like_defaults(where: str, data: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """YolohandError ``where: key: value is not ...`` for a value whose type does not fit the key's
    default: a number where the default is a number (``lr0: abc``), true/false where it is a
    bool. Keys whose default is None, a string or a list take anything (ultralytics parses them)."""
    for key, value in data.items():
        default = defaults.get(key)
        if value is None or default is None:
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise YolohandError(f"{where}: {key}: {value!r} is not true or false (default {default})")
        elif isinstance(default, (int, float)):
            numbers = value if isinstance(value, list) else [value]
            if not numbers or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
                raise YolohandError(f"{where}: {key}: {value!r} is not a number (default {default})")


def read_yaml(path: Path) -> object:
    """Parse a YAML file; YolohandError ``path:line: not valid YAML (problem)`` in one line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise YolohandError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise YolohandError(f"{path}: not valid YAML (not UTF-8 text)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YolohandError(f"{where}: not valid YAML ({problem})") from None


def load_config(cwd: str | Path = ".") -> dict[str, str]:
    """Return the defaults merged with ``yolohand.yaml`` in ``cwd`` when present."""
    config = dict(DEFAULTS)
    path = Path(cwd) / CONFIG_FILE
    if path.is_file():
        user = read_yaml(path)
        if not isinstance(user, dict):
            raise YolohandError(f"{path}: expected a mapping of setting: value")
        unknown = sorted(set(map(str, user)) - set(DEFAULTS))
        if unknown:
            raise YolohandError(f"{path}: unknown setting {unknown[0]!r}{did_you_mean(unknown[0], DEFAULTS)}; "
                                f"known: {', '.join(sorted(DEFAULTS))}")
        for key, value in user.items():
            config[key] = _path_setting(path, key, value)
    return config


def _path_setting(path: Path, key: str, value: object) -> str:
    """A ``yolohand.yaml`` value as a path; YolohandError naming the file and key for anything but
    a non-empty string (or a number, a folder named ``2024``): ``runs: [1, 2]`` is not a path."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        shown = "empty" if value is None or isinstance(value, str) else f"{value!r} is not a path"
        raise YolohandError(f"{path}: {key}: {shown}; expected a folder, e.g. {key}: {DEFAULTS[key]}")
    return value


def default_path(key: str, value: str | Path | None = None) -> Path:
    """``value`` if given (a CLI flag), else the configured default for ``key``, made absolute."""
    return Path(value if value is not None else load_config()[key]).expanduser().resolve()
