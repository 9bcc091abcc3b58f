"""Run arguments of the smp family: the semantic families' ones, in
:mod:`yolohand.models.shared.config` (shared with the refine family; edit them there); names kept
here for existing imports."""

from yolohand.models.shared.config import DEFAULTS, LOSSES, check_args, merge_args, read_config

__all__ = ["DEFAULTS", "LOSSES", "read_config", "merge_args", "check_args"]
