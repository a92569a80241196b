"""Seconds per slice of every method of a profile, side by side, on one task and factor's
validation slices: RAW (the baseline: no work), the networks at the tables' settings, and the
PI-CS baseline (with its ESPIRiT calibration counted once per slice location, as it runs in the
study, and without it, the maps already computed).

Uses the profile's fitted models (run ``make study`` first, or at least notebook 03):

    .venv/bin/python benchmarks/bench_methods.py --profile quick --task cine --acc 4 \
        --out docs/methods_cost.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.method import classical
from diffcmr_core.method.checkpoints import default_device
from diffcmr_core.method.metrics import all_metrics
from diffcmr_core.study import methods
from diffcmr_core.study.settings.profiles import get_profile
from diffcmr_core.study.steps import val_batch
from diffcmr_core.study.writeup.report import device_description
from diffcmr_core.tables import to_markdown


def _uncached_pics(profile, task, acc):
    """The ``cs`` reconstructor without the study's cache of PI-CS images (every slice solved)."""
    from diffcmr_core.study.methods.pics import load_choice, pics_images

    cfg = methods.settings(profile, "cs")
    choice = load_choice(methods.get("cs").artefact(profile, task, acc), cfg, task, acc, profile)
    return lambda batch: {"mean": pics_images(batch, choice, cfg)}


def time_method(profile, task, acc, name, n, repeats):
    """Best of ``repeats`` wall times of one method on the first ``n`` validation slices, and
    its mean PSNR; every repeat reads a fresh batch (the acquisitions are part of the work)."""
    run = (
        _uncached_pics(profile, task, acc)
        if name == "cs"
        else methods.get(name).reconstructor(profile, task, acc, device=default_device())
    )
    best, rec = float("inf"), None
    for _ in range(repeats):
        batch, tgt, _ = val_batch(profile, task, acc, n)
        t0 = time.perf_counter()
        rec = run(batch)["mean"]
        best = min(best, time.perf_counter() - t0)
    psnr = float(np.mean([all_metrics(tgt[i], rec[i])["psnr"] for i in range(len(rec))]))
    return best / len(rec), psnr, len(rec)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--task", default="cine")
    ap.add_argument("--acc", type=int, default=4)
    ap.add_argument("--slices", type=int, default=None, help="default: the profile's n_val")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    n = args.slices or profile.evaluation.n_val
    ev = profile.evaluation
    rows = []
    for name in ("raw", *profile.methods):
        if name == "cs":
            classical._MAPS.clear()  # the first pass calibrates ESPIRiT
            cold, psnr, count = time_method(profile, args.task, args.acc, name, n, 1)
            rows.append(
                {
                    "method": "PI-CS, ESPIRiT calibrated",
                    "seconds per slice": f"{cold:.3f}",
                    "PSNR": f"{psnr:.2f}",
                    "slices": count,
                }
            )
            warm, psnr, count = time_method(profile, args.task, args.acc, name, n, args.repeats)
            rows.append(
                {
                    "method": "PI-CS, maps already there (another factor's file of the slice)",
                    "seconds per slice": f"{warm:.3f}",
                    "PSNR": f"{psnr:.2f}",
                    "slices": count,
                }
            )
            continue
        sec, psnr, count = time_method(profile, args.task, args.acc, name, n, args.repeats)
        what = methods.label(name) + (
            f" (T = {ev.steps}, R = {ev.rounds})" if methods.get(name).sampling else ""
        )
        rows.append(
            {
                "method": what,
                "seconds per slice": f"{sec:.4f}" if sec < 0.01 else f"{sec:.3f}",
                "PSNR": f"{psnr:.2f}",
                "slices": count,
            }
        )
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    lines = [
        f"# Seconds per slice of each method: {args.profile}, {args.task} {args.acc}x",
        "",
        f"- device: {device_description()}; torch threads {torch.get_num_threads()}",
        f"- {n} validation slices (both coil types); best of {args.repeats} runs; each run reads "
        "the slices' files (PI-CS reads the k-space, the networks the pairs already in memory)",
        f"- command: `{command}`",
        "",
        to_markdown(rows),
        "",
        "RAW is the baseline (no work). PI-CS's ESPIRiT calibration runs once per slice "
        "location and is shared by the frames of a file and by the three factors' files of a "
        "slice (the calibration lines are the same), so the study pays the first row once per "
        "slice and the second for the other factors.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
