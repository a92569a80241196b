"""DiffCMR's sampling on a CPU at the ``cpu`` profile's tables' setting, two choices measured
beside their baseline in the same run:

1. the nearest-neighbour upsampling: ``F.interpolate`` (the baseline, what the network used
   before) beside the broadcast copy the network now uses without autograd
   (:func:`~diffcmr_core.method.networks.diffcmr.upsample_nearest2x`);
2. the slices per sampling batch (``EvalConfig.batch``; each slice's R rounds go through the
   network together, so a batch of b slices is b x R images per network evaluation): every
   size of ``--batches`` beside the first (the profile's previous 24).

The ``cpu`` profile's DiffCMR network (its weights random: the time does not depend on them)
reconstructs ``--slices`` random slices with the tables' sampler, T and R (DDIM, T = 20,
R = 16), each slice's noise seeded by its index as the study seeds it; prints seconds per slice
and the largest difference of each reconstruction from the baseline's (0: the same images, bit
for bit).

Usage: python benchmarks/bench_cpu_sampling.py [--slices 24] [--steps 20] [--rounds 16]
       [--batches 24,12,6,4,2] [--repeats 2]
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


def _timed(system, model, inputs, repeats: int, **kwargs) -> tuple[float, np.ndarray]:
    """Best seconds per slice over ``repeats`` and the mean image of each slice."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = reconstruct(system, model, inputs, ids=np.arange(len(inputs)), **kwargs)["mean"]
        times.append((time.perf_counter() - t0) / len(inputs))
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--batches", default="24,12,6,4,2")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        raise SystemExit(f"bench_cpu_sampling: --batches {args.batches!r} is not sizes") from None
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
        seed=0,
        sampler="ddim",
        **profile.evaluation.sampling(),
    )
    print(
        f"DiffCMR ddim T={args.steps} R={args.rounds} on {args.slices} slices, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    fast = net.upsample_nearest2x
    print(f"1. upsampling, {batches[0]} slices per batch:")
    timed = {}
    for name, fn in (("F.interpolate (baseline)", _interpolate), ("broadcast copy (ours)", fast)):
        net.upsample_nearest2x = fn
        try:
            timed[name] = _timed(system, model, inputs, args.repeats, batch=batches[0], **kwargs)
        finally:
            net.upsample_nearest2x = fast
    (base, a), (ours, b) = timed.values()
    for name, (sec, _) in timed.items():
        print(f"  {name:26s} {sec:.3f} s per slice")
    print(
        f"  speed-up x{base / ours:.2f}; largest difference of the images {np.abs(a - b).max():g}"
    )
    print("2. slices per sampling batch (the broadcast copy):")
    first = None
    for size_b in batches:
        sec, out = _timed(system, model, inputs, args.repeats, batch=size_b, **kwargs)
        first = (sec, out) if first is None else first
        print(
            f"  {size_b:3d} slices ({size_b * args.rounds:4d} images per evaluation) {sec:.3f} s "
            f"per slice, x{first[0] / sec:.2f}; largest difference {np.abs(out - first[1]).max():g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
