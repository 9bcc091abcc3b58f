"""Make ultralytics run with no network access. Call :func:`setup_offline` before importing it.

What it does, and why (checked against ultralytics 8.4 source):

* ``YOLO_OFFLINE=true``: ``ultralytics.utils.is_online()`` returns False without a DNS probe, so
  ``ONLINE`` is False, analytics events stay off and no download is attempted.
* ``YOLO_AUTOINSTALL=false``: a missing optional requirement raises instead of ``pip install``.
* ``YOLO_CONFIG_DIR``: ultralytics keeps ``settings.json`` and fonts in
  ``$YOLO_CONFIG_DIR/Ultralytics`` (``get_user_config_dir``). Unless the variable is already set we
  point it at ``$XDG_CACHE_HOME/yolohand/ultralytics`` (default ``~/.cache/yolohand/ultralytics``) so
  yolohand never touches the user's own ultralytics settings.
* ``check_font('Arial.ttf')`` (called by the dataset check and by plotting) downloads the font
  unless ``<config dir>/Arial.ttf`` exists: we copy matplotlib's bundled ``DejaVuSans.ttf`` there
  (also as ``Arial.Unicode.ttf``), both into ``$YOLO_CONFIG_DIR`` and into the ``Ultralytics``
  sub-folder that ultralytics actually reads.

The environment variables are forced (not defaulted): yolohand never goes online at run time.
If ultralytics was imported before this call, the font is also placed in its live
``USER_CONFIG_DIR`` so the dataset check still finds it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

FONT_NAMES: tuple[str, ...] = ("Arial.ttf", "Arial.Unicode.ttf")


def _dejavu_font() -> Path | None:
    """Path of matplotlib's bundled DejaVuSans.ttf, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        font = Path(base) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    return None


def _install_fonts(folder: Path, font: Path | None) -> None:
    if font is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.exists():
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(font, tmp)
            os.replace(tmp, target)  # atomic: concurrent processes never see half a font


def default_config_dir() -> Path:
    """``$XDG_CACHE_HOME/yolohand/ultralytics`` (default ``~/.cache/yolohand/ultralytics``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "yolohand" / "ultralytics"


def setup_offline() -> Path:
    """Set the environment for offline ultralytics and install the fonts; return YOLO_CONFIG_DIR.

    Idempotent and cheap (no imports of matplotlib or ultralytics); safe to call from every
    command and from worker processes.
    """
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if not os.environ.get("YOLO_CONFIG_DIR"):
        os.environ["YOLO_CONFIG_DIR"] = str(default_config_dir())
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser()
    font = _dejavu_font()
    _install_fonts(config_dir, font)
    _install_fonts(config_dir / "Ultralytics", font)  # where get_user_config_dir() looks
    if "ultralytics.utils" in sys.modules:  # imported too early: also serve its live config dir
        live = getattr(sys.modules["ultralytics.utils"], "USER_CONFIG_DIR", None)
        if live is not None:
            _install_fonts(Path(live), font)
    return config_dir
