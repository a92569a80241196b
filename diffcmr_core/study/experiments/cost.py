"""What a profile's study costs in floating-point operations, notebook by notebook.

The network FLOPs are counted by PyTorch's ``FlopCounterMode`` on the ``meta`` device (no memory,
no arithmetic: a count for the paper's network takes a second on any machine); the workload is the
profile's own: iterations x batch for every model, and per image one G(I^u) plus T x R
evaluations of E for every sampling run (and one forward of each regression network) of
notebooks 04 (the paper's protocol on the validation subset, and the challenge's on every kept
frame and slice of the validation cases' files), 05 (the ablation and the public code's four
sampling choices), 08 and 09 (every multi-coil mapping slice of the validation cases; synthetic
profiles only: ``make study`` skips it on real data). The
images the challenge protocol and the maps take are counted from the profile's phantom
configuration (for ``paper``, the real data's typical sizes; the real files vary). Divided by a
sustained rate, this predicts wall time; ``python -m diffcmr_core cost --profile quick
--measured ...`` compares it with a measured run, and ``--tflops`` gives the time on a device of
that rate.

Only convolutions, matrix products and attention are counted (what dominates these networks);
left out are the notebooks' small extras (Figure 1's single chain, the explorer's default view),
reading and writing files, and 09's curve fits (0.4 s per 128 x 128 T1 slice on a 2-core CPU,
``benchmarks/bench_maps.py``).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from diffcmr_core.data.pairs import split_cases
from diffcmr_core.data.phantom import T1_INVERSION_TIMES, T2_ECHO_TIMES, case_name
from diffcmr_core.method.challenge import ranking_selection
from diffcmr_core.method.networks import DiffCMRNet
from diffcmr_core.method.settings import NetworkSettings
from diffcmr_core.method.systems import build_system
from diffcmr_core.study import methods
from diffcmr_core.study.settings.names import notebook
from diffcmr_core.study.settings.profiles import Profile, get_profile


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def unit_costs(profile: Profile) -> dict[str, dict[str, int]]:
    """FLOPs per image of each network the profile gives settings for, by the calls its system
    names (:meth:`~diffcmr_core.method.systems.RegressionSystem.flop_probes`: ``train``, one
    training sample; ``forward``, one reconstruction; DiffCMR's ``condition``, G(I^u), and
    ``denoise_step``, one step of E), counted on the meta device."""
    size, out = profile.preprocess.size, {}
    for name, given in profile.settings.items():
        if isinstance(given, NetworkSettings):
            with torch.device("meta"):
                system = build_system(name, given.model)
                probes = system.flop_probes(torch.randn(1, 1, size, size))
                out[name] = {call: _count(fn) for call, fn in probes.items()}
    return out


def validation_images(profile: Profile) -> dict[str, dict[str, int]]:
    """Images one method reconstructs per acceleration factor beyond the validation subset:
    ``challenge[task]`` (the frames and slices ``run4Ranking`` keeps of every file of the
    validation cases, both coil types) and ``maps["mapping"]`` (every multi-coil weighting of
    every mapping slice of those cases), counted from the profile's phantom configuration."""
    ph, pre = profile.phantom, profile.preprocess
    _, val = split_cases([case_name(i) for i in range(ph.n_cases)], pre.val_fraction)
    coils = len(set(ph.coils) & set(pre.coils))
    weightings = len(T1_INVERSION_TIMES) + len(T2_ECHO_TIMES)
    files = {
        "cine": [
            ("cine_sax", ph.cine_frames, ph.sax_slices),
            ("cine_lax", ph.cine_frames, ph.lax_slices),
        ],
        "mapping": [
            ("T1map", len(T1_INVERSION_TIMES), ph.mapping_slices),
            ("T2map", len(T2_ECHO_TIMES), ph.mapping_slices),
        ],
    }

    def kept(name: str, frames: int, slices: int) -> int:
        keep_frames, keep_slices = ranking_selection(name, frames, slices)
        return len(keep_frames) * len(keep_slices)

    challenge = {
        task: len(val) * coils * sum(kept(*f) for f in files[task]) for task in profile.tasks
    }
    maps = (
        {"mapping": len(val) * weightings * ph.mapping_slices} if "mapping" in profile.tasks else {}
    )
    return {"challenge": challenge, "maps": maps}


def study_cost(profile: Profile) -> dict[str, float]:
    """FLOPs of each compute-heavy notebook of ``make study`` for ``profile``."""
    return {name: split + rest for name, (split, rest) in cost_parts(profile).items()}


def with_ranks(profile: Profile, ranks: int) -> dict[str, float]:
    """FLOPs each of ``ranks`` processes does per notebook when the evaluation and the
    ablation run under ``torchrun`` (``evaluate``; the parts split over ranks divided by
    ``ranks``, the rest, training included, in one process)."""
    return {name: split / ranks + rest for name, (split, rest) in cost_parts(profile).items()}


def cost_parts(profile: Profile) -> dict[str, tuple[float, float]]:
    """Per compute-heavy notebook, ``(FLOPs the ranks of evaluate split, FLOPs in one
    process)``: 04's two protocols and 05's Table 4 are split; training, 05's public choices,
    08 and 09 are not."""
    u = unit_costs(profile)
    ev = profile.evaluation
    factors = len(profile.tasks) * len(profile.accs)
    models = len(profile.tasks) * (1 if profile.shared_models else len(profile.accs))
    entries = [methods.get(m) for m in profile.methods]
    train = sum(models * m.train_flops(profile, u) for m in entries)
    per_image = sum(m.image_flops(profile, u) for m in entries)

    def sampling(n: int, runs: list[tuple[int, int]]) -> float:
        """``n`` slices, each sampled by DiffCMR with the given (T, R) runs (G once per slice
        and run; nothing in a profile without DiffCMR)."""
        if "diffcmr" not in u:
            return 0.0
        d = u["diffcmr"]
        return n * sum(
            d["condition"] + steps * rounds * d["denoise_step"] for steps, rounds in runs
        )

    def protocol(n: int) -> float:
        """``n`` images by every method at the tables' settings (DiffCMR's T and R)."""
        return n * per_image

    n_val = ev.n_val or profile.preprocess.n_val_subset
    n_ablation = ev.ablation_n_val or profile.preprocess.n_val_subset
    images = validation_images(profile)
    accs = len(profile.accs)
    evaluation = factors * protocol(n_val) + accs * sum(
        protocol(n) for n in images["challenge"].values()
    )
    t_max, r_max = max(ev.ablation_steps), max(ev.ablation_rounds)
    table4 = sampling(
        n_ablation,
        [(t_max, r_max)] + [(s, min(ev.rounds, r_max)) for s in ev.ablation_steps if s != t_max],
    )
    public = sampling(n_ablation, [(ev.steps, ev.rounds)] * 4)  # the public choices
    t = profile.fast_train_config() if "diffcmr" in u else None
    fast = (
        (u["diffcmr"]["train"] * t.iterations * t.batch_size if t else 0.0)  # on crop pairs
        + sampling(n_ablation, [(s, r) for _, s, r in ev.fast_settings] * 3)
    )  # x (none, magnitude, coil DC)
    cost = {
        notebook("03_training"): (0.0, train),
        notebook("04_evaluation"): (evaluation, 0.0),
        notebook("05_ablation"): (table4, public),
        notebook("08_fast_sampling"): (0.0, fast),
    }
    if images["maps"] and not profile.real_data:  # 09 runs on the phantom only
        cost[notebook("09_mapping")] = (0.0, accs * protocol(images["maps"]["mapping"]))
    return cost


def duration(seconds: float) -> str:
    """A time as a person reads it: seconds under a minute (at least "< 0.1 s"), minutes
    under an hour, else hours (a quick profile's 0.2 s must not print as "0.0 min")."""
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_cost(args: argparse.Namespace) -> None:
    """Print a profile's FLOPs per notebook and its predicted time (the ``cost`` command)."""
    profile = get_profile(args.profile)
    ranks = getattr(args, "ranks", 1) or 1
    cost = study_cost(profile) if ranks == 1 else with_ranks(profile, ranks)
    if args.measured and len(args.measured) != len(cost):
        raise SystemExit(f"--measured: give {len(cost)} times, one for each of {', '.join(cost)}")
    total = sum(cost.values())
    if ranks == 1:
        print(f"profile {args.profile}: {total / 1e15:.2f} PFLOP")
    else:
        print(
            f"profile {args.profile}: {sum(study_cost(profile).values()) / 1e15:.2f} PFLOP; "
            f"{total / 1e15:.2f} PFLOP per rank with {ranks} ranks (`torchrun --nproc-per-node "
            f"{ranks} -m diffcmr_core evaluate`: 04 and Table 4 split, the rest in one process; "
            "times below are per rank)"
        )
    head = "".join(f" | {r:g} TFLOP/s" for r in args.tflops)
    print(
        f"| notebook | PFLOP{head} |"
        + (" measured s | sustained TFLOP/s |" if args.measured else "")
    )
    print("|---|---|" + "---|" * len(args.tflops) + ("---|---|" if args.measured else ""))
    for i, (name, flops) in enumerate(cost.items()):
        row = f"| {name} | {flops / 1e15:.3f}" + "".join(
            f" | {duration(flops / (r * 1e12))}" for r in args.tflops
        )
        if args.measured:
            row += f" | {args.measured[i]:.0f} | {flops / args.measured[i] / 1e12:.3f}"
        print(row + " |")
    print(
        f"| total | {total / 1e15:.3f}"
        + "".join(f" | {duration(total / (r * 1e12))}" for r in args.tflops)
        + (
            f" | {sum(args.measured):.0f} | {total / sum(args.measured) / 1e12:.3f}"
            if args.measured
            else ""
        )
        + " |"
    )


def measured_rate(profile: Profile, device: torch.device | str = "cpu", repeats: int = 3) -> float:
    """FLOP/s this machine sustains on one DiffCMR training step of the profile's network at its
    batch size (random data; the fastest of ``repeats`` after a warm-up), from the same FLOP
    count as :func:`study_cost`. The study's notebooks run at about this rate (quick on a 2-core
    CPU: 0.11-0.13 TFLOP/s for every notebook), so it turns a FLOP count into a time."""
    diffcmr = profile.network("diffcmr")
    size, batch = profile.preprocess.size, diffcmr.train.batch_size
    per_image = unit_costs(profile)["diffcmr"]["train"]
    net = DiffCMRNet(diffcmr.model).to(device)
    x = torch.randn(batch, 1, size, size, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        F.mse_loss(net(x, t, x), x).backward()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is the warm-up
            best = min(best, time.perf_counter() - tic)
        net.zero_grad(set_to_none=True)
    return per_image * batch / best


def submission_line(
    profile: Profile, method: str, images: int, ranks: int = 1, device: torch.device | str = "cpu"
) -> str:
    """One line before a submission: the ``images`` it reconstructs with ``method`` at the
    profile's settings (DiffCMR: G once and T x R steps of E per image), their FLOPs and the time
    they take at this machine's :func:`measured_rate`, split over ``ranks`` processes."""
    flops = images * methods.get(method).image_flops(profile, unit_costs(profile))
    line = f"submit: {images} images by {method}, {flops / 1e12:.3g} TFLOP"
    if flops <= 0 or "diffcmr" not in profile.settings:
        return line
    seconds = flops / measured_rate(profile, device) / ranks
    return (
        f"{line}, about {duration(seconds)}"
        + (f" per rank ({ranks} ranks)" if ranks > 1 else "")
        + " at the rate this machine sustains on a training step (reading and writing files"
        " not counted; files already written are kept and cost nothing)"
    )


def expected_line(profile: Profile, notebook: str, device: torch.device | str = "cpu") -> str:
    """One line for a long notebook: its FLOPs and the time they take at this machine's
    :func:`measured_rate` (steps already in the run folder are reused and cost nothing)."""
    flops = study_cost(profile).get(notebook)
    if flops is None:
        return f"{notebook}: not in the cost model"
    rate = measured_rate(profile, device)
    return (
        f"expected compute of {notebook}: {flops / 1e15:.3g} PFLOP, about "
        f"{flops / rate / 60:.1f} min "
        f"at the {rate / 1e12:.3g} TFLOP/s this machine sustains on a training step "
        "(nothing for steps reused from runs/)"
    )
