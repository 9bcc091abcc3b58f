"""The model zoo's table (README, "The model zoo"): params and seconds per training step on this CPU.

One training step = forward + backward + Adam step of a batch of ``--batch`` 1-channel images at
``--imgsz`` (default 4 x 256^2, the figures of ../shared/DESIGN.md), with ``--threads`` torch
threads; the median of ``--steps`` steps after one warm-up step. Also prints what each network
needs (input multiple, minimum batch, estimated training memory at 1024 px, batch 8).

    python benchmarks/zoo_speed.py [--imgsz 256] [--batch 4] [--threads 1] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from yolohand.models.shared.checkpoint import parse_model
from yolohand.models.shared.fit import GIB, probe
from yolohand.models.shared.network import build_model

#: (--model, the seed's counterpart)
ZOO = [
    ("smp:UnetPlusPlus:resnet34", "SMP UNet++ (the seed's main model)"),
    ("smp:Segformer:mit_b0", "MMSegmentation SegFormer (MiT-B0)"),
    ("smp:Unet:tu-sam2_hiera_tiny", "SAM2UNet (SAM2 Hiera encoder + U-Net decoder)"),
    ("smp:UPerNet:tu-convnext_tiny", "UPerNet + ConvNeXt-T (the MMSegmentation pairing)"),
    ("smp:DeepLabV3Plus:resnet50", "DeepLabV3+ ResNet-50"),
    ("smp:Unet:resnet18", "(yolohand's small CPU default in examples)"),
]


def step_seconds(model: torch.nn.Module, imgsz: int, batch: int, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 1, imgsz, imgsz), (torch.rand(batch, 29, imgsz, imgsz) > 0.9).float()
    model.train()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"| --model | the seed's counterpart | params | s/step ({a.batch} x {a.imgsz}², {a.threads} thread) "
          "| side multiple | min batch | GiB to train at 1024, batch 8 |")
    print("|---|---|---|---|---|---|---|")
    for text, seed in ZOO:
        spec = parse_model(text)
        model = build_model(spec.arch, spec.encoder, in_channels=1, quiet=True)
        needs = probe(model, 1)
        sec = step_seconds(model, a.imgsz, a.batch, a.steps)
        print(f"| `{text}` | {seed} | {needs.params / 1e6:.1f} M | {sec:.2f} | {needs.multiple} | {needs.min_batch} "
              f"| {needs.bytes_for(1024, 8) / GIB:.1f} |", flush=True)


if __name__ == "__main__":
    main()
