"""Training a network until its validation PSNR stops improving (the evidence study's rule,
``EvidenceConfig``): chunks of ``snapshot_every`` steps, each EMA snapshot scored on the
validation slices, the record (``validation.json``) beside the checkpoint, resumable. Below the
study's steps and registry, so that the registry's networks
(:class:`~diffcmr_core.study.methods.registry.Network`) can train this way and the evidence
study (:mod:`~diffcmr_core.study.experiments.evidence`) can read the records."""

from __future__ import annotations

import dataclasses
import json
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
from diffcmr_core.method.systems import SYSTEMS
from diffcmr_core.method.train import train
from diffcmr_core.study.settings.profiles import Profile, paths_for, step_stamp
from diffcmr_core.study.store.cache import read_stamped
from diffcmr_core.study.store.validation import val_pairs

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


def converged(rows: list[dict], tolerance_db: float, min_snapshots: int) -> bool:
    """Whether a validation curve (rows with ``step`` and ``psnr``, any order) has stopped
    improving: at least ``min_snapshots`` points, and the best PSNR of the last quarter of the
    steps exceeds the best before it by less than ``tolerance_db``."""
    rows = sorted(rows, key=lambda r: r["step"])
    if len(rows) < max(2, min_snapshots):
        return False
    last = rows[-1]["step"]
    early = [r["psnr"] for r in rows if r["step"] <= 0.75 * last]
    late = [r["psnr"] for r in rows if r["step"] > 0.75 * last]
    return bool(early) and max(late) - max(early) < tolerance_db


def read_record(out: Path, profile: Profile, method: str) -> dict:
    """The run folder's validation record if it belongs to this profile's configuration, else a
    new one. A record of this configuration that is not well formed (:func:`record_problem`) is
    named, set aside and rebuilt: training resumes from the snapshots already on disk, which
    are scored again. Its key: what ``method``'s training reads
    (:func:`~diffcmr_core.study.settings.profiles.step_stamp`)."""
    key = step_stamp(profile, (method,))
    data = read_stamped(out / RECORD, key, record_problem, "validation record")
    return data if data is not None else {"stamp": key, "rows": [], "stopped": None}


def record_problem(record: dict) -> str | None:
    """Why a validation record cannot be used (None: it can): ``rows`` must be a list of
    objects, each with a whole ``step`` > 0 (each step once) and finite ``psnr``, ``ssim``,
    ``nmse`` and ``cpu_seconds``; ``stopped`` None or an object with the last row's ``step``
    and a true or false ``converged``."""
    rows = record.get("rows")
    if not isinstance(rows, list):
        return f"rows is {type(rows).__name__}, not a list"
    steps = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {i} is not an object"
        step = row.get("step")
        if type(step) is not int or step <= 0:
            return f"row {i}: step is {step!r}, not a whole number above 0"
        for key in ("cpu_seconds", *METRICS):
            value = row.get(key)
            if type(value) not in (int, float) or not np.isfinite(value):
                return f"row {i}: {key} is {value!r}, not a number"
        steps.append(step)
    if len(set(steps)) != len(steps):
        return "a step is recorded twice"
    stopped = record.get("stopped")
    if stopped is None:
        return None
    if not isinstance(stopped, dict):
        return f"stopped is {stopped!r}, not null or an object"
    if type(stopped.get("converged")) is not bool:
        return f"stopped.converged is {stopped.get('converged')!r}, not true or false"
    if not steps or stopped.get("step") != max(steps):
        return f"stopped.step is {stopped.get('step')!r}, not the last recorded step"
    return None


def stopped_step(profile: Profile, task: str, acc: int, method: str) -> int | None:
    """The step at which the evidence study stopped this network's training (None: not yet)."""
    stopped = read_record(paths_for(profile).model_dir(task, acc, method), profile, method)[
        "stopped"
    ]
    return None if stopped is None else int(stopped["step"])


def train_until_converged(
    profile: Profile, task: str, acc: int, method: str, *, progress: bool = True
) -> Path:
    """Train ``method`` for ``task`` at ``acc`` chunk by chunk until its validation PSNR stops
    improving (see the module); returns the final checkpoint. Resumable: the record
    (``validation.json``) and the checkpoint are written after every chunk; a stopped run is
    returned as is."""

    evc, settings = profile.evidence, profile.network(method)
    cfg = settings.train
    if cfg.lr_schedule != "constant" or not cfg.snapshot_every:
        raise ValueError(
            f"profile {profile.name}: training to convergence needs a constant "
            f"learning rate and snapshot_every for {method} (got {cfg.lr_schedule!r}, "
            f"{cfg.snapshot_every})"
        )
    out = paths_for(profile).model_dir(task, acc, method)
    pairs = training_pairs(profile, task, acc)
    record = read_record(out, profile, method)
    if record["stopped"] is not None and (out / "last.pt").is_file():
        return out / "last.pt"
    inp, tgt, meta = val_pairs(profile, task, acc, evc.n_val)
    rows = record["rows"]
    while True:
        step = min(cfg.iterations, (max((r["step"] for r in rows), default=0)) + cfg.snapshot_every)
        ckpt = train(
            method,
            pairs,
            out,
            dataclasses.replace(cfg, iterations=step),
            settings.model,
            device=default_device(),
            progress=progress,
        )
        snap = snapshot_path(out, step)
        cpu = float(load_checkpoint(snap).get("cpu_seconds", 0.0))
        setting = evc.validation_sampler if SYSTEMS[method].sampling else None
        rows.append(
            {
                "step": step,
                "cpu_seconds": cpu,
                **score_model(profile, snap, method, inp, tgt, setting, ids=meta["index"]),
            }
        )
        done = converged(rows, evc.tolerance_db, evc.min_snapshots)
        if done or step >= cfg.iterations:
            record["stopped"] = {"step": step, "converged": done}
        write_text_atomic(out / RECORD, json.dumps(record, indent=1))
        if progress:
            _say(f"{method} {task} {acc}x", step, rows[-1]["psnr"], record["stopped"])
        if record["stopped"] is not None:
            return ckpt


def _say(what: str, step: int, psnr: float, stopped: dict | None) -> None:
    """One line per chunk of :func:`train_until_converged`."""
    end = ""
    if stopped:
        end = " -> " + (
            "converged" if stopped["converged"] else "stopped at the cap, not converged"
        )
    print(f"[{what}] step {step}: validation PSNR {psnr:.2f} dB{end}", flush=True)


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
