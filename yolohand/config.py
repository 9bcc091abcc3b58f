"""Default paths, optionally overridden by a ``yolohand.yaml`` in the working directory.

Precedence: CLI flag > ``yolohand.yaml`` > the defaults below. Example ``yolohand.yaml``::

    root: /data/handbone      # raw competition data
    yolo: /data/yolo          # converted YOLO dataset
    runs: /data/runs          # training runs
"""

from __future__ import annotations

from pathlib import Path

import yaml

from yolohand.defaults import PATHS
from yolohand.errors import YolohandError

DEFAULTS: dict[str, str] = PATHS
CONFIG_FILE = "yolohand.yaml"


def load_config(cwd: str | Path = ".") -> dict[str, str]:
    """Return the defaults merged with ``yolohand.yaml`` in ``cwd`` when present."""
    config = dict(DEFAULTS)
    path = Path(cwd) / CONFIG_FILE
    if path.is_file():
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise YolohandError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(user, dict):
            raise YolohandError(f"{path}: expected a mapping of setting: value")
        unknown = set(user) - set(DEFAULTS)
        if unknown:
            raise YolohandError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        config.update({k: str(v) for k, v in user.items()})
    return config


def default_path(key: str, value: str | Path | None = None) -> Path:
    """``value`` if given (a CLI flag), else the configured default for ``key``, made absolute."""
    return Path(value if value is not None else load_config()[key]).expanduser().resolve()
