"""The evidence study (notebook 10; ``make study PROFILE=cpu``): does DiffCMR beat the
baselines on held-out subjects once every network is trained as its authors would, and how does
the answer move with training compute?

* **Training** (:func:`~diffcmr_core.study.methods.convergence.train_to_budget`, which every
  network of an evidence profile goes through): a fixed budget of warm-up, stable rate and a
  linear decay, each stable chunk's and the final EMA snapshot scored on the selection subjects
  (DiffCMR with the evidence settings' ``validation_sampler``); whether the budget sufficed is
  a slope test on that curve (:func:`convergence_rows`). The learning rate of each network and
  DiffCMR's sampler, T and R are chosen on the selection subjects too
  (:func:`~diffcmr_core.study.methods.convergence.tuned`); no choice sees a test subject.
* **The sampler of the curve** (:func:`choose_sampler`): the fastest candidate (fewest network
  evaluations T x R) whose mean PSNR on the selection slices is within ``within_db`` of the
  reference (Alg. 2, T = 1000, R = 4), paired over the same slices, on seed 0's model; when
  none is, the closest (``within`` False).
* **The compute curve** (:func:`compute_curve`): every snapshot of every network and seed at its
  training FLOPs (the cost model's count per sample x steps x batch) and CPU minutes (process
  time, all threads: unaffected by other processes sharing the machine), with RAW and PI-CS as
  lines; DiffCMR at R = 1 and R = 4 of the chosen sampler.
* **Seeds** (:func:`seed_evaluations`): the tables' evaluation and the ablation repeated for
  every seed of ``EvidenceConfig.seeds``
  (:func:`~diffcmr_core.study.experiments.seeds.seed_profile`); the verdicts, at the level of
  subjects, are :mod:`~diffcmr_core.study.experiments.verdicts`'.

* **Side by side** (:func:`train_networks`, and the sweep in
  :func:`~diffcmr_core.study.methods.convergence.tuned`): runs that do not depend on each other
  train in ``EvidenceConfig.train_workers`` processes at once, torch's threads shared among them.

Bit-exactness: on one machine with the same thread count, training, snapshots and scores are
bit-identical from run to run (seeded by step, resumed exactly); a network trained side by side
(one thread on a 2-core machine) is not bit-identical to one trained alone on two threads. CPU
minutes vary by a few per cent between runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.method.checkpoints import default_device, load_for_inference, snapshots
from diffcmr_core.method.evaluate import evaluate
from diffcmr_core.method.metrics import METRICS
from diffcmr_core.study import methods
from diffcmr_core.study.experiments.cost import unit_costs
from diffcmr_core.study.experiments.seeds import seed_profile
from diffcmr_core.study.methods.convergence import (
    read_record,
    sample_at,
    score_model,
)
from diffcmr_core.study.settings.profiles import (
    SCORING_FIELDS,
    Profile,
    paths_for,
    step_stamp,
)
from diffcmr_core.study.steps import ablation, ensure_trained, evaluate_factor, val_batch
from diffcmr_core.study.store.cache import STEP_USES, cached_step, keyed_rows_problem
from diffcmr_core.study.store.validation import selection_pairs
from diffcmr_core.tables import read_csv


def convergence_rows(profile: Profile, task: str, acc: int) -> list[dict[str, object]]:
    """One row per network of ``profile`` (a seed variant included): its learning rate, steps
    trained, the stable phase's selection-PSNR slope with its 95 % interval and whether it was
    still rising (:func:`~diffcmr_core.study.methods.convergence.trend`), the decay's gain,
    CPU minutes (process time, all threads), training PFLOP (the cost model's count) and the
    final selection PSNR."""
    rows, units = [], unit_costs(profile)
    for method in (m for m in profile.methods if methods.get(m).network):
        record = read_record(paths_for(profile).model_dir(task, acc, method), profile, method)
        curve = sorted(record["rows"], key=lambda r: r["step"])
        stopped = record["stopped"]
        if not curve or stopped is None:
            continue
        stable = [r for r in curve if r.get("phase") != "decay"]
        rows.append(
            {
                "task": task,
                "acc": acc,
                "method": methods.label(method),
                "seed": profile.network(method).train.seed,
                "lr": profile.network(method).train.lr,
                "steps": curve[-1]["step"],
                **{
                    name: float("nan") if stopped[key] is None else stopped[key]
                    for name, key in (
                        ("slope_db_per_1k", "slope_db_per_1k"),
                        ("slope_ci_low", "ci_low"),
                        ("slope_ci_high", "ci_high"),
                    )
                },
                "still_rising": stopped["still_rising"],
                "decay_gain_db": curve[-1]["psnr"] - stable[-1]["psnr"],
                "cpu_minutes": curve[-1]["cpu_seconds"] / 60,
                "train_pflop": methods.get(method).step_flops(profile, units)
                * curve[-1]["step"]
                / 1e15,
                "selection_psnr": curve[-1]["psnr"],
            }
        )
    return rows


def split_rows(profile: Profile, task: str, acc: int) -> list[dict[str, str]]:
    """Every subject of the pairs file and its part: ``training``, ``selection`` (the choices)
    or ``test`` (the verdicts), as the file records them."""
    import h5py

    from diffcmr_core.data.pairs import pairs_path

    path = pairs_path(paths_for(profile).pairs, task, acc)
    with h5py.File(path, "r") as f:
        train = json.loads(f.attrs["train_cases"])
        val = json.loads(f.attrs["val_cases"])
        selection = json.loads(f.attrs.get("selection_cases", "[]"))
    return [
        {"subject": case, "split": part}
        for part, cases in (
            ("training", train),
            ("selection", selection),
            ("test", [c for c in val if c not in selection]),
        )
        for case in cases
    ]


# ----------------------------------------------------------------------------- the curve's sampler
def _mean_and_seconds(profile, system, model, inp, ids, setting, progress):
    """DiffCMR's mean of ``inp`` at ``setting`` ``(sampler, T, R)`` and seconds per slice."""
    rec, seconds = sample_at(profile, system, model, inp, ids, setting, progress=progress)
    return rec["mean"], seconds


def _uses_ablation(profile) -> bool:
    """Whether the curve sampler's reference is a setting the ablation already sampled (on
    the same slices: not when the choices are made on selection subjects)."""
    ev = profile.evaluation
    if profile.preprocess.selection_cases:
        return False
    ref_s, ref_t, ref_r = profile.evidence.reference
    return ref_s == "ddpm" and ref_t == max(ev.ablation_steps) and ref_r in ev.ablation_rounds


def _sampler_row(setting, psnr, d, seconds, *, reference, within_db) -> dict[str, object]:
    """One row of :func:`choose_sampler`: mean PSNR, the mean paired difference ``d`` against
    the reference with its 95 % t interval over the slices, seconds per slice."""
    from scipy import stats

    half = (
        float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
        if len(d) > 1 and not reference
        else 0.0
    )
    mean = float(d.mean()) if not reference else 0.0
    return {
        "sampler": setting[0],
        "steps": setting[1],
        "rounds": setting[2],
        "nfe": setting[1] * setting[2],
        "psnr": float(psnr.mean()),
        "d_psnr": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "seconds_per_slice": seconds,
        "reference": reference,
        "within": True if reference else bool(d.mean() >= -within_db),
    }


def _sampler_rows(profile, task, acc, ckpt, progress) -> dict[str, object]:
    """The rows and the choice of :func:`choose_sampler` from the trained model ``ckpt``."""

    evc, ev = profile.evidence, profile.evaluation
    paths = paths_for(profile)
    out = paths.layout.step("curve sampler", task, acc)
    inp, tgt, meta = selection_pairs(profile, task, acc, ev.ablation_n_val)
    inp = np.ascontiguousarray(inp, np.float32)
    system, model = load_for_inference(ckpt, default_device(), ev.weights)

    def run(setting, n=None):
        x = inp if n is None else inp[:n]
        return _mean_and_seconds(
            profile, system, model, x, meta["index"][: len(x)], setting, progress
        )

    def psnrs(name: str, folder: Path = out) -> np.ndarray:
        return np.array([float(r["psnr"]) for r in read_csv(folder / f"{name}_slices.csv")])

    if _uses_ablation(profile):
        ref = psnrs(f"rounds{evc.reference[2]}", paths.layout.step("ablation", task, acc))
        _, ref_seconds = run(evc.reference, n=min(2, len(inp)))  # timed on two slices
    else:
        rec, ref_seconds = run(evc.reference)
        evaluate("reference", rec, tgt, meta, out)
        ref = psnrs("reference")
    rows = [_sampler_row(evc.reference, ref, ref * 0, ref_seconds, reference=True, within_db=0)]
    for setting in sorted(evc.candidates, key=lambda s: s[1] * s[2]):
        rec, seconds = run(setting)
        name = f"{setting[0]}{setting[1]}r{setting[2]}"
        evaluate(name, rec, tgt, meta, out)
        psnr = psnrs(name)
        rows.append(
            _sampler_row(
                setting, psnr, psnr - ref, seconds, reference=False, within_db=evc.within_db
            )
        )
    within = [r for r in rows[1:] if r["within"]]
    pick = within[0] if within else max(rows[1:], key=lambda r: r["d_psnr"])
    return {
        "rows": rows,
        "chosen": [pick["sampler"], pick["steps"], pick["rounds"]],
        "within": bool(within),
    }


def choose_sampler(
    profile: Profile, task: str, acc: int, *, progress: bool = True, force: bool = False
) -> dict[str, object]:
    """The fastest of ``EvidenceConfig.candidates`` within ``within_db`` of the reference on the
    ablation's slices and model (paired per slice), with every candidate's row (mean PSNR
    difference, its 95 % interval, seconds per slice). The reference's per-slice scores come
    from the ablation (:func:`~diffcmr_core.study.steps.ablation`) when it ran the same setting,
    else it is sampled here. Cached in ``runs/<profile>/evidence/<task>_accNN/sampler.json``."""

    def prepare() -> Path:
        ckpt = ensure_trained(profile, task, acc, "diffcmr", progress=progress)
        if _uses_ablation(profile):
            ablation(profile, task, acc, progress=progress)
        return ckpt

    return cached_step(
        paths_for(profile).layout.cache("curve sampler", task, acc),
        profile,
        lambda ckpt: _sampler_rows(profile, task, acc, ckpt, progress),
        uses=STEP_USES["curve sampler"],
        extra=profile.evidence,
        force=force,
        prepare=prepare,
        name="curve sampler",
        check=lambda r: keyed_rows_problem(r, "the curve sampler", ("rows",)),
    )


# ----------------------------------------------------------------------------- the compute curve
def _curve_scores(
    profile: Profile, task: str, acc: int, method: str, setting: tuple[str, int, int] | None
) -> list[dict]:
    """Every snapshot's validation scores (DiffCMR at ``setting``): the training record's when
    it was scored with that setting, else scored here and kept beside it."""

    evc = profile.evidence
    out = paths_for(profile).model_dir(task, acc, method)
    rows = sorted(read_record(out, profile, method)["rows"], key=lambda r: r["step"])
    if not methods.get(method).sampling or tuple(setting) == tuple(evc.validation_sampler):
        return rows
    path = out / f"curve_{setting[0]}{setting[1]}r{setting[2]}.json"
    kept = {}
    if path.is_file():
        data = json.loads(path.read_text())
        kept = (
            {int(k): v for k, v in data["rows"].items()}
            if data.get("stamp")
            == step_stamp(profile, (method,), setting, evaluation=SCORING_FIELDS)
            else {}
        )
    snaps = snapshots(out)
    inp, tgt, meta = selection_pairs(profile, task, acc, evc.n_val)
    result = []
    for r in rows:
        if r["step"] not in kept:
            kept[r["step"]] = score_model(
                profile, snaps[r["step"]], method, inp, tgt, tuple(setting), ids=meta["index"]
            )
            write_text_atomic(
                path,
                json.dumps(
                    {
                        "stamp": step_stamp(profile, (method,), setting, evaluation=SCORING_FIELDS),
                        "rows": {str(k): v for k, v in kept.items()},
                    }
                ),
            )
        result.append({"step": r["step"], "cpu_seconds": r["cpu_seconds"], **kept[r["step"]]})
    return result


def compute_curve(
    profile: Profile, task: str, acc: int, setting: tuple[str, int, int], seeds: tuple[int, ...]
) -> list[dict[str, object]]:
    """Rows ``method, seed, step, training FLOPs, CPU minutes, psnr, ssim, nmse``: every snapshot
    of every network and seed (DiffCMR twice: R = 1 and R = ``setting``'s R), and RAW and PI-CS
    (no network training; one row each per seed at 0 FLOPs, drawn as lines)."""

    units = unit_costs(profile)
    sampler, steps, rounds = setting
    rows = []
    for seed in seeds:
        sp = seed_profile(profile, seed)
        res = evaluate_factor(sp, task, acc, progress=False, quiet=True)
        for name in ("raw", *sp.methods):  # the methods without training: lines
            if not methods.get(name).network:
                rows.append(
                    {
                        "method": methods.label(name),
                        "seed": seed,
                        "step": 0,
                        "train_flops": 0.0,
                        "cpu_minutes": 0.0,
                        **{m: res[methods.label(name)][m] for m in METRICS},
                    }
                )
        for method in (m for m in sp.methods if methods.get(m).network):
            per_step = methods.get(method).step_flops(sp, units)
            for r in _curve_scores(sp, task, acc, method, setting):
                base = {
                    "seed": seed,
                    "step": r["step"],
                    "train_flops": float(per_step * r["step"]),
                    "cpu_minutes": r["cpu_seconds"] / 60,
                }
                if methods.get(method).sampling:  # scored at one round and at R
                    lab = f"{methods.label(method)} ({sampler} T={steps})"
                    rows.append(
                        {"method": f"{lab} R=1", **base, **{m: r[f"{m}_r1"] for m in METRICS}}
                    )
                    rows.append(
                        {"method": f"{lab} R={rounds}", **base, **{m: r[m] for m in METRICS}}
                    )
                else:
                    rows.append(
                        {"method": methods.label(method), **base, **{m: r[m] for m in METRICS}}
                    )
    return rows


def curve_means(rows: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """Per method, ``(train FLOPs, mean PSNR, sd PSNR)`` over seeds at each step."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    keyed: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        keyed.setdefault((r["method"], float(r["train_flops"])), []).append(float(r["psnr"]))
    for (method, flops), values in sorted(keyed.items()):
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.setdefault(method, []).append((flops, float(np.mean(values)), sd))
    return out


def _changes(d: np.ndarray) -> np.ndarray:
    """Indices k where ``d`` goes from below 0 to at least 0 (or back) between k and k + 1."""
    below = d < 0
    return np.nonzero(below[:-1] != below[1:])[0]


def crossings(rows: list[dict]) -> list[dict[str, object]]:
    """Where the seed-mean PSNR curves of two methods cross (linear in log FLOPs, within the
    FLOPs both cover), and where a network's curve crosses RAW's or PI-CS's level."""
    means = curve_means(rows)
    levels = {m: pts[0][1] for m, pts in means.items() if all(p[0] == 0 for p in pts)}
    curves = {m: pts for m, pts in means.items() if m not in levels}
    out = []
    names = sorted(curves)
    for i, a in enumerate(names):
        xa, ya = np.log10([p[0] for p in curves[a]]), np.array([p[1] for p in curves[a]])
        for level_name, level in levels.items():
            d = ya - level
            for k in _changes(d):
                x = xa[k] - d[k] * (xa[k + 1] - xa[k]) / (d[k + 1] - d[k])
                out.append(
                    {
                        "curve": a,
                        "crosses": level_name,
                        "train_flops": float(10**x),
                        "psnr": float(level),
                        "direction": "rises above" if d[k] < 0 else "falls below",
                    }
                )
        for b in names[i + 1 :]:
            xb, yb = np.log10([p[0] for p in curves[b]]), np.array([p[1] for p in curves[b]])
            lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
            if lo >= hi:
                continue
            grid = np.linspace(lo, hi, 200)
            d = np.interp(grid, xa, ya) - np.interp(grid, xb, yb)
            for k in _changes(d):
                out.append(
                    {
                        "curve": a,
                        "crosses": b,
                        "train_flops": float(10 ** grid[k]),
                        "psnr": float(np.interp(grid[k], xa, ya)),
                        "direction": "rises above" if d[k] < 0 else "falls below",
                    }
                )
    return out


# ----------------------------------------------------------------------------- seeds
def train_networks(profile: Profile, *, progress: bool = True) -> None:
    """Every network the evidence tables read that is not trained yet, trained side by side
    (:func:`~diffcmr_core.study.methods.side_by_side.train_side_by_side`) before the steps that
    read them: each seed's (seed 0's already are: its learning-rate sweep) and the
    data-consistency profile's (:func:`~diffcmr_core.study.experiments.consistency.dc_profile`).
    ``profile`` tuned: its rates chosen."""
    from diffcmr_core.study.experiments.consistency import dc_profile
    from diffcmr_core.study.methods.side_by_side import train_side_by_side
    from diffcmr_core.study.steps import ensure_data

    evc = profile.evidence
    nets = [m for m in profile.methods if methods.get(m).network]
    jobs = [
        (seed_profile(profile, s), t, a, m) for s in evc.seeds for t, a in evc.factors for m in nets
    ]
    dc = dc_profile(profile)
    ensure_data(dc, progress=progress)  # its own pairs, made before the pool reads them
    jobs += [(dc, t, a, m) for t, a in dc.evidence.factors for m in dc.methods]
    train_side_by_side(jobs, workers=evc.train_workers, progress=progress)


def seed_evaluations(profile: Profile, *, progress: bool = True) -> dict:
    """For every seed and factor of the evidence settings: the tables' evaluation (training to
    convergence first) and, for the ablation's factor, the ablation. ``{"results": [seed][(task,
    acc)][label] -> metrics, "ablation": [seed] -> (steps rows, rounds rows)}``."""

    evc = profile.evidence
    results, abl = {}, {}
    for seed in evc.seeds:
        sp = seed_profile(profile, seed)
        results[seed] = {
            (t, a): evaluate_factor(sp, t, a, progress=progress) for t, a in evc.factors
        }
        task, acc = evc.factors[0]
        abl[seed] = ablation(sp, task, acc, progress=progress)
    return {"results": results, "ablation": abl}


def ablation_seed_table(abl: dict[int, tuple[list[dict], list[dict]]], key: str) -> list[dict]:
    """Table 4(a) (``key="steps"``) or 4(b) (``"rounds"``) as mean and sd over seeds."""
    part = 0 if key == "steps" else 1
    seeds = sorted(abl)
    rows = []
    for i, first in enumerate(abl[seeds[0]][part]):
        row: dict[str, object] = {key: first[key], "seeds": len(seeds)}
        for m in METRICS:
            values = np.array([abl[s][part][i][m] for s in seeds])
            row[m] = float(values.mean())
            row[f"{m}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- inference cost
def inference_seconds(
    profile: Profile, task: str, acc: int, sampler_rows: list[dict], *, n: int = 8
) -> list[dict[str, object]]:
    """Seconds per slice on this machine for every method at the tables' settings (measured
    on ``n`` validation slices; PI-CS without its image cache, ESPIRiT calibration included),
    and DiffCMR at every sampler setting of :func:`choose_sampler` (measured there)."""

    batch, _, _ = val_batch(profile, task, acc, n)
    ev = profile.evaluation
    rows = []
    for name in ("raw", *profile.methods):
        rec = methods.get(name).timed_reconstructor(profile, task, acc)
        t0 = time.perf_counter()
        rec(batch)
        sampling = methods.get(name).sampling
        setting = f"{ev.sampler} T={ev.steps} R={ev.rounds} (tables)" if sampling else ""
        rows.append(
            {
                "method": methods.label(name),
                "setting": setting,
                "seconds_per_slice": (time.perf_counter() - t0) / len(batch.inputs),
            }
        )
    for r in sampler_rows:
        rows.append(
            {
                "method": "DiffCMR",
                "setting": f"{r['sampler']} T={r['steps']} R={r['rounds']}"
                + (" (reference)" if r["reference"] else ""),
                "seconds_per_slice": r["seconds_per_slice"],
            }
        )
    return rows
