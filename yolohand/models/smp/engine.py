"""The smp family's training engine is the semantic families' one, in
:mod:`yolohand.models.shared.engine` (shared with the refine family; edit it there); its names
and the input normalisation (:mod:`yolohand.models.shared.normalise`) are kept here for
existing imports."""

from yolohand.models.shared.engine import Interrupted, ResultsCsv, SegModule, make_loss, make_trainer
from yolohand.models.shared.normalise import MEAN, STD, normalise

__all__ = ["MEAN", "STD", "normalise", "make_loss", "SegModule", "ResultsCsv", "make_trainer", "Interrupted"]
