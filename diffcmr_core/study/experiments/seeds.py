"""Results and their spread: every method retrained with several seeds, and the thread count.

A seed variant of a profile (:func:`seed_profile`) changes the training seed (initial weights,
batches, noise draws) and the sampling seed of DiffCMR, and nothing else; it shares the profile's
data and pairs and keeps its runs in ``runs/<profile>-seed<s>`` (seed 0 is the profile itself).
:func:`seed_table` gives mean and standard deviation over the seeds per method, task and factor;
:func:`orderings` says which method orderings hold beyond the spread.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from diffcmr_core.method.metrics import METRICS
from diffcmr_core.method.settings import NetworkSettings
from diffcmr_core.study.settings.profiles import Profile
from diffcmr_core.study.steps import evaluate_factor


def seed_profile(profile: Profile, seed: int, threads: int | None = None) -> Profile:
    """``profile`` trained and sampled with ``seed`` (0: the profile itself); ``threads`` names
    a variant run with another torch thread count (the caller sets the count)."""
    if seed == 0 and threads is None:
        return profile
    name = profile.name + (f"-t{threads}" if threads else "") + (f"-seed{seed}" if seed else "")
    return dataclasses.replace(
        profile,
        name=name,
        data_name=profile.data_name or profile.name,
        settings={name: _with_seed(s, seed) for name, s in profile.settings.items()},
        evaluation=dataclasses.replace(profile.evaluation, seed=seed),
    )


def _with_seed(settings: object, seed: int) -> object:
    """A method's settings with ``seed`` as its training seed (a network's; others unchanged)."""
    if not isinstance(settings, NetworkSettings):
        return settings
    return dataclasses.replace(settings, train=dataclasses.replace(settings.train, seed=seed))


def seed_results(
    profile: Profile,
    seeds: tuple[int, ...],
    *,
    threads: int | None = None,
    factors: tuple[tuple[str, int], ...] | None = None,
    progress: bool = True,
) -> dict[int, dict[tuple[str, int], dict[str, dict[str, float]]]]:
    """Train and evaluate every method for each seed: ``[seed][(task, acc)][method] -> metrics``."""

    factors = factors or tuple(itertools.product(profile.tasks, profile.accs))
    return {
        s: {
            (task, acc): evaluate_factor(
                seed_profile(profile, s, threads), task, acc, progress=progress
            )
            for task, acc in factors
        }
        for s in seeds
    }


def seed_table(
    results: dict[int, dict[tuple[str, int], dict[str, dict[str, float]]]],
) -> list[dict[str, object]]:
    """Mean and (sample) standard deviation over seeds per task, factor and method."""
    seeds = sorted(results)
    rows = []
    for task, acc in results[seeds[0]]:
        for method in results[seeds[0]][(task, acc)]:
            row: dict[str, object] = {
                "task": task,
                "acc": acc,
                "method": method,
                "seeds": len(seeds),
            }
            for m in METRICS:
                values = np.array([results[s][(task, acc)][method][m] for s in seeds])
                row[m] = float(values.mean())
                row[f"{m}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def orderings(rows: list[dict[str, object]], metric: str = "psnr") -> list[dict[str, object]]:
    """For each task and factor, every pair of methods: the difference of means and whether it
    exceeds twice the larger standard deviation (``holds``; never with fewer than 2 seeds)."""
    out = []
    keyed: dict[tuple[str, int], list[dict[str, object]]] = {}
    for r in rows:
        keyed.setdefault((r["task"], r["acc"]), []).append(r)
    for (task, acc), group in keyed.items():
        for a, b in itertools.combinations(group, 2):
            diff = float(a[metric]) - float(b[metric])
            spread = 2 * max(float(a[f"{metric}_sd"]), float(b[f"{metric}_sd"]))
            better, worse = (a, b) if diff >= 0 else (b, a)
            out.append(
                {
                    "task": task,
                    "acc": acc,
                    "better": better["method"],
                    "worse": worse["method"],
                    f"d_{metric}": abs(diff),
                    "two_sd": spread,
                    "holds": int(a["seeds"]) > 1 and abs(diff) > spread,
                }
            )
    return out
