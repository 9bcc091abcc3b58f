"""Precise BatchNorm: re-estimate the running statistics on training batches before validating.

Why: from scratch with a small batch, the weights move faster than BatchNorm's running statistics
follow (momentum 0.1 in torch, 0.03 in ultralytics), so the eval-mode network is far off the
train-mode one. Measured on yolo11n-seg after 3 epochs (synthetic, AdamW lr 1e-3, batch 8): max
class score 0.001 with the running statistics vs 0.73 with re-estimated ones (validation Dice
stayed 0 without it); the smp figures are in the README ("smp from scratch").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["recalibrate_batchnorm"]


def recalibrate_batchnorm(model: Any, loader: Iterable[Any], inputs: Callable[[Any], Any], batches: int,
                          amp: bool = False) -> int:
    """Re-estimate every BatchNorm's running mean/var of ``model`` (torch.nn.Module) on ``batches``
    batches of ``loader``; ``inputs(batch)`` is the float (B, C, H, W) network input of a batch.

    The model runs in train mode without gradients, under autocast when ``amp`` (as training runs,
    so the statistics match what the AMP network computes); BN momentum is None (a cumulative
    average) meanwhile and restored after, as is the train/eval mode. Returns the batches used.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    device_type = next(model.parameters()).device.type
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    used = 0
    model.train()
    try:
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=bool(amp)):
            for batch in loader:
                if used >= batches:
                    break
                model(inputs(batch))
                used += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return used
