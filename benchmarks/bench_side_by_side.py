"""Training side by side: steps per second of the ``cpu`` profile's networks trained in one
process with all of torch's threads (the baseline, measured in the same run) against
``--workers`` processes at once with an equal share of the threads each
(``study.methods.side_by_side``, what the evidence study does on a CPU).

Each measurement is a fresh process timing ``--steps`` training steps (after 5 warm-up steps)
of the network at its batch and image size on random data; the side-by-side figure is the sum
of the processes' step rates while they all run.

With ``--compile``, also one process per network at the side-by-side share of the threads,
eager against ``torch.compile`` (inductor): its steady step rate and the seconds its first five
steps took (the compilation), to see whether compiling pays for a run of a few thousand steps.

Usage: python benchmarks/bench_side_by_side.py [--steps 100] [--workers 2] [--compile]
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
compiled = len(sys.argv) > 4 and sys.argv[4] == "compile"
torch.set_num_threads(threads)
net = get_profile("cpu").network(method)
system = build_system(method, net.model)
if compiled:
    system.model = torch.compile(system.model)
opts = system.optimizers(net.train.lr, 0.0)
gen = torch.Generator().manual_seed(0)
b, size = net.train.batch_size, 32
inp, tgt = torch.rand(b, 1, size, size), torch.rand(b, 1, size, size)
def step():
    system.train_step(inp, tgt, system.randomness(gen, b, (1, size, size)), opts, lambda m: None)
t = time.perf_counter()
for _ in range(5):
    step()
warm = time.perf_counter() - t
t = time.perf_counter()
for _ in range(steps):
    step()
print(steps / (time.perf_counter() - t), warm)
"""


def _rates(
    method: str, threads: int, steps: int, processes: int, compiled: bool = False
) -> list[tuple[float, float]]:
    """``(steps per second, seconds of the 5 warm-up steps)`` of each of ``processes``
    simultaneous children."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, method, str(threads), str(steps)]
            + (["compile"] if compiled else []),
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
        rate, warm = text.strip().splitlines()[-1].split()
        out.append((float(rate), float(warm)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
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
        alone = _rates(method, threads, args.steps, 1)[0][0]
        together = sum(r for r, _ in _rates(method, share, args.steps, args.workers))
        print(f"| {method} | {alone:.2f} | {together:.2f} | x{together / alone:.2f} |")
    if not args.compile:
        return
    print(
        f"\n| network | eager, {share} thread(s) [steps/s] | torch.compile [steps/s] | "
        "compiling (first 5 steps) [s] | gain |"
    )
    print("|---|---|---|---|---|")
    for method in ("diffcmr", "unet", "cgan"):
        eager = _rates(method, share, args.steps, 1)[0][0]
        rate, warm = _rates(method, share, args.steps, 1, compiled=True)[0]
        print(f"| {method} | {eager:.2f} | {rate:.2f} | {warm:.0f} | x{rate / eager:.2f} |")


if __name__ == "__main__":
    main()
