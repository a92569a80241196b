"""Time one training iteration and one sampling step of the paper's network (§3.2: C = 128,
channel multipliers (1, 1, 2, 2, 4, 4), 10 RRDBs, 128 x 128, batch 6) on this machine's device.

The sampling step is one network evaluation for a batch of 6 slices x R = 4 rounds with G(I^u)
cached (ours) and, beside it, the same step with G recomputed (the plain path). On CUDA the
training step uses bf16 autocast, as the trainer does.

Usage: python benchmarks/bench_paper_config.py [--repeats 3] [--batch 6] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from diffcmr_core.method.networks import DiffCMRConfig, parameter_counts
from diffcmr_core.method.systems import DiffusionSystem
from diffcmr_core.study.writeup.report import device_description


def _timed(fn, dev: torch.device, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = DiffCMRConfig.paper()
    torch.manual_seed(0)
    system = DiffusionSystem(cfg).to(dev)
    net = system.model
    print(device_description())
    print({k: f"{v:,}" for k, v in parameter_counts(net).items()})
    b, s = args.batch, cfg.image_size
    inp, tgt = torch.rand(b, 1, s, s, device=dev), torch.rand(b, 1, s, s, device=dev)
    opt = system.optimizers(1e-5, 0.0)
    gen = torch.Generator().manual_seed(0)

    def train_step():
        system.train_step(inp, tgt, system.randomness(gen, b, (1, s, s)), opt, lambda m: None)

    net.eval()
    x = torch.randn(b * args.rounds, 1, s, s, device=dev)
    t = torch.full((b * args.rounds,), 500, device=dev)
    with torch.no_grad():
        feats = net.encode_condition(inp.repeat(args.rounds, 1, 1, 1))
        cached = _timed(lambda: net.denoise(x, t, feats), dev, args.repeats)
        plain = _timed(lambda: net(x, t, inp.repeat(args.rounds, 1, 1, 1)), dev, args.repeats)
    net.train()
    step = _timed(train_step, dev, args.repeats)
    print(f"training iteration (batch {b}): {step * 1e3:.1f} ms")
    print(
        f"sampling step, {b} slices x R = {args.rounds}: {cached * 1e3:.1f} ms with G cached, "
        f"{plain * 1e3:.1f} ms with G recomputed"
    )
    print(f"paper protocol (T = 1000): about {cached * 1000 / b:.1f} s per slice with G cached")


if __name__ == "__main__":
    main()
