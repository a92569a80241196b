"""The study's steps, each idempotent (a finished step is reused unless forced): data, training,
evaluation (Tables 2-3), ablation (Table 4). The notebooks call these; ``run_study`` (the
``make study`` command) executes the notebooks in order with papermill."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.evaluate import evaluate, reconstruct_all
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.methods import METHOD_LABEL
from diffcmr_core.phantom import make_phantom
from diffcmr_core.preprocess import build_pairs, load_pairs, pairs_path
from diffcmr_core.profiles import Profile, paths_for
from diffcmr_core.tables import read_csv
from diffcmr_core.train import load_for_inference, train


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _stamp(profile: Profile) -> str:
    """Everything a cached result depends on: the profile's configuration."""
    import dataclasses

    return json.dumps(dataclasses.asdict(profile), sort_keys=True, default=list)


def _entry(path: Path, profile: Profile) -> dict | None:
    """The cache entry at ``path`` (result, stamp, seconds) if it was made with this profile's
    configuration, else None."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) and data.get("stamp") == _stamp(profile) else None


def _cached(path: Path, profile: Profile, force: bool):
    """A cached JSON result if it was made with this profile's configuration, else None."""
    entry = None if force else _entry(path, profile)
    return None if entry is None else entry["result"]


def _store(path: Path, profile: Profile, result, seconds: float) -> None:
    """Cache ``result`` with the profile's stamp and the ``seconds`` of compute it took (read back
    by the report, so that a re-run that reuses the result still says what it cost)."""
    write_text_atomic(path, json.dumps({"stamp": _stamp(profile), "seconds": round(seconds, 3),
                                        "result": result}, indent=1))


def compute_seconds(profile: Profile) -> dict[str, float]:
    """Compute time behind a profile's current results, whichever runs made them: training
    (from the models' loss logs, summed over resumed sessions) and the cached evaluation,
    ablation and fast-sampling steps. Steps cached for another configuration are left out."""
    runs = paths_for(profile).runs
    totals = {"training": 0.0, "evaluation": 0.0, "ablation": 0.0, "fast sampling": 0.0}
    for log in sorted((runs / "models").glob("*/loss.csv")):
        session_max, last = 0.0, 0.0
        for row in read_csv(log):
            sec = float(row.get("seconds") or 0.0)
            if sec < last:                       # the elapsed clock restarts when a run resumes
                totals["training"] += session_max
                session_max = 0.0
            session_max, last = max(session_max, sec), sec
        totals["training"] += session_max
    for key, pattern in (("evaluation", "eval/*/summary.json"), ("ablation", "ablation/*/ablation.json"),
                         ("fast sampling", "fast/*/comparison.json")):
        for cache in sorted(runs.glob(pattern)):
            entry = _entry(cache, profile)
            if entry is not None:
                totals[key] += float(entry.get("seconds", 0.0))
    return totals


# ----------------------------------------------------------------------------- data and training
def ensure_data(profile: Profile, *, progress: bool = True) -> Path:
    """The CMRxRecon tree (synthetic unless the real one is configured) and the paired slices."""
    paths = paths_for(profile)
    if paths.is_synthetic:
        make_phantom(paths.data, profile.phantom, progress=progress)
    for task in profile.tasks:
        build_pairs(paths.data, paths.pairs, task, profile.preprocess, progress=progress)
    return paths.pairs


def ensure_trained(profile: Profile, task: str, acc: int, method: str, *,
                   progress: bool = True) -> Path:
    """Train (or resume, or reuse) one model; returns its checkpoint."""
    paths = paths_for(profile)
    ensure_data(profile, progress=progress)
    return train(method, pairs_path(paths.pairs, task, acc), paths.model_dir(task, acc, method),
                 profile.train_config(method), profile.model_config(method), device=device(),
                 progress=progress)


def round_generators(seed: int, first_index: int, rounds: int,
                     device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per round for a batch starting at slice ``first_index``. Round r's
    generator does not depend on how many rounds are run, so the first R rounds of an 8-round
    run are exactly an R-round run."""
    return [torch.Generator(device).manual_seed(seed * 7919 + 104_729 * r + first_index)
            for r in range(rounds)]


def diffcmr_reconstruct(system, model, inputs: np.ndarray, *, steps: int, rounds: int, batch: int,
                        seed: int, sampler: str = "ddpm", progress: bool = False, x0_hook_for=None
                        ) -> dict[str, np.ndarray]:
    """Reconstruct ``inputs`` ``[N, S, S]``; returns ``mean``, ``std`` and ``rounds``
    ``[R, N, S, S]``. ``x0_hook_for(batch_input, first_index)`` optionally makes each batch's
    x0 hook (e.g. data consistency)."""
    from diffcmr_core.fast import inference_autocast

    dev = next(model.parameters()).device

    def recon(x: torch.Tensor, first: int) -> dict[str, torch.Tensor]:
        gens = round_generators(seed, first, rounds, dev)
        x = x.to(dev)
        hook = x0_hook_for(x, first) if x0_hook_for is not None else None
        with inference_autocast(dev):          # bf16 network on CUDA (the chain stays fp32)
            mean, std, all_rounds = system.reconstruct(model, x, steps=steps, rounds=rounds,
                                                       sampler=sampler, generator=gens, x0_hook=hook)
        return {"mean": mean, "std": std, "rounds": all_rounds}

    return reconstruct_all(recon, inputs, batch, progress=progress, desc=f"{sampler} T={steps} R={rounds}")


# ----------------------------------------------------------------------------- evaluation
def evaluate_factor(profile: Profile, task: str, acc: int, *, progress: bool = True,
                    force: bool = False) -> dict[str, dict[str, float]]:
    """RAW, U-Net, cGAN and DiffCMR on the validation subset of one task and factor.

    Results are cached in ``runs/<profile>/eval/<task>_accNN/summary.json``.
    """
    paths = paths_for(profile)
    out = paths.eval_dir(task, acc)
    summary_path = out / "summary.json"
    cached = _cached(summary_path, profile, force)
    if cached is not None:
        return cached
    ev = profile.evaluation
    ckpts = {m: ensure_trained(profile, task, acc, m, progress=progress) for m in profile.methods}
    tic = time.perf_counter()
    inp, tgt, meta = load_pairs(pairs_path(paths.pairs, task, acc), "val_subset", subset=ev.n_val)
    results = {"RAW": evaluate("RAW", inp, tgt, meta, out)}
    for method in profile.methods:
        system, model = load_for_inference(ckpts[method], device())
        if method == "diffcmr":
            rec = diffcmr_reconstruct(system, model, inp, steps=ev.steps, rounds=ev.rounds,
                                      batch=ev.batch, seed=ev.seed, progress=progress)
            results["DiffCMR"] = evaluate("DiffCMR", rec["mean"], tgt, meta, out,
                                          extra={"std": rec["std"], "round0": rec["rounds"][0]})
        else:
            rec = reconstruct_all(lambda x, _: {"mean": system.reconstruct(model, x.to(device()))[0]},
                                  inp, ev.batch)
            results[METHOD_LABEL[method]] = evaluate(METHOD_LABEL[method], rec["mean"], tgt, meta, out)
    _store(summary_path, profile, results, time.perf_counter() - tic)
    return results


def results_table(profile: Profile, task: str) -> list[dict[str, object]]:
    """Table 2 (cine) or 3 (mapping): ``method, acc, psnr, ssim, nmse`` (+ ``_std``)."""
    rows = []
    for acc in profile.accs:
        res = evaluate_factor(profile, task, acc, progress=False)
        for method in ("RAW", *(METHOD_LABEL[m] for m in profile.methods)):
            rows.append({"method": method, "acc": acc, **res[method]})
    return rows


# ----------------------------------------------------------------------------- ablation
def ablation(profile: Profile, task: str = "cine", acc: int = 4, *, progress: bool = True,
             force: bool = False) -> tuple[list[dict], list[dict]]:
    """Table 4: (a) steps T with R = 4, (b) rounds R with T = 1000 (the largest T).

    (b) comes from one run with max(R) rounds: with one generator per round, the first R rounds
    of it are exactly an R-round run, so no sampling is repeated.
    """
    paths = paths_for(profile)
    out = paths.runs / "ablation" / f"{task}_acc{acc:02d}"
    cache = out / "ablation.json"
    cached = _cached(cache, profile, force)
    if cached is not None:
        return cached["steps"], cached["rounds"]
    ev = profile.evaluation
    ckpt = ensure_trained(profile, task, acc, "diffcmr", progress=progress)
    tic = time.perf_counter()
    inp, tgt, meta = load_pairs(pairs_path(paths.pairs, task, acc), "val_subset", subset=ev.ablation_n_val)
    system, model = load_for_inference(ckpt, device())
    raw = evaluate("RAW", inp, tgt, meta, out)
    t_max, r_max = max(ev.ablation_steps), max(ev.ablation_rounds)
    r_fixed = min(ev.rounds, r_max)
    big = diffcmr_reconstruct(system, model, inp, steps=t_max, rounds=r_max, batch=ev.batch,
                              seed=ev.seed, progress=progress)["rounds"]
    rounds_rows = [{"rounds": "Raw", **raw}]
    for r in ev.ablation_rounds:
        rounds_rows.append({"rounds": r, **evaluate(f"rounds{r}", big[:r].mean(0), tgt, meta, out)})
    steps_rows = [{"steps": "Raw", **raw}]
    for t in ev.ablation_steps:
        if t == t_max:
            rec = big[:r_fixed].mean(0)
        else:
            rec = diffcmr_reconstruct(system, model, inp, steps=t, rounds=r_fixed, batch=ev.batch,
                                      seed=ev.seed, progress=progress)["mean"]
        steps_rows.append({"steps": t, **evaluate(f"steps{t}", rec, tgt, meta, out)})
    _store(cache, profile, {"steps": steps_rows, "rounds": rounds_rows}, time.perf_counter() - tic)
    return steps_rows, rounds_rows


def loss_history(profile: Profile, task: str, acc: int, method: str) -> list[dict[str, str]]:
    return read_csv(paths_for(profile).model_dir(task, acc, method) / "loss.csv")


def expected_table1(profile: Profile) -> list[dict[str, object]]:
    """Table 1 predicted from the phantom's configuration alone (an independent check of the
    preprocessing on synthetic data): slices x frames per file, per case, per coil type."""
    from diffcmr_core.phantom import T1_INVERSION_TIMES, T2_ECHO_TIMES, case_name
    from diffcmr_core.preprocess import TASK_LABEL, split_cases

    ph = profile.phantom
    coils = len(set(ph.coils) & set(profile.preprocess.coils))
    per_case = {"cine": ph.cine_frames * (ph.sax_slices + ph.lax_slices),
                "mapping": (len(T1_INVERSION_TIMES) + len(T2_ECHO_TIMES)) * ph.mapping_slices}
    train_cases, val_cases = split_cases([case_name(i) for i in range(ph.n_cases)],
                                         profile.preprocess.val_fraction)
    rows = []
    for task in profile.tasks:
        row: dict[str, object] = {"task": f"{TASK_LABEL[task]} ({task})"}
        for acc in profile.accs:
            row[f"AccFactor{acc:02d} Train"] = per_case[task] * coils * len(train_cases)
            row[f"AccFactor{acc:02d} Valid"] = per_case[task] * coils * len(val_cases)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the whole study
def notebooks_dir() -> Path:
    """The study's notebooks, beside the package in the checkout."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def run_study(profile_name: str = "quick", *, force: bool = False, only: list[str] | None = None) -> Path:
    """Execute the notebooks in order with papermill for a profile; write REPORT.md.

    Executed copies go to ``runs/<profile>/notebooks/``. A notebook whose executed copy is newer
    than its source and than the package is skipped (its steps are cached anyway) unless
    ``force``; ``force`` also makes each notebook recompute its own step. A failing notebook
    stops the run with the notebook and the cell named.
    """
    import papermill as pm

    from diffcmr_core.profiles import get_profile
    from diffcmr_core.report import write_report

    profile = get_profile(profile_name)
    paths = paths_for(profile)
    run_dir = paths.runs / "notebooks"
    run_dir.mkdir(parents=True, exist_ok=True)
    package_mtime = max(p.stat().st_mtime for p in Path(__file__).parent.rglob("*.py"))
    start, ran = time.perf_counter(), []
    for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        if only and nb.stem not in only:
            continue
        out = run_dir / nb.name
        if not force and out.is_file() and out.stat().st_mtime > max(nb.stat().st_mtime, package_mtime):
            print(f"[study] {nb.name}: up to date, skipped")
            continue
        print(f"[study] {nb.name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters={"profile": profile.name, "force": force,
                                                               "progress": False},
                                cwd=str(nb.parent), progress_bar=False, kernel_name="python3")
        except pm.PapermillExecutionError as err:
            raise SystemExit(f"[study] {nb.name} failed in cell {err.exec_count}: {err.ename}: "
                             f"{err.evalue}\n(executed copy: {out})") from None
        ran.append(nb.stem)
        print(f"[study] {nb.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    report = write_report(profile, time.perf_counter() - start, ran)
    print(f"[study] report: {report}")
    return report


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the DiffCMR study (all notebooks) for a profile.")
    parser.add_argument("--profile", default="quick", help="quick | gpu | paper | smoke")
    parser.add_argument("--force", action="store_true", help="recompute every step")
    parser.add_argument("--only", nargs="*", help="notebook names to run (e.g. 04_evaluation)")
    args = parser.parse_args()
    run_study(args.profile, force=args.force, only=args.only)


if __name__ == "__main__":
    main()
