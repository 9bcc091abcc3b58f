"""Training-step cost of the engine: PyTorch Lightning's Trainer vs a bare PyTorch loop, same steps.

Why measured: the smp and refine families train with Lightning (AMP, DDP, accumulation,
checkpoint/resume, early stopping for free); this shows what its bookkeeping costs per step on
this machine. Same model (smp Unet/resnet18, 1 input channel, 29 classes), same random batches,
same Adam and combo loss; one torch thread.

    .venv/bin/python benchmarks/bench_engine.py [--steps 12] [--imgsz 128] [--batch 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from yolohand.models.smp.config import DEFAULTS
    from yolohand.models.smp.engine import SegModule, make_loss
    from yolohand.models.smp.model import build_model

    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(a.batch, 1, a.imgsz, a.imgsz, generator=g),
             (torch.rand(a.batch, 29, a.imgsz, a.imgsz, generator=g) > 0.9).float()) for _ in range(a.steps)]
    args = dict(DEFAULTS, epochs=1)

    torch.manual_seed(0)
    model, loss_fn = build_model("Unet", "resnet18", quiet=True), make_loss(args)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    bare = time.perf_counter() - t0

    os.environ.setdefault("POSSIBLE_USER_WARNING", "off")
    import pytorch_lightning as pl

    torch.manual_seed(0)
    module = SegModule(build_model("Unet", "resnet18", quiet=True), dict(args, cos_lr=False), {}, score=None)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=None))
    lit = time.perf_counter() - t0
    print(f"{a.steps} steps, Unet/resnet18, batch {a.batch} at {a.imgsz} px, 1 thread")
    print(f"  bare loop: {bare:.2f} s ({bare / a.steps:.3f} s/step)")
    print(f"  Lightning: {lit:.2f} s ({lit / a.steps:.3f} s/step, Trainer set-up included)")
    print(f"  ratio Lightning / bare: {lit / bare:.2f}x")


if __name__ == "__main__":
    main()
