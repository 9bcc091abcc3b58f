"""The environment that keeps the libraries under yolohand off the network at run time.

Nothing in yolohand may reach the network (a hospital machine least of all). Some libraries do on
their own: albumentations checks for a newer release when it is imported (``warning: Error fetching
version info <urlopen error ...>`` with the network cut), ultralytics probes DNS and downloads
fonts and weights, the Hugging Face hub retries for ~25 s. :func:`stay_offline` sets what turns each
off; it runs as the ``yolohand`` command starts (``yolohand/__init__.py``) and as
``yolohand.models`` loads (before any model family imports one of those libraries), so a library
user gets it too. ``tests/test_safety28.py`` imports every command's modules with sockets blocked.
:func:`yolohand.models.yolo.offline.setup_offline` adds ultralytics' config folder and fonts.

Imports nothing but ``os``.
"""

from __future__ import annotations

import os

__all__ = ["FORCED", "DEFAULTED", "stay_offline"]

#: Set whatever the environment says: yolohand never goes online.
FORCED = {
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations' release check on import
    "YOLO_OFFLINE": "true",  # ultralytics: is_online() False without a DNS probe, no downloads, no analytics
    "YOLO_AUTOINSTALL": "false",  # ultralytics: a missing requirement raises instead of `pip install`
}
#: Set unless the user set them: a local Hugging Face mirror or cache policy stays the user's choice.
DEFAULTED = {
    "HF_HUB_OFFLINE": "1",  # segmentation_models_pytorch / timm encoder weights: the local cache only
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def stay_offline() -> None:
    """Put :data:`FORCED` and :data:`DEFAULTED` in ``os.environ`` (cheap, idempotent)."""
    os.environ.update(FORCED)
    for key, value in DEFAULTED.items():
        os.environ.setdefault(key, value)
