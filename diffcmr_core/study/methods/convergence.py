"""Training a network as the evidence study does (``EvidenceConfig``): a fixed budget of
warm-up, stable and decay phases (:func:`budget_plan`), the stable phase in chunks of
``snapshot_every`` steps, each EMA snapshot scored on the selection slices, the decayed final
model scored likewise; the record (``validation.json``) beside the checkpoint, resumable; the
test of whether the budget sufficed (:func:`trend`); and the learning-rate sweep
(:func:`sweep_lr`, :func:`tuned`). Below the study's steps and registry, so that the registry's
networks (:class:`~diffcmr_core.study.methods.registry.Network`) can train this way and the
evidence study (:mod:`~diffcmr_core.study.experiments.evidence`) can read the records."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from diffcmr_core.data.pairs import pairs_path
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.method.checkpoints import (
    default_device,
    load_checkpoint,
    load_for_inference,
    snapshot_path,
)
from diffcmr_core.method.inference import reconstruct, regress
from diffcmr_core.method.metrics import METRICS, all_metrics
from diffcmr_core.method.settings import NetworkSettings
from diffcmr_core.method.systems import SYSTEMS
from diffcmr_core.method.train import train
from diffcmr_core.study.settings.profiles import (
    SCORING_FIELDS,
    Profile,
    paths_for,
    step_stamp,
)
from diffcmr_core.study.store.cache import read_stamped
from diffcmr_core.study.store.validation import selection_pairs

RECORD = "validation.json"


def training_pairs(profile, task: str, acc: int):
    """The pairs file(s) a network for ``task`` at ``acc`` trains on: its factor's, or with the
    profile's ``shared_models`` every factor's, in the profile's order."""

    folder = paths_for(profile).pairs
    if profile.shared_models:
        return [pairs_path(folder, task, a) for a in profile.accs]
    return pairs_path(folder, task, acc)


# ----------------------------------------------------------------------------- scoring a snapshot
def _mean_metrics(rec: np.ndarray, tgt: np.ndarray) -> dict[str, float]:
    rows = [all_metrics(t, r) for t, r in zip(tgt, rec)]
    return {m: float(np.mean([r[m] for r in rows])) for m in METRICS}


def score_model(
    profile: Profile,
    path: Path,
    method: str,
    inp: np.ndarray,
    tgt: np.ndarray,
    setting: tuple[str, int, int] | None = None,
    *,
    device=None,
    ids: np.ndarray | None = None,
) -> dict[str, float]:
    """Validation metrics of one checkpoint or snapshot: its EMA weights on ``inp`` against
    ``tgt``; DiffCMR sampled with ``setting`` ``(sampler, T, R)``, scored at R (``psnr`` ...) and
    at its first round (``psnr_r1`` ...: the first round of an R-round run is a 1-round run)."""

    ev = profile.evaluation
    system, model = load_for_inference(path, device or default_device(), "ema")
    inp = np.ascontiguousarray(inp, np.float32)
    if not system.sampling:
        return _mean_metrics(regress(system, model, inp, ev.batch), tgt)
    rec, _ = sample_at(profile, system, model, inp, ids, setting)
    one = {f"{k}_r1": v for k, v in _mean_metrics(rec["rounds"][0], tgt).items()}
    return {**_mean_metrics(rec["mean"], tgt), **one}


def budget_plan(cfg, evc) -> tuple[list[int], int]:
    """The steps at which a network of the evidence study is scored, and where its decay
    begins: the stable phase's chunk ends (every ``snapshot_every`` steps up to the decay),
    then ``iterations``. The decay is the last ``decay_fraction`` of the steps rounded up to
    whole chunks (at least one when the fraction is above 0), the stable phase at least one
    chunk."""
    chunk, total = cfg.snapshot_every, cfg.iterations
    decay = math.ceil(evc.decay_fraction * total / chunk) * chunk if evc.decay_fraction else 0
    decay = min(decay, total - chunk)
    stable = total - decay
    steps = [*range(chunk, stable, chunk), stable]
    return (steps + [total] if decay else steps), stable


def trend(rows: list[dict], fraction: float, level: float = 0.95) -> dict[str, float | bool]:
    """The slope of a selection curve's last ``fraction`` of steps (rows with ``step`` and
    ``psnr``, the stable phase's): least squares over the snapshots after ``(1 - fraction)``
    of the last step, in dB per 1000 steps, with its ``level`` t interval; ``still_rising``
    when the interval lies above 0. Fewer than three snapshots: NaN, not rising."""
    from scipy import stats

    rows = sorted(rows, key=lambda r: r["step"])
    last = rows[-1]["step"] if rows else 0
    tail = [r for r in rows if r["step"] >= (1 - fraction) * last]
    if len(tail) < 3:
        nan = float("nan")
        return {"slope_db_per_1k": nan, "ci_low": nan, "ci_high": nan, "still_rising": False}
    fit = stats.linregress([r["step"] / 1000 for r in tail], [r["psnr"] for r in tail])
    half = float(stats.t.ppf(0.5 + level / 2, len(tail) - 2) * fit.stderr)
    slope = float(fit.slope)
    return {
        "slope_db_per_1k": slope,
        "ci_low": slope - half,
        "ci_high": slope + half,
        "still_rising": bool(slope - half > 0),
    }


def read_record(out: Path, profile: Profile, method: str) -> dict:
    """The run folder's validation record if it belongs to this profile's configuration, else a
    new one. A record of this configuration that is not well formed (:func:`record_problem`) is
    named, set aside and rebuilt: training resumes from the snapshots already on disk, which
    are scored again. Its key: what ``method``'s training reads
    (:func:`~diffcmr_core.study.settings.profiles.step_stamp`)."""
    key = step_stamp(profile, (method,), evaluation=SCORING_FIELDS)
    data = read_stamped(out / RECORD, key, record_problem, "validation record")
    return data if data is not None else {"stamp": key, "rows": [], "stopped": None}


def record_problem(record: dict) -> str | None:
    """Why a validation record cannot be used (None: it can): ``rows`` must be a list of
    objects, each with a whole ``step`` > 0 (each step once) and finite ``psnr``, ``ssim``,
    ``nmse`` and ``cpu_seconds``; ``stopped`` None or an object with the last row's ``step``,
    a true or false ``still_rising`` and, when present, a true or false ``diverged``. Only a
    diverged run's last row may have null scores (its model's were not finite)."""
    rows = record.get("rows")
    if not isinstance(rows, list):
        return f"rows is {type(rows).__name__}, not a list"
    stopped = record.get("stopped")
    if stopped is not None and not isinstance(stopped, dict):
        return f"stopped is {stopped!r}, not null or an object"
    gone = bool(stopped) and stopped.get("diverged") is True
    steps = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {i} is not an object"
        step = row.get("step")
        if type(step) is not int or step <= 0:
            return f"row {i}: step is {step!r}, not a whole number above 0"
        for key in ("cpu_seconds", *METRICS):
            value = row.get(key)
            if value is None and key != "cpu_seconds" and gone and i == len(rows) - 1:
                continue
            if type(value) not in (int, float) or not np.isfinite(value):
                return f"row {i}: {key} is {value!r}, not a number"
        steps.append(step)
    if len(set(steps)) != len(steps):
        return "a step is recorded twice"
    if stopped is None:
        return None
    if type(stopped.get("still_rising")) is not bool:
        return f"stopped.still_rising is {stopped.get('still_rising')!r}, not true or false"
    if stopped.get("diverged", False) not in (True, False):
        return f"stopped.diverged is {stopped.get('diverged')!r}, not true or false"
    if not steps or stopped.get("step") != max(steps):
        return f"stopped.step is {stopped.get('step')!r}, not the last recorded step"
    return None


def diverged(record: dict) -> bool:
    """Whether a validation record's run stopped because its model's scores were not finite
    (:func:`train_to_budget`)."""
    return bool(record.get("stopped")) and record["stopped"].get("diverged") is True


def stopped_step(profile: Profile, task: str, acc: int, method: str) -> int | None:
    """The last step of this network's finished evidence training (None: not finished)."""
    stopped = read_record(paths_for(profile).model_dir(task, acc, method), profile, method)[
        "stopped"
    ]
    return None if stopped is None else int(stopped["step"])


def train_to_budget(
    profile: Profile, task: str, acc: int, method: str, *, progress: bool = True
) -> Path:
    """Train ``method`` for ``task`` at ``acc`` on its budget (:func:`budget_plan`), scoring
    each stable chunk's and the final EMA snapshot on the selection slices; returns the final
    checkpoint. Resumable: the record (``validation.json``) and the checkpoint are written
    after every chunk; a finished run is returned as is. A run whose snapshot scores are not
    finite (its weights diverged, e.g. at too high a learning rate) stops there: its last row
    holds null scores and ``stopped`` says ``"diverged": true`` (:func:`diverged`), so that a
    learning-rate sweep can pass over that rate and a table refuses the model."""

    evc, settings = profile.evidence, profile.network(method)
    cfg = settings.train
    if cfg.lr_schedule != "constant" or not cfg.snapshot_every:
        raise ValueError(
            f"profile {profile.name}: the evidence study's schedule needs a constant learning "
            f"rate and snapshot_every for {method} (got {cfg.lr_schedule!r}, "
            f"{cfg.snapshot_every})"
        )
    out = paths_for(profile).model_dir(task, acc, method)
    record = read_record(out, profile, method)
    if _finished(record, out):
        return out / "last.pt"
    steps, stable = budget_plan(cfg, evc)
    if not record["rows"] and not (out / "last.pt").exists():
        record["rows"] = _branch_from_sweep(profile, task, acc, method, out, stable)
    inp, tgt, meta = selection_pairs(profile, task, acc, evc.n_val)
    rows = record["rows"]
    done = {r["step"] for r in rows}
    for step in (s for s in steps if s not in done):
        decay = cfg.iterations - stable if step > stable else 0
        if decay and evc.sweep_iterations is not None:
            _keep_constant(out, stable)
        train(
            method,
            training_pairs(profile, task, acc),
            out,
            dataclasses.replace(cfg, iterations=step, decay_steps=decay),
            settings.model,
            device=default_device(),
            progress=progress,
        )
        row = _scored(profile, out, method, step, inp, tgt, meta, decay)
        bad = [m for m in METRICS if not np.isfinite(row[m])]
        rows.append({**row, **dict.fromkeys(bad)})
        if bad:
            nan = dict.fromkeys(("slope_db_per_1k", "ci_low", "ci_high"))
            record["stopped"] = {"step": step, **nan, "still_rising": False, "diverged": True}
        elif step == steps[-1]:
            record["stopped"] = _stopped(rows, step, evc.trend_fraction)
        write_text_atomic(out / RECORD, json.dumps(record, indent=1))
        if progress:
            _say(f"{method} {task} {acc}x", rows[-1], record["stopped"])
        if bad:
            break
    return out / "last.pt"


def _stopped(rows: list[dict], step: int, fraction: float) -> dict:
    """A finished run's ``stopped``: its last step and the slope test of its stable phase
    (:func:`trend`; NaN, too few snapshots, as JSON null)."""
    slope = trend([r for r in rows if r.get("phase") != "decay"], fraction)
    return {"step": step, **{k: None if v != v else v for k, v in slope.items()}}


CONSTANT = "constant.pt"  # a run's checkpoint at the end of its constant phase


def _keep_constant(out: Path, stable: int) -> None:
    """Keep the run's checkpoint at the end of its constant phase (``constant.pt``) before the
    decay overwrites ``last.pt`` (in a profile with ``sweep_iterations``): a longer run at the
    same rate goes on from it (:func:`_branch_from_sweep`). Only a checkpoint of exactly that
    step is kept (a run resumed in its decay has none to keep)."""
    import shutil

    last, kept = out / "last.pt", out / CONSTANT
    if kept.is_file() or not last.is_file() or load_checkpoint(last).get("step") != stable:
        return
    tmp = kept.with_suffix(".tmp")
    shutil.copyfile(last, tmp)
    tmp.replace(kept)


def sweep_variant(profile: Profile, method: str, lr: float) -> Profile:
    """The learning-rate sweep's run of ``method`` at ``lr``: at ``sweep_iterations`` steps
    when the evidence settings give it, else at the network's own budget."""
    variant = with_lr(profile, method, lr)
    n = profile.evidence.sweep_iterations if profile.evidence else None
    return variant if n is None else variant.with_training(method, iterations=n)


def _branch_from_sweep(profile, task, acc, method, out: Path, stable: int) -> list[dict]:
    """A new run whose budget is longer than the sweep's starts from the sweep's run at its
    rate (same seed and settings but the budget): that run's constant-phase checkpoint
    (``constant.pt``, at the sweep's decay start, at most this run's) becomes ``last.pt``, its
    snapshots and record rows up to there are copied (they are this run's: the same steps at
    the same rate). Returns the rows (none when there is no such sweep run to start from)."""
    import shutil

    n = profile.evidence.sweep_iterations
    cfg = profile.network(method).train
    if n is None or n == cfg.iterations or not profile.evidence.lr_factors:
        return []
    source = profile.with_training(method, iterations=n)
    src = paths_for(source).model_dir(task, acc, method)
    kept = src / CONSTANT
    record = read_record(src, source, method) if kept.is_file() else None
    if record is None or diverged(record):
        return []
    step = int(load_checkpoint(kept).get("step", 0))
    rows = [r for r in record["rows"] if r["step"] <= step and r.get("phase") != "decay"]
    if not 0 < step <= stable or sorted(r["step"] for r in rows)[-1:] != [step]:
        return []
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        snap = snapshot_path(src, r["step"])
        if snap.is_file():
            snapshot_path(out, r["step"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snap, snapshot_path(out, r["step"]))
    if (src / "loss.csv").is_file():
        shutil.copyfile(src / "loss.csv", out / "loss.csv")
    tmp = out / "last.tmp"
    shutil.copyfile(kept, tmp)
    tmp.replace(out / "last.pt")
    print(
        f"[{method} {task} {acc}x] continues its {n}-step sweep run from step {step} "
        f"({src.name}/{CONSTANT})",
        flush=True,
    )
    return [dict(r) for r in rows]


def _finished(record: dict, out: Path) -> bool:
    """Whether a run is done: its record says where it stopped and its checkpoint is there."""
    return record["stopped"] is not None and (out / "last.pt").is_file()


def finished(profile: Profile, task: str, acc: int, method: str) -> bool:
    """Whether :func:`train_to_budget` would return at once for this network."""
    out = paths_for(profile).model_dir(task, acc, method)
    return _finished(read_record(out, profile, method), out)


def _scored(profile, out, method, step, inp, tgt, meta, decay) -> dict:
    """A record's row: the EMA snapshot of ``step`` scored on the selection slices."""
    snap = snapshot_path(out, step)
    setting = profile.evidence.validation_sampler if SYSTEMS[method].sampling else None
    return {
        "step": step,
        "phase": "decay" if decay else "stable",
        "cpu_seconds": float(load_checkpoint(snap).get("cpu_seconds", 0.0)),
        **score_model(profile, snap, method, inp, tgt, setting, ids=meta["index"]),
    }


def _say(what: str, row: dict, stopped: dict | None) -> None:
    """One line per chunk of :func:`train_to_budget`."""
    end = ""
    if stopped and stopped.get("diverged"):
        end = " -> stopped: the model diverged"
    elif stopped:
        end = " -> done; the stable phase was " + (
            "still rising" if stopped["still_rising"] else "not detectably rising"
        )
    psnr = "not finite" if row["psnr"] is None else f"{row['psnr']:.2f} dB"
    print(f"[{what}] step {row['step']} ({row['phase']}): selection PSNR {psnr}{end}", flush=True)


# ----------------------------------------------------------------------------- learning rates
def with_lr(profile: Profile, method: str, lr: float) -> Profile:
    """``profile`` with ``method`` trained at learning rate ``lr``."""
    net = profile.network(method)
    settings = {
        **profile.settings,
        method: dataclasses.replace(net, train=dataclasses.replace(net.train, lr=lr)),
    }
    return dataclasses.replace(profile, settings=settings)


def sweep_path(profile: Profile, method: str) -> Path:
    """The learning-rate sweep's choice of ``method`` (JSON)."""
    return paths_for(profile).layout.lr_sweep(method)


def _swept(profile: Profile, method: str, lr: float, train_missing: bool) -> dict | None:
    """One rate's row of :func:`sweep_lr` (trained first when ``train_missing``; None when
    its run is not finished)."""
    task, acc = profile.evidence.factors[0]
    variant = sweep_variant(profile, method, lr)
    if train_missing:
        train_to_budget(variant, task, acc, method, progress=True)
    record = read_record(paths_for(variant).model_dir(task, acc, method), variant, method)
    if record["stopped"] is None:
        return None
    final = max(record["rows"], key=lambda r: r["step"])
    return {
        "method": method,
        "lr": lr,
        "steps": final["step"],
        **{m: final[m] for m in METRICS},
        "still_rising": record["stopped"]["still_rising"],
        "diverged": diverged(record),
        "cpu_minutes": final["cpu_seconds"] / 60,
    }


def sweep_lr(profile: Profile, method: str, *, train_missing: bool = True) -> dict | None:
    """Train ``method`` (seed 0, the evidence factor) at its configured rate times each of
    ``lr_factors`` and choose the rate whose final model scores the best selection PSNR; while
    the best is the highest (lowest) rate tried, the sweep goes on at twice (half) it, at most
    ``lr_extend`` rates beyond the planned ones, so that the chosen rate is not an edge of the
    sweep unless the extensions run out (said by ``edge``).
    A rate whose run diverged (:func:`diverged`: null scores, ``diverged`` true) is never
    chosen; every rate diverged is an error.
    ``{"rows": [{method, lr, steps, psnr, ssim, nmse, still_rising, diverged, cpu_minutes}],
    "chosen": lr, "edge": bool}``, cached beside the runs; ``train_missing=False``: None when a
    run is not finished."""
    missing, result = _sweep(profile, method, lambda lr: _swept(profile, method, lr, train_missing))
    if missing:
        return None
    write_text_atomic(sweep_path(profile, method), json.dumps(result, indent=1))
    return result


def sweep_needs(profile: Profile, method: str) -> list[float]:
    """The rates :func:`sweep_lr` has to train next (those of its current round not finished;
    empty once the sweep can choose), so that they can be trained side by side."""
    return _sweep(profile, method, lambda lr: _swept(profile, method, lr, False))[0]


def _sweep(profile: Profile, method: str, row_of) -> tuple[list[float], dict | None]:
    """:func:`sweep_lr`'s rounds, each rate's row from ``row_of(lr)`` (None: not finished):
    the first round's unfinished rates and no result, or no rates and the result."""
    evc = profile.evidence
    if method in evc.lr_chosen:
        raise ValueError(
            f"profile {profile.name}: {method}'s rate is chosen; sweep its configured one"
        )
    base = profile.network(method).train.lr
    rates = sorted(base * f for f in evc.lr_factors)
    rows: dict[float, dict] = {}
    for _ in range(len(rates) + evc.lr_extend):
        missing = []
        for lr in (r for r in rates if r not in rows):
            row = row_of(lr)
            if row is None:
                missing.append(lr)
            else:
                rows[lr] = row
        if missing:
            return missing, None
        usable = [r for r in rows.values() if not r.get("diverged") and r["psnr"] is not None]
        if not usable:
            raise RuntimeError(
                f"profile {profile.name}: {method} diverged at every learning rate swept "
                f"({', '.join(f'{lr:g}' for lr in sorted(rows))}); lower its configured rate"
            )
        best = max(usable, key=lambda r: r["psnr"])["lr"]
        extra = len(rates) - len(evc.lr_factors)
        if best not in (rates[0], rates[-1]) or extra >= evc.lr_extend or len(rates) < 2:
            break
        rates = [rates[0] / 2, *rates] if best == rates[0] else [*rates, rates[-1] * 2]
    return [], {
        "rows": [rows[lr] for lr in sorted(rows)],
        "chosen": best,
        "edge": len(rates) > 1 and best in (rates[0], rates[-1]),
    }


def _sweep_side_by_side(profile: Profile, methods: list[str]) -> None:
    """Train every rate the sweeps of ``methods`` need, round by round, side by side
    (:mod:`~diffcmr_core.study.methods.side_by_side`)."""
    from diffcmr_core.study.methods.side_by_side import train_side_by_side

    task, acc = profile.evidence.factors[0]
    before = None
    while True:
        needs = [(m, lr) for m in methods for lr in sweep_needs(profile, m)]
        if not needs:
            return
        if needs == before:  # (a pool that returned leaves every job finished)
            raise RuntimeError(f"the learning-rate sweep made no progress on {needs}")
        before = needs
        jobs = [(sweep_variant(profile, m, lr), task, acc, m) for m, lr in needs]
        train_side_by_side(jobs, workers=profile.evidence.train_workers)


def sweep_rows(profile: Profile) -> list[dict]:
    """Every swept rate of every network with its final selection scores and ``chosen``, as
    the last :func:`sweep_lr` wrote them (empty for a profile without a finished sweep)."""
    from diffcmr_core.study import methods as registry  # (the registry imports this module)

    rows = []
    for method in [
        m for m in profile.methods if isinstance(profile.settings.get(m), NetworkSettings)
    ]:
        path = sweep_path(profile, method)
        sweep = json.loads(path.read_text()) if path.is_file() else {"rows": []}
        rows += [
            {
                **r,
                **{m: float("nan") for m in METRICS if r.get(m) is None},  # (diverged: n/a)
                "method": registry.label(method),
                "diverged": bool(r.get("diverged", False)),
                "chosen": r["lr"] == sweep["chosen"],
            }
            for r in sweep["rows"]
        ]
    return rows


def _best_rows(profile: Profile) -> dict:
    """The rows and the choice of :func:`best_sampling` (seed 0's trained DiffCMR)."""
    evc = profile.evidence
    task, acc = evc.factors[0]
    inp, tgt, meta = selection_pairs(profile, task, acc, evc.n_val)
    system, model = load_for_inference(
        paths_for(profile).model_dir(task, acc, "diffcmr") / "last.pt", default_device(), "ema"
    )
    rows, most = [], max(evc.best_rounds)
    for sampler, steps in evc.best_samplers:
        rec, seconds = sample_at(profile, system, model, inp, meta["index"], (sampler, steps, most))
        for r in evc.best_rounds:
            mean = rec["rounds"][:r].mean(0)
            scores = _mean_metrics(mean, tgt)
            rows.append(
                {
                    "sampler": sampler,
                    "steps": steps,
                    "rounds": r,
                    "nfe": steps * r,
                    **scores,
                    "seconds_per_slice": seconds * r / most,
                }
            )
    best = max(rows, key=lambda row: row["psnr"])
    return {"rows": rows, "chosen": [best["sampler"], best["steps"], best["rounds"]]}


def best_sampling(profile: Profile, *, train_missing: bool = True) -> dict | None:
    """DiffCMR at its best on the selection slices (``EvidenceConfig.best_samplers`` and
    ``best_rounds``): each sampler and T run once with the most rounds, the mean of its first
    R rounds scored for each R (the first R rounds of a run are an R-round run); the best
    mean PSNR is ``chosen`` ``[sampler, T, R]``. Cached in
    ``runs/<profile>/evidence/best_sampling.json``; None for a profile that chooses none, or
    with ``train_missing=False`` when it is not (or its model is not) there yet."""
    from diffcmr_core.study.store.cache import cached_step, read_entry

    evc = profile.evidence
    if evc is None or not evc.best_samplers:
        return None
    path = paths_for(profile).layout.best_sampling
    extra = {"samplers": evc.best_samplers, "rounds": evc.best_rounds}
    # keyed by what it reads of the evaluation (not the tables' sampler, T and R: its choice)
    key = step_stamp(profile, ("diffcmr",), extra, evaluation=SCORING_FIELDS)
    if not train_missing:
        entry = read_entry(path, key)
        return None if entry is None else entry.get("result")
    task, acc = evc.factors[0]
    return cached_step(
        path,
        profile,
        lambda _trained: _best_rows(profile),
        uses=("diffcmr",),
        extra=extra,
        evaluation=SCORING_FIELDS,
        prepare=lambda: train_to_budget(profile, task, acc, "diffcmr"),
        name="DiffCMR's best sampling on the selection subjects",
    )


def tuned(profile: Profile, *, train_missing: bool = True) -> Profile:
    """``profile`` with each network at the learning rate its sweep chose (:func:`sweep_lr`)
    and, once DiffCMR's rate is chosen, the tables at DiffCMR's best sampling
    (:func:`best_sampling`); a profile without ``lr_factors`` as it is. Each choice made is
    recorded in its evidence settings (``lr_chosen``, ``sampling_chosen``), so that a profile
    tuned in part is completed by a later call. ``train_missing=False``: a choice not made yet
    is left out, with a line saying so."""
    evc = profile.evidence
    if evc is None or not evc.lr_factors:
        return profile
    out = profile
    to_sweep = [
        m
        for m in profile.methods
        if isinstance(profile.settings.get(m), NetworkSettings) and m not in evc.lr_chosen
    ]
    if train_missing:
        _sweep_side_by_side(profile, to_sweep)
    for method in to_sweep:
        sweep = sweep_lr(profile, method, train_missing=train_missing)
        if sweep is None:
            print(
                f"the learning rate of {method} in profile {profile.name} is not chosen yet "
                "(notebook 03 sweeps it): its configured rate is used"
            )
            continue
        out = with_lr(out, method, sweep["chosen"])
        chosen = (*out.evidence.lr_chosen, method)
        out = dataclasses.replace(out, evidence=dataclasses.replace(out.evidence, lr_chosen=chosen))
    if train_missing:
        _train_longer_side_by_side(out)
    return _with_best_sampling(out, train_missing)


def _train_longer_side_by_side(profile: Profile) -> None:
    """The chosen networks whose budget is longer than the sweep's (``sweep_iterations``):
    their seed-0 runs, each going on from its sweep run, trained side by side before anything
    reads them."""
    from diffcmr_core.study.methods.side_by_side import train_side_by_side

    evc = profile.evidence
    if evc.sweep_iterations is None:
        return
    task, acc = evc.factors[0]
    jobs = [
        (profile, task, acc, m)
        for m in evc.lr_chosen
        if profile.network(m).train.iterations != evc.sweep_iterations
    ]
    train_side_by_side(jobs, workers=evc.train_workers)


def _with_best_sampling(profile: Profile, train_missing: bool) -> Profile:
    """``profile`` with the tables at DiffCMR's best sampling once its rate is chosen (see
    :func:`tuned`)."""
    evc = profile.evidence
    if not evc.best_samplers or evc.sampling_chosen or "diffcmr" not in evc.lr_chosen:
        return profile
    best = best_sampling(profile, train_missing=train_missing)
    if best is None:
        print(
            f"DiffCMR's sampling of profile {profile.name} is not chosen yet (notebook 03 "
            "chooses it): the evaluation's own is used"
        )
        return profile
    sampler, steps, rounds = best["chosen"]
    ev = dataclasses.replace(profile.evaluation, sampler=sampler, steps=steps, rounds=rounds)
    evidence = dataclasses.replace(evc, sampling_chosen=True)
    return dataclasses.replace(profile, evaluation=ev, evidence=evidence)


def sample_at(profile, system, model, inp, ids, setting, *, progress=False, x0_hook_for=None):
    """DiffCMR's reconstruction of ``inp`` at ``setting`` ``(sampler, T, R)`` with the profile's
    batch, seed and sampling choices (each slice's noise seeded by its id in ``ids``), and the
    seconds it took per slice."""
    import time

    ev = profile.evaluation
    sampler, steps, rounds = setting
    t0 = time.perf_counter()
    rec = reconstruct(
        system,
        model,
        inp,
        steps=steps,
        rounds=rounds,
        batch=ev.batch,
        seed=ev.seed,
        sampler=sampler,
        ids=ids,
        progress=progress,
        x0_hook_for=x0_hook_for,
        **ev.sampling(),
    )
    return rec, (time.perf_counter() - t0) / len(inp)
