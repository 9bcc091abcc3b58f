"""The smp family's networks: built by :mod:`yolohand.models.shared.network` (shared with the
refine family); names kept here for existing imports."""

from yolohand.models.shared.checkpoint import checkpoint_meta
from yolohand.models.shared.network import build_model, export_weights, import_smp, load_pretrained, model_from_checkpoint

__all__ = ["import_smp", "build_model", "load_pretrained", "checkpoint_meta", "export_weights", "model_from_checkpoint"]
