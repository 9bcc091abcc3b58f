"""Sliding-window prediction at 2048 px: time and peak memory, against the whole plane at once.

One small smp checkpoint (random weights: time and memory do not depend on them), one 2048 x 2048
image, predicted into 29 class crops at full resolution as ``yolohand predict`` does, each setting in
its own process so that its peak RSS (``ru_maxrss``) is its own:

- ``plane 2048``: the whole 2048 plane in one forward pass (no windows);
- ``window 1024 / 512``: the leaderboard setting (9 windows), ``--batch`` windows per forward pass;
- ``window 1024 / 1024``: 4 windows, no overlap;
- ``window 512 / 256``: 49 small windows.

    python benchmarks/bench_windows.py [--arch Unet --encoder resnet18 --threads 1 --batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = [("plane 2048", 0, None), ("window 1024 / 512", 1024, 512), ("window 1024 / 1024", 1024, 1024),
            ("window 512 / 256", 512, 256)]


def _checkpoint(path: Path, arch: str, encoder: str) -> None:
    import torch

    from yolohand.models.shared.checkpoint import checkpoint_meta
    from yolohand.models.shared.network import build_model

    model = build_model(arch, encoder, quiet=True).eval()
    torch.save({"yolohand": checkpoint_meta("smp", arch, encoder, 2048, multiple=32),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)


def _child(ckpt: str, window: int, stride: int | None, batch: int, threads: int) -> None:
    """One setting, in this process: load, warm up on a small image, predict one 2048 image; print JSON."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from yolohand.models.family import load_network
    from yolohand.models.shared.settings import Settings

    net = load_network(ckpt, device="cpu", window=window, stride=stride, batch=batch)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (2048, 2048), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    crops = net.crops([image], Settings())
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "loaded_mib": base / 1024,
                      "classes": sum(c is not None for c in crops[0])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="Unet")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        ckpt, window, stride = a.child
        _child(ckpt, int(window), int(stride) if stride != "-" else None, a.batch, a.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "smp.pt"
        _checkpoint(ckpt, a.arch, a.encoder)
        print(f"{a.arch}/{a.encoder}, one 2048 x 2048 image -> 29 full-resolution crops, CPU, {a.threads} thread(s), "
              f"{a.batch} window(s) per forward pass")
        print(f"{'setting':<20} {'seconds':>8} {'peak RSS MiB':>13} {'after load MiB':>15}")
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        for name, window, stride in SETTINGS:
            cmd = [sys.executable, __file__, "--threads", str(a.threads), "--batch", str(a.batch),
                   "--child", str(ckpt), str(window), str(stride) if stride else "-"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{name:<20} {r['seconds']:>8.1f} {r['peak_mib']:>13.0f} {r['loaded_mib']:>15.0f}")


if __name__ == "__main__":
    main()
