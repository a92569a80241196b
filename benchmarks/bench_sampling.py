"""DiffCMR inference and training speed, ours beside the plain path, in one run.

Prints and writes to docs/performance.md (with device, config and command):

1. Seconds per slice of the paper protocol (Alg. 2, T steps, R rounds):
   * plain: as the public code does it: the whole network, G(I^u) included, at every step, the R
     rounds one after another, fp32;
   * ours: G(I^u) encoded once per slice, rounds batched; on CUDA also bf16 autocast,
     channels-last and torch.compile.
   Both start from the same noise; the maximum difference of their outputs is printed.
2. The fast samplers' quality and seconds per slice on a trained model (notebook 08's
   comparison, computed here if missing).
3. Training iterations per second and the fraction of each step spent waiting for data.

Usage:
  python benchmarks/bench_sampling.py                         # CPU: quick config, T = 100
  python benchmarks/bench_sampling.py --profile paper --steps 1000 --slices 4   # GPU: §3.2 network
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.data.pairs import pairs_path
from diffcmr_core.method.inference import plain_reconstruct, prepare_for_speed, round_generators
from diffcmr_core.method.networks import parameter_counts
from diffcmr_core.method.systems import DiffusionSystem, autocast
from diffcmr_core.method.train import train
from diffcmr_core.study.profiles import get_profile, paths_for
from diffcmr_core.study.report import device_description
from diffcmr_core.study.steps import ensure_data, sampler_comparison
from diffcmr_core.tables import to_markdown


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_protocol(profile, steps: int, rounds: int, slices: int, dev: torch.device) -> dict:
    cfg = profile.diffcmr
    torch.manual_seed(0)
    system = DiffusionSystem(cfg).to(dev).eval()
    model = system.model
    torch.nn.init.normal_(model.unet.out[-1].weight, std=0.02)   # non-trivial outputs
    size = cfg.image_size
    inp = torch.rand(slices, 1, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    gens = lambda: round_generators(0, 0, rounds, dev)  # noqa: E731

    _sync(dev)
    t0 = time.perf_counter()
    plain = plain_reconstruct(system, model, inp, steps=steps, rounds=rounds, generator=gens())
    _sync(dev)
    t_plain = time.perf_counter() - t0

    fast_model = prepare_for_speed(model)
    with autocast(dev):                    # warm-up (compilation on CUDA)
        system.reconstruct(fast_model, inp, steps=2, rounds=rounds, generator=gens())
    _sync(dev)
    t0 = time.perf_counter()
    with autocast(dev):
        _, _, ours = system.reconstruct(fast_model, inp, steps=steps, rounds=rounds, generator=gens())
    _sync(dev)
    t_ours = time.perf_counter() - t0
    return {"plain_s": t_plain / slices, "ours_s": t_ours / slices, "speedup": t_plain / t_ours,
            "max_abs_diff": (plain - ours.float()).abs().max().item(),
            "params": parameter_counts(model)}


def time_training(profile, iterations: int, dev: torch.device) -> dict:
    ensure_data(profile, progress=False)
    pairs = pairs_path(paths_for(profile).pairs, profile.tasks[0], profile.accs[0])
    cfg = dataclasses.replace(profile.train_diffcmr, iterations=iterations, log_every=iterations,
                              checkpoint_every=10 ** 9)
    with tempfile.TemporaryDirectory() as tmp:
        train("diffcmr", pairs, tmp, dataclasses.replace(cfg, iterations=3), profile.model_config("diffcmr"),
              device=dev, progress=False)                     # warm-up run, discarded
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(cfg, checkpoint_every=iterations)
        train("diffcmr", pairs, tmp, cfg, profile.model_config("diffcmr"), device=dev, progress=False)
        row = (Path(tmp) / "loss.csv").read_text().splitlines()[-1].split(",")
        header = (Path(tmp) / "loss.csv").read_text().splitlines()[0].split(",")
        rec = dict(zip(header, row))
    return {"it_per_s": iterations / float(rec["seconds"]), "data_wait": float(rec["data_wait_fraction"]),
            "batch": cfg.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=100, help="T of the timed paper protocol")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--train-iterations", type=int, default=50)
    parser.add_argument("--skip-quality", action="store_true", help="skip the trained-model comparison")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "performance.md")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)

    proto = time_protocol(profile, args.steps, args.rounds, args.slices, dev)
    lines = [f"# Performance ({args.profile} config)", "",
             "Written by `benchmarks/bench_sampling.py` (the command below); regenerate it, never edit it. "
             "The fast-sampling table is notebook 08's cached result for this profile.", "",
             f"- device: {device_description()}; torch {torch.__version__}",
             f"- network: {profile.diffcmr}",
             f"- parameters: {proto['params']}",
             f"- command: `{command}`", "",
             f"## Paper protocol: T = {args.steps}, R = {args.rounds}, {args.slices} slices", "",
             to_markdown([{"path": "plain (G every step, rounds in sequence, fp32)", "seconds per slice": f"{proto['plain_s']:.3f}"},
                          {"path": "ours (G once, rounds batched" + (", bf16, channels-last, compiled)" if dev.type == "cuda" else ")"),
                           "seconds per slice": f"{proto['ours_s']:.3f}"}]),
             f"Speed-up {proto['speedup']:.2f}x; max |difference| of the outputs {proto['max_abs_diff']:.2e}."]
    if args.steps != 1000:
        lines.append(f"Both paths cost linearly in T: at T = 1000, about {proto['plain_s'] * 1000 / args.steps:.1f} s "
                     f"(plain) and {proto['ours_s'] * 1000 / args.steps:.1f} s (ours) per slice.")
    if not args.skip_quality:
        rows = sampler_comparison(profile, progress=False)
        lines += ["", "## Fewer steps, on a trained model (notebook 08's comparison)", "",
                  to_markdown([{"sampler": r["label"], "NFE": r["nfe"], "PSNR": f"{r['psnr']:.2f}",
                                "SSIM": f"{r['ssim']:.4f}", "NMSE": f"{r['nmse']:.4f}",
                                "s/slice": f"{r['seconds_per_slice']:.3f}"} for r in rows])]
    tr = time_training(profile, args.train_iterations, dev)
    lines += ["", "## Training", "",
              f"{tr['it_per_s']:.2f} iterations/s at batch {tr['batch']}; data waiting: "
              f"{100 * tr['data_wait']:.2f}% of each step (target < 5%)."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
