"""Training side by side: steps per second of the ``cpu`` profile's networks trained in one
process with all of torch's threads (the baseline, measured in the same run) against
``--workers`` processes at once with an equal share of the threads each
(``study.methods.side_by_side``, what the evidence study does on a CPU).

Each measurement is a fresh process timing ``--steps`` training steps (after 5 warm-up steps)
of the network at its batch and image size on random data; the side-by-side figure is the sum
of the processes' step rates while they all run.

Usage: python benchmarks/bench_side_by_side.py [--steps 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time, torch
from diffcmr_core.method.systems import build_system
from diffcmr_core.study.settings.profiles import get_profile
method, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
net = get_profile("cpu").network(method)
system = build_system(method, net.model)
opts = system.optimizers(net.train.lr, 0.0)
gen = torch.Generator().manual_seed(0)
b, size = net.train.batch_size, 32
inp, tgt = torch.rand(b, 1, size, size), torch.rand(b, 1, size, size)
def step():
    system.train_step(inp, tgt, system.randomness(gen, b, (1, size, size)), opts, lambda m: None)
for _ in range(5):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(steps / (time.perf_counter() - t))
"""


def _rates(method: str, threads: int, steps: int, processes: int) -> list[float]:
    """Steps per second of each of ``processes`` simultaneous children."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, method, str(threads), str(steps)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    out = []
    for child in children:
        text, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"{method}: a child failed ({child.returncode})")
        out.append(float(text.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    share = max(1, threads // args.workers)
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads {threads}")
    print(
        f"| network | 1 process x {threads} threads [steps/s] | {args.workers} processes x "
        f"{share} thread(s) [steps/s, together] | gain |"
    )
    print("|---|---|---|---|")
    for method in ("diffcmr", "unet", "cgan"):
        alone = _rates(method, threads, args.steps, 1)[0]
        together = sum(_rates(method, share, args.steps, args.workers))
        print(f"| {method} | {alone:.2f} | {together:.2f} | x{together / alone:.2f} |")


if __name__ == "__main__":
    main()
