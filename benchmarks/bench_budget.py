"""Training budget: would the ``cpu`` profile's networks gain from a longer budget?

For each network at its learning rate (by default the rate the committed learning-rate sweep
chose, ``figures/cpu/training_lr_sweep.csv``), seed 0, on the ``cpu`` profile's data: one run at
a constant rate (after the warm-up) to the longest budget's decay point, its EMA snapshot scored
on the selection subjects every chunk (as the study scores its curves), and for every budget B
of ``--budgets`` the study's schedule to B branched from that run: the constant checkpoint at
the start of B's decay (the last ``decay_fraction`` of B) trained on with the linear decay to B,
its final EMA model scored likewise. A constant run extended by its decay is the run planned
with that budget, bit for bit (``tests/test_evidence.py``), so each branch *is* the study's run
at budget B and the B = 3000 row equals the study's seed-0 run (``training_lr_sweep.csv``).

Writes ``--out`` (default ``docs/training_budget.md``): per network and budget the final
selection PSNR, SSIM and NMSE and the training CPU minutes, the stable curve's best snapshot,
the slope test the study applies to the stable phase (:func:`convergence.trend`), and which
budget is sufficient: the smallest within ``--within`` dB (0.1) of the best; the same rows as
CSV beside it (``--out`` with ``.csv``: the cpu profile's report reads it to say whether its
budgets sufficed), the stable curves in ``<out>_curves.csv``. The work folder (``--home``)
keeps every run: an interrupted run resumes; the data are made there (or linked with
``--data``).

Usage: python benchmarks/bench_budget.py [--budgets 1500,3000,6000,12000]
       [--methods diffcmr,unet,cgan] [--lr unet=8e-3 ...] [--home DIR] [--data DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASK, ACC = "cine", 4


def _chosen_rates() -> dict[str, float]:
    """The rates the committed sweep chose (``chosen`` true), by method name."""
    from diffcmr_core.study.methods import registry

    path = ROOT / "figures" / "cpu" / "training_lr_sweep.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; give every rate with --lr method=value")
    labels = {registry.label(m): m for m in ("unet", "cgan", "diffcmr")}
    rates = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("chosen", "").lower() in ("true", "1", "yes"):
                rates[labels.get(row["method"], row["method"])] = float(row["lr"])
    return rates


def _profile(method: str, lr: float, budget: int):
    from diffcmr_core.study.methods import convergence as cv
    from diffcmr_core.study.settings.profiles import get_profile

    return cv.with_lr(get_profile("cpu"), method, lr).with_training(method, iterations=budget)


def _decay_start(profile, method: str) -> int:
    from diffcmr_core.study.methods.convergence import budget_plan

    return budget_plan(profile.network(method).train, profile.evidence)[1]


def run_one(method: str, lr: float, budgets: list[int], home: Path) -> dict:
    """One network's stable run and its branches (in this process, one thread); resumable:
    the record ``home/<method>.json`` holds every score already made."""
    import torch

    from diffcmr_core.method.checkpoints import default_device, snapshot_path
    from diffcmr_core.method.train import train
    from diffcmr_core.study.methods import convergence as cv
    from diffcmr_core.study.store.validation import selection_pairs

    torch.set_num_threads(1)
    record_path = home / f"{method}.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("lr") != lr or record.get("budgets") != budgets:
        record = {"lr": lr, "budgets": budgets, "stable": {}, "final": {}}
    longest = _profile(method, lr, max(budgets))
    cfg = longest.network(method).train
    starts = {b: _decay_start(_profile(method, lr, b), method) for b in budgets}
    inp, tgt, meta = selection_pairs(longest, TASK, ACC, longest.evidence.n_val)
    pairs = cv.training_pairs(longest, TASK, ACC)
    stable_dir, chunk = home / method / "stable", cfg.snapshot_every
    setting = longest.evidence.validation_sampler if method == "diffcmr" else None

    def score(profile, folder: Path, step: int) -> dict:
        snap = snapshot_path(folder, step)
        from diffcmr_core.method.checkpoints import load_checkpoint

        cpu = float(load_checkpoint(snap).get("cpu_seconds", 0.0))
        metrics = cv.score_model(profile, snap, method, inp, tgt, setting, ids=meta["index"])
        return {"step": step, "cpu_seconds": cpu, **metrics}

    def save() -> None:
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, record_path)

    for step in range(chunk, max(starts.values()) + 1, chunk):
        kept = stable_dir / f"constant_{step:06d}.pt"
        if str(step) in record["stable"] and (step not in starts.values() or kept.is_file()):
            continue
        train(
            method,
            pairs,
            stable_dir,
            dataclasses.replace(cfg, iterations=step, decay_steps=0),
            longest.network(method).model,
            device=default_device(),
            progress=False,
        )
        if step in starts.values():  # the constant checkpoint a budget's decay starts from
            shutil.copyfile(stable_dir / "last.pt", kept)
        record["stable"][str(step)] = score(longest, stable_dir, step)
        save()
        print(
            f"[{method}] constant step {step}: {record['stable'][str(step)]['psnr']:.3f} dB",
            flush=True,
        )
    for b in budgets:
        if str(b) in record["final"]:
            continue
        profile = _profile(method, lr, b)
        branch = home / method / f"budget{b:06d}"
        if not (branch / "last.pt").is_file():
            branch.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stable_dir / f"constant_{starts[b]:06d}.pt", branch / "last.pt")
        train(
            method,
            pairs,
            branch,
            dataclasses.replace(cfg, iterations=b, decay_steps=b - starts[b]),
            profile.network(method).model,
            device=default_device(),
            progress=False,
        )
        record["final"][str(b)] = {**score(profile, branch, b), "decay_from": starts[b]}
        save()
        print(f"[{method}] budget {b}: final {record['final'][str(b)]['psnr']:.3f} dB", flush=True)
    return record


def _table(records: dict[str, dict], within: float) -> tuple[list[dict], list[dict]]:
    """The budget rows and the stable curves' rows; per network, ``sufficient`` marks the
    smallest budget whose final selection PSNR is within ``within`` dB of the best budget's."""
    from diffcmr_core.study.methods import registry
    from diffcmr_core.study.methods.convergence import trend
    from diffcmr_core.study.settings.profiles import get_profile

    fraction = get_profile("cpu").evidence.trend_fraction
    rows, curves = [], []
    for method, rec in records.items():
        stable = sorted(rec["stable"].values(), key=lambda r: r["step"])
        curves += [{"method": registry.label(method), **r} for r in stable]
        for b in rec["budgets"]:
            final = rec["final"][str(b)]
            curve = [r for r in stable if r["step"] <= final["decay_from"]]
            best = max(curve, key=lambda r: r["psnr"])
            slope = trend(curve, fraction)
            rows.append(
                {
                    "method": registry.label(method),
                    "lr": rec["lr"],
                    "budget": b,
                    "final_psnr": final["psnr"],
                    "final_ssim": final["ssim"],
                    "final_nmse": final["nmse"],
                    "cpu_minutes": final["cpu_seconds"] / 60,
                    "stable_best_psnr": best["psnr"],
                    "stable_best_step": best["step"],
                    "slope_db_per_1k": slope["slope_db_per_1k"],
                    "slope_ci_low": slope["ci_low"],
                    "slope_ci_high": slope["ci_high"],
                    "still_rising": slope["still_rising"],
                }
            )
        mine = [r for r in rows if r["method"] == registry.label(method)]
        top = max(r["final_psnr"] for r in mine)
        enough = min(r["budget"] for r in mine if r["final_psnr"] >= top - within)
        for r in mine:
            r["sufficient"] = r["budget"] == enough
    return rows, curves


def _markdown(rows: list[dict], args, machine: str, seconds: float) -> str:
    """The table with what it is and how it was made."""
    head = (
        "| network | lr | budget (steps) | final PSNR (dB) | SSIM | NMSE | CPU min | best "
        "constant snapshot (dB @ step) | slope of the stable phase's second half, dB / 1k "
        "steps [95 % CI] | sufficient |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['method']} | {r['lr']:g} | {r['budget']} | {r['final_psnr']:.2f} | "
        f"{r['final_ssim']:.4f} | {r['final_nmse']:.4f} | {r['cpu_minutes']:.1f} | "
        f"{r['stable_best_psnr']:.2f} @ {r['stable_best_step']} | {r['slope_db_per_1k']:+.2f} "
        f"[{r['slope_ci_low']:+.2f}, {r['slope_ci_high']:+.2f}]"
        f"{' still rising' if r['still_rising'] else ''} | "
        f"{'**yes**' if r['sufficient'] else ''} |\n"
        for r in rows
    )
    return (
        "# Training budget of the `cpu` profile's networks\n\n"
        "Generated by `python benchmarks/bench_budget.py "
        f"--budgets {','.join(map(str, args.budgets))}` ({machine}; {seconds / 60:.1f} min "
        "wall). Seed 0 of each network at its chosen learning rate on the `cpu` profile's data; "
        "each budget is the study's schedule (warm-up, constant rate, linear decay over the "
        "last fifth) branched from one constant run, its final EMA model scored on the 2 "
        "selection subjects (DiffCMR with the curves' sampler, DPM-Solver++ T = 10, R = 4). "
        "CPU minutes: training process time at one thread, the branch's total from step 0. "
        f"Sufficient: the smallest budget within {args.within:g} dB of the network's best "
        "final selection PSNR (the snapshot-to-snapshot noise is about 0.1 dB).\n\n"
        + head
        + body
        + "\n![Each network's constant-rate selection curve and the final score of each budget's "
        "schedule](training_budget.png)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="1500,3000,6000,12000")
    parser.add_argument("--methods", default="diffcmr,unet,cgan")
    parser.add_argument("--lr", nargs="*", default=[], help="method=rate (default: the sweep's)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/diffcmr-bench-budget"))
    parser.add_argument("--data", type=Path, help="an existing cpu run's data folder to link")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--within", type=float, default=0.1, help="dB; see 'sufficient'")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "training_budget.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: one network
    args = parser.parse_args(argv)
    try:
        args.budgets = sorted(int(b) for b in args.budgets.split(","))
        rates = dict(_chosen_rates()) if len(args.lr) < 3 else {}
        rates.update({k: float(v) for k, v in (s.split("=", 1) for s in args.lr)})
    except ValueError as err:
        raise SystemExit(f"bench_budget: bad --budgets or --lr ({err})") from None
    methods = args.methods.split(",")
    if missing := [m for m in methods if m not in rates]:
        raise SystemExit(f"bench_budget: no learning rate for {missing}; give --lr")
    for b in args.budgets:
        if b <= 0 or b % 300:
            raise SystemExit(f"bench_budget: budget {b} is not a positive multiple of 300")
    os.environ["DIFFCMR_HOME"] = str(args.home)
    args.home.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args.one, rates[args.one], args.budgets, args.home / "budget")
        return 0
    from diffcmr_core.study.settings.profiles import get_profile
    from diffcmr_core.study.steps import ensure_data

    if args.data:
        link = args.home / "data"
        if not link.exists():
            link.symlink_to(args.data.resolve())
    else:
        ensure_data(get_profile("cpu"), progress=False)
    start = _mtimes(args.home / "budget")
    t0 = time.perf_counter()
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": path}
    base = [sys.executable, __file__, "--budgets", ",".join(map(str, args.budgets))]
    base += ["--home", str(args.home), "--lr", *(f"{m}={rates[m]}" for m in methods)]
    queue, running = list(methods), []  # DiffCMR first: the longest
    while queue or running:
        while queue and len(running) < args.workers:
            running.append(subprocess.Popen([*base, "--one", queue.pop(0)], env=env))
        time.sleep(2)
        for p in [p for p in running if p.poll() is not None]:
            if p.returncode:
                raise SystemExit(f"bench_budget: a worker failed ({p.args[-1]}, rc {p.returncode})")
            running.remove(p)
    seconds = _wall(args.home / "budget", time.perf_counter() - t0, start)
    records = {m: json.loads((args.home / "budget" / f"{m}.json").read_text()) for m in methods}
    rows, curves = _table(records, args.within)
    machine = _machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_markdown(rows, args, machine, seconds))
    with args.out.with_suffix(".csv").open("w", newline="") as f:  # the budgets (the report
        w = csv.DictWriter(f, list(rows[0]))  # reads them: study.writeup.report)
        w.writeheader()
        w.writerows(rows)
    curves_path = args.out.with_name(args.out.stem + "_curves.csv")
    with curves_path.open("w", newline="") as f:
        fields = ["method", "step", "cpu_seconds", "psnr", "ssim", "nmse", "psnr_r1"]
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(curves)
    _figure(rows, curves, args.out.with_suffix(".png"))
    print(args.out.read_text())
    return 0


def _figure(rows: list[dict], curves: list[dict], path: Path) -> None:
    """Each network's constant-rate selection curve (line) and the final score of each budget's
    schedule (markers at the budget), the sufficient budget ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), sharey=False)
    for ax, name in zip(np.atleast_1d(axes), names):
        curve = [c for c in curves if c["method"] == name]
        ax.plot(
            [c["step"] for c in curve],
            [c["psnr"] for c in curve],
            color="0.5",
            lw=1.2,
            label="constant rate (EMA snapshots)",
        )
        mine = [r for r in rows if r["method"] == name]
        ax.plot(
            [r["budget"] for r in mine],
            [r["final_psnr"] for r in mine],
            "o-",
            color="C3",
            label="final model of a budget's schedule",
        )
        for r in mine:
            if r["sufficient"]:
                ax.plot(
                    r["budget"],
                    r["final_psnr"],
                    "o",
                    ms=13,
                    mfc="none",
                    mec="k",
                    label="sufficient budget",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["budget"] for r in mine], [str(r["budget"]) for r in mine])
        ax.set_title(f"{name} (lr {mine[0]['lr']:g}, seed 0)")
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("selection PSNR (dB)")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mtimes(folder: Path) -> dict[str, float]:
    """When each network's record was last written."""
    return {p.name: p.stat().st_mtime for p in folder.glob("*.json") if p.name != "wall.json"}


def _wall(folder: Path, elapsed: float, before: dict[str, float]) -> float:
    """The wall time of the whole measurement: the seconds stored by earlier (interrupted)
    invocations plus this one's when it trained or scored anything (a record changed)."""
    path = folder / "wall.json"
    stored = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    if _mtimes(folder) != before:
        stored += elapsed
        path.write_text(json.dumps({"seconds": stored}))
    return stored


def _machine() -> str:
    """The CPU as /proc/cpuinfo names it (model name, family, model), its cores and the date."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", platform.machine())
    return (
        f"{len(os.sched_getaffinity(0))}-core {name} (family {fields.get('cpu family', '?')} "
        f"model {fields.get('model', '?')}), {time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    sys.exit(main())
