"""DiffCMR's nearest-neighbour upsampling in sampling on a CPU: ``F.interpolate`` (the baseline,
what the network used before) beside the broadcast copy the network now uses without autograd
(:func:`~diffcmr_core.method.networks.diffcmr.upsample_nearest2x`), measured in the same run.

The ``cpu`` profile's DiffCMR network (its weights random: the time does not depend on them)
reconstructs ``--slices`` random slices at the tables' batch with the tables' sampler, T and R
(DDIM, T = 20, R = 16: 24 slices x 16 rounds = 384 images per network evaluation); prints the
seconds per slice of each path (best of ``--repeats``), the speed-up, and the largest difference
of the two reconstructions (0: the same images, bit for bit).

Usage: python benchmarks/bench_upsample.py [--slices 24] [--steps 20] [--rounds 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import diffcmr_core.method.networks.diffcmr as net
from diffcmr_core.method.inference import reconstruct
from diffcmr_core.method.systems import build_system
from diffcmr_core.study.settings.profiles import get_profile


def _interpolate(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    profile = get_profile("cpu")
    torch.manual_seed(0)
    system = build_system("diffcmr", profile.network("diffcmr").model)
    model = system.model.eval()
    for p in model.parameters():  # (zero-initialised output layers would hide any difference)
        torch.nn.init.normal_(p, std=0.05)
    size = profile.network("diffcmr").model.image_size
    inputs = np.random.default_rng(0).random((args.slices, size, size), dtype=np.float32)
    kwargs = dict(
        steps=args.steps,
        rounds=args.rounds,
        batch=args.slices,
        seed=0,
        sampler="ddim",
        **profile.evaluation.sampling(),
    )
    fast = net.upsample_nearest2x
    out, best = {}, {}
    for name, fn in (("F.interpolate (baseline)", _interpolate), ("broadcast copy (ours)", fast)):
        net.upsample_nearest2x = fn
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out[name] = reconstruct(system, model, inputs, **kwargs)["mean"]
            times.append((time.perf_counter() - t0) / args.slices)
        best[name] = min(times)
    net.upsample_nearest2x = fast
    base, ours = best.values()
    a, b = out.values()
    print(
        f"DiffCMR ddim T={args.steps} R={args.rounds}, {args.slices} slices at once, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    for name, sec in best.items():
        print(f"  {name:26s} {sec:.3f} s per slice")
    print(
        f"  speed-up x{base / ours:.2f}; largest difference of the images {np.abs(a - b).max():g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
