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
4. On a CPU, what each choice gives on the profile's networks (``--cpu-choices``, the default on
   a CPU): one training step per method, and one network evaluation of E in sampling, as the
   plain eager path (the batch of the previous quick profile, ``no_grad``) beside the adopted one
   and each alternative (batch size, channels-last, one thread, inference mode, and with
   ``--compile`` ``torch.compile``); milliseconds per image, the sustained GFLOP/s (the cost
   model's count over the time) and its share of the CPU's peak (cores x FLOP per cycle x
   clock; ``--flop-per-cycle`` overrides the value read from the CPU's model).

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
from diffcmr_core.method.inference import plain_reconstruct, prepare_for_speed, slice_generators
from diffcmr_core.method.networks import parameter_counts
from diffcmr_core.method.systems import DiffusionSystem, autocast
from diffcmr_core.method.train import train
from diffcmr_core.study import methods
from diffcmr_core.study.settings.profiles import get_profile, paths_for
from diffcmr_core.study.steps import ensure_data, sampler_comparison
from diffcmr_core.study.writeup.report import device_description
from diffcmr_core.tables import to_markdown


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_protocol(profile, steps: int, rounds: int, slices: int, dev: torch.device) -> dict:
    cfg = profile.network("diffcmr").model
    torch.manual_seed(0)
    system = DiffusionSystem(cfg).to(dev).eval()
    model = system.model
    torch.nn.init.normal_(model.unet.out[-1].weight, std=0.02)  # non-trivial outputs
    size = cfg.image_size
    inp = torch.rand(slices, 1, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    gens = lambda: slice_generators(0, range(len(inp)), rounds, dev)  # noqa: E731

    _sync(dev)
    t0 = time.perf_counter()
    plain = plain_reconstruct(system, model, inp, steps=steps, rounds=rounds, generator=gens())
    _sync(dev)
    t_plain = time.perf_counter() - t0

    fast_model = prepare_for_speed(model)
    with autocast(dev), torch.inference_mode():  # warm-up (compilation on CUDA)
        system.reconstruct(fast_model, inp, steps=2, rounds=rounds, generator=gens())
    _sync(dev)
    t0 = time.perf_counter()
    with autocast(dev), torch.inference_mode():
        _, _, ours = system.reconstruct(
            fast_model, inp, steps=steps, rounds=rounds, generator=gens()
        )
    _sync(dev)
    t_ours = time.perf_counter() - t0
    return {
        "plain_s": t_plain / slices,
        "ours_s": t_ours / slices,
        "speedup": t_plain / t_ours,
        "max_abs_diff": (plain - ours.float()).abs().max().item(),
        "params": parameter_counts(model),
    }


def time_training(profile, iterations: int, dev: torch.device) -> dict:
    ensure_data(profile, progress=False)
    pairs = pairs_path(paths_for(profile).pairs, profile.tasks[0], profile.accs[0])
    cfg = dataclasses.replace(
        profile.network("diffcmr").train,
        iterations=iterations,
        log_every=iterations,
        checkpoint_every=10**9,
    )
    with tempfile.TemporaryDirectory() as tmp:
        train(
            "diffcmr",
            pairs,
            tmp,
            dataclasses.replace(cfg, iterations=3),
            profile.network("diffcmr").model,
            device=dev,
            progress=False,
        )  # warm-up run, discarded
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(cfg, checkpoint_every=iterations)
        train(
            "diffcmr", pairs, tmp, cfg, profile.network("diffcmr").model, device=dev, progress=False
        )
        row = (Path(tmp) / "loss.csv").read_text().splitlines()[-1].split(",")
        header = (Path(tmp) / "loss.csv").read_text().splitlines()[0].split(",")
        rec = dict(zip(header, row))
    return {
        "it_per_s": iterations / float(rec["seconds"]),
        "data_wait": float(rec["data_wait_fraction"]),
        "batch": cfg.batch_size,
    }


def cpu_peak(flop_per_cycle: float | None = None) -> tuple[float, str]:
    """The CPU's peak fp32 rate (FLOP/s) and how it was derived: cores x FLOP per cycle x clock.
    FLOP per cycle per core: 2 FMA units x (vector width / 32) lanes x 2; AMD Zen 1 (family 23,
    model < 48) splits 256-bit AVX2 into two 128-bit halves (16), other AVX2 + FMA cores 32,
    AVX-512 64. The clock is /proc/cpuinfo's (a KVM guest sees the nominal clock)."""
    import os
    import re

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = (
        set(re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split())
        if "flags" in info
        else set()
    )
    mhz = (
        float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M).group(1))
        if "cpu MHz" in info
        else float("nan")
    )
    family = (
        int(re.search(r"^cpu family\s*:\s*(\d+)", info, re.M).group(1))
        if "cpu family" in info
        else 0
    )
    model = int(re.search(r"^model\s*:\s*(\d+)", info, re.M).group(1)) if "\nmodel" in info else 0
    if flop_per_cycle is None:
        if "avx512f" in flags:
            flop_per_cycle, why = 64, "AVX-512: 2 FMA x 16 lanes x 2"
        elif family == 23 and model < 48:
            flop_per_cycle, why = (
                16,
                "AMD Zen 1: 2 FMA pipes x 4 fp32 lanes (AVX2 split in 128-bit halves) x 2",
            )
        elif "fma" in flags:
            flop_per_cycle, why = 32, "AVX2 + FMA: 2 FMA x 8 lanes x 2"
        else:
            flop_per_cycle, why = 8, "SSE: 4 lanes x 2"
    else:
        why = "given by --flop-per-cycle"
    cores = len(os.sched_getaffinity(0))
    return (
        cores * flop_per_cycle * mhz * 1e6,
        f"{cores} cores x {flop_per_cycle:g} FLOP/cycle ({why}) x {mhz:.0f} MHz",
    )


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cpu_choices(
    profile, peak: float, *, old_batch: int = 16, repeats: int = 5, compile_too: bool = False
) -> tuple[list[dict], list[dict], float]:
    """Training steps and sampling network calls of the profile's networks on this CPU, the
    plain eager path beside the adopted one and the alternatives. Returns the two tables and
    the largest difference between the adopted sampling call and the plain one."""
    from diffcmr_core.method.systems import build_system
    from diffcmr_core.study.experiments.cost import unit_costs

    size = profile.preprocess.size
    u = unit_costs(profile)
    per_image = {m: calls["train"] for m, calls in u.items()}
    threads = torch.get_num_threads()

    def row(what, path, seconds, batch, flops):
        rate = flops * batch / seconds
        return {
            "network": what,
            "path": path,
            "batch": batch,
            "ms per image": f"{1000 * seconds / batch:.2f}",
            "GFLOP/s": f"{rate / 1e9:.1f}",
            "share of peak": f"{rate / peak:.0%}",
        }

    def train_time(method, batch, channels_last=False, compiled=False):
        torch.manual_seed(0)
        system = build_system(method, profile.network(method).model)
        if channels_last:
            system = system.to(memory_format=torch.channels_last)
        if compiled:
            system.model = torch.compile(system.model)
        opts = system.optimizers(1e-4, 0.0)
        gen = torch.Generator().manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.rand(batch, 1, size, size, generator=gen).contiguous(memory_format=fmt)
        y = torch.rand(batch, 1, size, size, generator=gen).contiguous(memory_format=fmt)
        rand = system.randomness(gen, batch, (1, size, size))
        return _best(lambda: system.train_step(x, y, rand, opts, lambda m: None), repeats)

    training = []
    networks = [m for m in profile.methods if methods.get(m).network]
    adopted = {m: profile.network(m).train.batch_size for m in networks}
    for method in networks:
        b = adopted[method]
        training.append(
            row(
                method,
                f"eager, batch {old_batch} (the previous quick profile)",
                train_time(method, old_batch),
                old_batch,
                per_image[method],
            )
        )
        training.append(
            row(
                method,
                "adopted: eager, the profile's batch",
                train_time(method, b),
                b,
                per_image[method],
            )
        )
        if method == "diffcmr":
            for other in (32, 64):
                training.append(
                    row(
                        method,
                        f"batch {other}",
                        train_time(method, other),
                        other,
                        per_image[method],
                    )
                )
            training.append(
                row(
                    method,
                    "channels-last",
                    train_time(method, b, channels_last=True),
                    b,
                    per_image[method],
                )
            )
            torch.set_num_threads(1)
            training.append(row(method, "1 thread", train_time(method, b), b, per_image[method]))
            torch.set_num_threads(threads)
            if compile_too:
                t0 = time.perf_counter()
                t = train_time(method, b, compiled=True)
                training.append(
                    row(
                        method,
                        f"torch.compile (inductor; {time.perf_counter() - t0:.0f} s "
                        "to compile and time)",
                        t,
                        b,
                        per_image[method],
                    )
                )

    torch.manual_seed(0)
    net = DiffusionSystem(profile.network("diffcmr").model).model.eval()
    torch.nn.init.normal_(net.unet.out[-1].weight, std=0.02)
    ev = profile.evaluation

    def call(batch, mode="inference", module=None):
        gen = torch.Generator().manual_seed(batch)  # the same inputs for every path
        x = torch.randn(batch, 1, size, size, generator=gen)
        c = torch.rand(batch, 1, size, size, generator=gen)
        t = torch.full((batch,), 500)
        m = module or net
        if mode == "channels-last":
            m = m.to(memory_format=torch.channels_last)
            x, c = (
                x.contiguous(memory_format=torch.channels_last),
                c.contiguous(memory_format=torch.channels_last),
            )
        ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
        with ctx():
            cond = net.encode_condition(c)
            seconds = _best(
                lambda: m.denoise(x, t, cond) if module is None else m(x, t, cond), repeats * 2
            )
            out = net.denoise(x, t, cond)
        if mode == "channels-last":
            net.to(memory_format=torch.contiguous_format)
        return seconds, out

    images = ev.batch * ev.rounds
    sampling = []
    plain_s, plain_out = call(images, "no_grad")
    sampling.append(
        row(
            "E (one sampling step)",
            f"eager, no_grad ({ev.batch} slices x R = {ev.rounds})",
            plain_s,
            images,
            u["diffcmr"]["denoise_step"],
        )
    )
    ours_s, ours_out = call(images)
    sampling.append(
        row(
            "E (one sampling step)",
            "adopted: inference_mode",
            ours_s,
            images,
            u["diffcmr"]["denoise_step"],
        )
    )
    diff = (plain_out - ours_out).abs().max().item()
    for other in (16, 256):
        sampling.append(
            row(
                "E (one sampling step)",
                f"inference_mode, {other} images",
                call(other)[0],
                other,
                u["diffcmr"]["denoise_step"],
            )
        )
    sampling.append(
        row(
            "E (one sampling step)",
            "channels-last",
            call(images, "channels-last")[0],
            images,
            u["diffcmr"]["denoise_step"],
        )
    )
    torch.set_num_threads(1)
    sampling.append(
        row(
            "E (one sampling step)",
            "1 thread",
            call(images)[0],
            images,
            u["diffcmr"]["denoise_step"],
        )
    )
    torch.set_num_threads(threads)
    if compile_too:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        t0 = time.perf_counter()
        compiled = torch.compile(net.denoise)
        seconds, _ = call(images, module=compiled)
        sampling.append(
            row(
                "E (one sampling step)",
                f"torch.compile, freezing ({time.perf_counter() - t0:.0f} s to compile and time)",
                seconds,
                images,
                u["diffcmr"]["denoise_step"],
            )
        )
    return training, sampling, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=100, help="T of the timed paper protocol")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--train-iterations", type=int, default=50)
    parser.add_argument(
        "--skip-quality", action="store_true", help="skip the trained-model comparison"
    )
    parser.add_argument("--skip-cpu-choices", action="store_true", help="skip section 4 (CPU only)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile in section 4 (minutes of compilation)",
    )
    parser.add_argument(
        "--flop-per-cycle", type=float, help="override the CPU's FLOP per cycle per core"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "performance.md"
    )
    args = parser.parse_args()
    profile = get_profile(args.profile)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)

    if dev.type == "cpu" and not args.skip_cpu_choices:
        peak, how = cpu_peak(args.flop_per_cycle)
        training, sampling, diff = cpu_choices(profile, peak, compile_too=args.compile)
    proto = time_protocol(profile, args.steps, args.rounds, args.slices, dev)
    lines = [
        f"# Performance ({args.profile} config)",
        "",
        "Written by `benchmarks/bench_sampling.py` (the command below); regenerate it, never "
        "edit it. "
        "The fast-sampling table is notebook 08's cached result for this profile.",
        "",
        f"- device: {device_description()}; torch {torch.__version__}",
        f"- network: {profile.network('diffcmr').model}",
        f"- parameters: {proto['params']}",
        f"- command: `{command}`",
        "",
        f"## Paper protocol: T = {args.steps}, R = {args.rounds}, {args.slices} slices",
        "",
        to_markdown(
            [
                {
                    "path": "plain (G every step, rounds in sequence, fp32)",
                    "seconds per slice": f"{proto['plain_s']:.3f}",
                },
                {
                    "path": "ours (G once, rounds batched"
                    + (
                        ", bf16, channels-last, compiled)"
                        if dev.type == "cuda"
                        else ", inference_mode)"
                    ),
                    "seconds per slice": f"{proto['ours_s']:.3f}",
                },
            ]
        ),
        f"Speed-up {proto['speedup']:.2f}x; max |difference| of the outputs "
        f"{proto['max_abs_diff']:.2e}.",
    ]
    if args.steps != 1000:
        lines.append(
            f"Both paths cost linearly in T: at T = 1000, about "
            f"{proto['plain_s'] * 1000 / args.steps:.1f} s "
            f"(plain) and {proto['ours_s'] * 1000 / args.steps:.1f} s (ours) per slice."
        )
    if not args.skip_quality:
        rows = sampler_comparison(profile, progress=False)
        lines += [
            "",
            "## Fewer steps, on a trained model (notebook 08's comparison)",
            "",
            to_markdown(
                [
                    {
                        "sampler": r["label"],
                        "NFE": r["nfe"],
                        "PSNR": f"{r['psnr']:.2f}",
                        "SSIM": f"{r['ssim']:.4f}",
                        "NMSE": f"{r['nmse']:.4f}",
                        "s/slice": f"{r['seconds_per_slice']:.3f}",
                    }
                    for r in rows
                ]
            ),
        ]
    tr = time_training(profile, args.train_iterations, dev)
    lines += [
        "",
        "## Training",
        "",
        f"{tr['it_per_s']:.2f} iterations/s at batch {tr['batch']}; data waiting: "
        f"{100 * tr['data_wait']:.2f}% of each step (target < 5%).",
    ]
    if dev.type == "cpu" and not args.skip_cpu_choices:
        lines += [
            "",
            "## What the CPU gives: the plain eager path beside the adopted one",
            "",
            f"Peak: {peak / 1e9:.0f} GFLOP/s fp32 ({how}). FLOPs: the cost model's count "
            "(`diffcmr_core.study.experiments.cost.unit_costs`; convolutions, matrix products, "
            "attention) "
            "over the median time. Adopted: the profile's batch sizes (batch 8 costs more per "
            "image than 16 but gives twice the updates for the same images) and "
            "`torch.inference_mode` in sampling (no autograd bookkeeping; no measurable gain at "
            "this size); rejected: channels-last and one thread (slower, see their rows), "
            "torch.compile for the quick study (`--compile` times it; the seconds in its rows "
            "include compiling, with whatever inductor's on-disk cache already held: faster "
            "once compiled, but the first compilation on a machine costs about as much as a "
            "whole quick notebook saves, and its arithmetic is not the eager path's bit for "
            "bit; it pays in runs of many minutes per model). Inter-op threads: these networks "
            "run one operation at a time, so there is nothing to run beside it.",
            "",
            "One training step (random data):",
            "",
            to_markdown(training),
            "",
            "One evaluation of E in sampling (G(I^u) cached):",
            "",
            to_markdown(sampling),
            "",
            f"The adopted sampling call equals the plain one: max |difference| {diff:.1e} "
            "(same kernels; bit-identical on one machine with the same threads).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
