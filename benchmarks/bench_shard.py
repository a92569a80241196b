"""DiffCMR sampling split over processes (``torchrun``, gloo on the CPU) against one process, in
one run: the same slices, the same model, the same settings.

Three launches of the same work (a profile's DiffCMR network with fixed random weights, ``N``
slices, Alg. 2 at T steps and R rounds, chunks of the evaluation's batch through
:func:`~diffcmr_core.study.store.shard.map_chunks`):

* the baseline: 1 process with every core as a thread (``OMP_NUM_THREADS`` = cores);
* the split: ``--ranks`` processes, cores / ranks threads each;
* the check: 1 process with cores / ranks threads, whose reconstructions must be bit-identical
  to the split's (same threads per process: the split changes nothing in the result).

Sampling is compute-bound, so on one 2-core CPU expect about 1x: the point is that the split is
right and costs nothing; on N GPUs each rank has its own device.

Usage:
  python benchmarks/bench_shard.py                       # quick network, 8 slices, T = 20, R = 4
  python benchmarks/bench_shard.py --slices 16 --steps 50 --ranks 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.study.store import shard


def worker(args: argparse.Namespace) -> None:
    """One rank: sample the slices it owns, gather, and (rank 0) write seconds and a hash."""
    from diffcmr_core.method.inference import reconstruct
    from diffcmr_core.method.systems import DiffusionSystem
    from diffcmr_core.study.settings.profiles import get_profile

    profile = get_profile(args.profile)
    with shard.launched() as ranks:
        torch.manual_seed(0)
        system = DiffusionSystem(profile.network("diffcmr").model).eval()
        size = profile.preprocess.size
        inputs = np.random.default_rng(0).random((args.slices, size, size)).astype(np.float32)

        def work(lo: int, hi: int) -> dict[str, np.ndarray]:
            return reconstruct(
                system,
                system.model,
                inputs[lo:hi],
                steps=args.steps,
                rounds=args.rounds,
                batch=args.batch,
                seed=0,
                ids=np.arange(lo, hi),
            )

        reconstruct(system, system.model, inputs[:1], steps=1, rounds=1, batch=1, seed=0)  # warm-up
        ranks.barrier()
        tic = time.perf_counter()
        out = shard.map_chunks(args.slices, args.batch, work, Path(args.parts), ranks=ranks)
        seconds = time.perf_counter() - tic
        if ranks.main:
            digest = hashlib.sha256(b"".join(out[k].tobytes() for k in sorted(out))).hexdigest()
            Path(args.result).write_text(
                json.dumps(
                    {
                        "seconds": seconds,
                        "sha256": digest,
                        "world": ranks.world,
                        "threads": torch.get_num_threads(),
                    }
                )
            )


def launch(args: argparse.Namespace, ranks: int, threads: int, tmp: Path, tag: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = tmp / f"{tag}.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={ranks}",
        __file__,
        "--worker",
        "--profile",
        args.profile,
        "--slices",
        str(args.slices),
        "--steps",
        str(args.steps),
        "--rounds",
        str(args.rounds),
        "--batch",
        str(args.batch),
        "--parts",
        str(tmp / f"parts-{tag}"),
        "--result",
        str(result),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--batch", type=int, default=2, help="slices per chunk (and sampling batch)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--parts", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    cores = os.cpu_count() or 1
    per_rank = max(1, cores // args.ranks)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            ("1 process", 1, cores, "base"),
            (f"{args.ranks} processes", args.ranks, per_rank, "split"),
            (f"1 process, {per_rank} thread(s) (the check)", 1, per_rank, "check"),
        ]
        got = {
            tag: (label, ranks, threads, launch(args, ranks, threads, Path(tmp), tag))
            for label, ranks, threads, tag in runs
        }
    base = got["base"][3]["seconds"]
    print(
        f"{args.profile} DiffCMR, {args.slices} slices, DDPM T={args.steps} R={args.rounds}, "
        f"chunks of {args.batch}, {cores} cores ({torch.__version__})"
    )
    print("| run | processes | threads each | seconds | seconds per slice | speed-up |")
    print("|---|---|---|---|---|---|")
    for label, ranks, threads, res in got.values():
        print(
            f"| {label} | {ranks} | {threads} | {res['seconds']:.2f} | "
            f"{res['seconds'] / args.slices:.3f} | {base / res['seconds']:.2f}x |"
        )
    same = got["split"][3]["sha256"] == got["check"][3]["sha256"]
    print(f"split == one process at the same threads: {'bit-identical' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
