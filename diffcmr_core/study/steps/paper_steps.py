"""The study's steps, each idempotent (a finished step is reused unless forced): data, training,
evaluation (Tables 2-3), ablation (Table 4), fast sampling (Table 5). The notebooks call these;
:mod:`~diffcmr_core.study.lab.runner` executes the notebooks in order with papermill."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.data import acquired
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import effective_acceleration, fft2c
from diffcmr_core.data.pairs import (
    build_pairs,
    pair_counts,
    pairs_path,
    table1,
)
from diffcmr_core.data.phantom import expected_pair_counts, make_phantom
from diffcmr_core.errors import CheckpointError
from diffcmr_core.method.checkpoints import default_device, load_for_inference
from diffcmr_core.method.classical import acquisition_consistency
from diffcmr_core.method.evaluate import evaluate, read_recon
from diffcmr_core.method.inference import (
    coil_consistency_hook_for,
    mask_lines_hook_for,
    reconstruct,
    record_chain,
    visited_near,
)
from diffcmr_core.method.metrics import METRICS
from diffcmr_core.method.samplers import SAMPLER_LABEL
from diffcmr_core.method.schedule import q_sample
from diffcmr_core.method.systems import to_model_space
from diffcmr_core.method.train import train
from diffcmr_core.study import methods
from diffcmr_core.study.methods.convergence import sample_at
from diffcmr_core.study.settings.profiles import Profile, paths_for
from diffcmr_core.study.steps.submit import local_split_scores
from diffcmr_core.study.store import shard
from diffcmr_core.study.store.cache import (
    STEP_USES,
    cached_step,
    keyed_rows_problem,
    rows_problem,
    step_lock,
)
from diffcmr_core.study.store.validation import crop_preprocess, selection_pairs, val_pairs
from diffcmr_core.tables import read_csv


# ----------------------------------------------------------------------------- data and training
def ensure_data(profile: Profile, *, progress: bool = True, force: bool = False) -> Path:
    """The CMRxRecon tree (synthetic unless the profile reads the real one) and the paired
    slices."""
    paths = paths_for(profile)
    if paths.is_synthetic:
        make_phantom(paths.data, profile.phantom, progress=progress)
    for task in profile.tasks:
        build_pairs(
            paths.data,
            paths.pairs,
            task,
            profile.preprocess,
            accs=profile.accs,
            progress=progress,
            force=force,
        )
    return paths.pairs


def ensure_trained(
    profile: Profile,
    task: str,
    acc: int,
    method: str,
    *,
    progress: bool = True,
    force: bool = False,
) -> Path | None:
    """Fit (train, resume or reuse) ``method``'s model that reconstructs ``task`` at ``acc``
    (:meth:`~diffcmr_core.study.methods.Method.fit`); returns its artefact (a checkpoint, a
    choice of parameters; ``None`` for a method fitted on nothing). With the profile's
    ``shared_models`` it is the task's one model for every factor, fitted on the training pairs of
    all the profile's factors. ``force`` fits again from scratch (the old files are kept aside)."""
    ensure_data(profile, progress=progress)
    entry = methods.get(method)
    artefact = entry.artefact(profile, task, acc)
    if artefact is None:
        return entry.fit(profile, task, acc, progress=progress)
    with step_lock(artefact, shard.current()):  # a second command waits, then reuses it
        if force and artefact.is_file():
            out = artefact.parent
            aside = out / f"forced-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.mkdir(parents=True)
            for name in (artefact.name, "loss.csv"):
                if (out / name).exists():
                    (out / name).replace(aside / name)
        return entry.fit(profile, task, acc, progress=progress)


def model_list(
    profile: Profile, tasks=None, accs=None, methods=None
) -> list[tuple[str, int, str, str]]:
    """The distinct models behind ``tasks x accs x methods`` (default: the profile's), as
    ``(task, acc, method, label)``: one per task, factor and method, or, with the profile's
    ``shared_models``, one per task and method (``acc`` is then the first factor; the label says
    "all factors")."""
    tasks, accs, methods = tasks or profile.tasks, accs or profile.accs, methods or profile.methods
    out: dict[Path, tuple[str, int, str, str]] = {}
    paths = paths_for(profile)
    for method in methods:
        for task in tasks:
            for acc in accs:
                where = "all factors" if profile.shared_models else f"{acc}x"
                out.setdefault(
                    paths.model_dir(task, acc, method),
                    (task, acc, method, f"{method} {task} {where}"),
                )
    return list(out.values())


def loss_history(profile: Profile, task: str, acc: int, method: str) -> list[dict[str, str]]:
    """The training log (``loss.csv``) of a model, as rows."""
    return read_csv(paths_for(profile).model_dir(task, acc, method) / "loss.csv")


def table1_rows(profile: Profile) -> list[dict[str, object]]:
    """Table 1 of this profile's pairs files."""
    return table1(pair_counts(paths_for(profile).pairs, profile.tasks, profile.accs))


def expected_table1(profile: Profile) -> list[dict[str, object]]:
    """Table 1 predicted from the phantom's configuration alone (an independent check)."""
    return table1(
        expected_pair_counts(
            profile.phantom,
            profile.preprocess.coils,
            profile.preprocess.val_fraction,
            profile.tasks,
            profile.accs,
        )
    )


REAL_LINES, REAL_ACS = 204, 24  # a typical real short-axis file: ~204 ky lines, 24 ACS


def sampling_fractions(profile: Profile) -> list[dict[str, object]]:
    """What each factor really samples: per factor, the fraction of ky lines kept by the mask
    files of this profile's data (TrainingSet, multi-coil; mean and range over files) and the
    effective acceleration (lines / lines kept), beside a real file's (204 lines, 24 central).
    The central lines make the effective factor smaller than the nominal one."""
    data = paths_for(profile).data
    rows = []
    for acc in profile.accs:
        fractions = []
        for path in sorted(
            data.glob(f"MultiCoil/*/TrainingSet/{io.split_folder(acc)}/*/*_mask.mat")
        ):
            fractions.append(float(io.load_mask(path).any(axis=1).mean()))
        if not fractions:
            continue
        f = np.array(fractions)
        rows.append(
            {
                "acc": acc,
                "files": len(f),
                "lines sampled": round(float(f.mean()), 3),
                "range": f"{f.min():.3f}-{f.max():.3f}",
                "effective acceleration": round(1 / float(f.mean()), 2),
                "real data (204 lines, 24 ACS)": round(
                    effective_acceleration(REAL_LINES, acc, REAL_ACS), 2
                ),
            }
        )
    return rows


# ----------------------------------------------------------------------------- evaluation
def val_batch(
    profile: Profile,
    task: str,
    acc: int,
    n: int | None,
    *,
    crop_dir: Path | None = None,
    selection: bool = False,
) -> tuple[methods.Batch, np.ndarray, dict]:
    """The first ``n`` validation slices (``selection``: of the selection subjects,
    :func:`~diffcmr_core.study.store.validation.selection_pairs`) as a
    :class:`~diffcmr_core.study.methods.Batch` (their acquisitions read on demand), with their
    targets and metadata."""
    if selection and crop_dir is not None:
        raise ValueError("the selection subjects have no crop pairs")
    inp, tgt, meta = (
        selection_pairs(profile, task, acc, n)
        if selection
        else val_pairs(profile, task, acc, n, crop_dir=crop_dir)
    )
    pre = profile.preprocess if crop_dir is None else crop_preprocess(profile)
    data = paths_for(profile).data
    batch = methods.Batch(
        inp,
        meta["scale"].astype(np.float32),
        pre,
        lambda: acquired.of_pairs(data, task, acc, meta),
        meta["index"],
    )
    return batch, tgt, meta


def _fit_methods(profile, factors, progress):
    """Fit every method of ``profile`` for each ``(task, acc)`` of ``factors``; their artefacts."""
    return [
        ensure_trained(profile, task, acc, m, progress=progress)
        for task, acc in factors
        for m in profile.methods
    ]


def _evaluation_results(profile, task, acc, progress):
    """RAW and every method scored on the validation subset (see :func:`evaluate_factor`)."""
    from diffcmr_core.study.steps.heart import heart_boxes

    paths = paths_for(profile)
    out = paths.eval_dir(task, acc)
    ranks = shard.current()
    batch, tgt, meta = val_batch(profile, task, acc, profile.evaluation.n_val)
    boxes = heart_boxes(paths.data, meta, profile.preprocess, profile.phantom.pixel_mm)
    results = {}
    for name in ("raw", *profile.methods):
        entry = methods.get(name)
        rec = sharded_recon(
            profile, task, acc, name, batch, out / "parts", ranks, progress=progress
        )
        extra = {"std": rec["std"], "round0": rec["rounds"][0]} if entry.sampling else None
        if entry.sampling and profile.evidence is not None:  # every round: the ensemble law
            extra["rounds"] = rec["rounds"]
        results[entry.label] = evaluate(
            entry.label, rec["mean"], tgt, meta, out, extra=extra, write=ranks.main, boxes=boxes
        )
    _drop_parts(out / "parts", ranks)
    return results


def evaluate_factor(
    profile: Profile,
    task: str,
    acc: int,
    *,
    progress: bool = True,
    force: bool = False,
    quiet: bool = False,
) -> dict[str, dict[str, float]]:
    """RAW and every method of the profile on the validation subset of one task and factor.

    Cached in ``runs/<profile>/eval/<task>_accNN/summary.json``; the reconstructions are in the
    same folder (:func:`figure3_images`); a sampling method's std over rounds and first round
    are stored beside its mean. Under ``torchrun`` the slices are split over the ranks in
    chunks of the evaluation's batch (:func:`~diffcmr_core.study.store.shard.map_chunks`, each chunk
    kept in ``parts/`` until the step is done, so an interrupted evaluation resumes).
    """
    return cached_step(
        paths_for(profile).eval_dir(task, acc) / "summary.json",
        profile,
        lambda _fitted: _evaluation_results(profile, task, acc, progress),
        force=force,
        prepare=lambda: _fit_methods(profile, [(task, acc)], progress),
        name=f"evaluation {task} {acc}x",
        quiet=quiet,
        check=lambda result: summary_problem(
            result,
            [methods.label(m) for m in ("raw", *profile.methods)],
            heart=paths_for(profile).is_synthetic,
        ),
    )


def summary_problem(result: object, labels: list[str], heart: bool = False) -> str | None:
    """Why a cached evaluation summary is not one of ``labels``' scores (None: it is): each
    label's mean and standard deviation of every metric, finite numbers; with ``heart`` (data
    with label truth) the heart region's means too."""
    if not isinstance(result, dict):
        return f"the summary is {type(result).__name__}, not an object"
    for lab in labels:
        scores = result.get(lab)
        if not isinstance(scores, dict):
            return f"no scores of {lab}"
        keys = (*METRICS, *(f"{m}_std" for m in METRICS))
        for key in keys + (tuple(f"heart_{m}" for m in METRICS) if heart else ()):
            value = scores.get(key)
            if type(value) not in (int, float) or not np.isfinite(value):
                return f"{lab}'s {key} is {value!r}, not a number"
    return None


def sharded_recon(
    profile: Profile,
    task: str,
    acc: int,
    name: str,
    batch: methods.Batch,
    parts: Path,
    ranks: shard.Ranks,
    *,
    progress: bool = False,
) -> methods.Reconstruction:
    """``name``'s reconstruction of ``batch``, split over ``ranks`` in chunks of the evaluation's
    batch, each chunk saved under ``parts/<name>-<key>`` (the key: the method's
    :func:`~diffcmr_core.study.methods.recipe`, the slices' ids) and reused by a rerun. A
    method that reconstructs from the acquisitions takes the whole batch as one chunk (an
    acquisition holds all the frames of a slice; see
    :meth:`~diffcmr_core.study.methods.Batch.subset`)."""
    import hashlib

    run = methods.get(name).reconstructor(
        profile, task, acc, device=shard.device_for(ranks), progress=progress
    )
    key = hashlib.sha256(
        (methods.recipe(profile, task, acc, name) + batch.slice_ids.tobytes().hex()).encode()
    ).hexdigest()[:16]
    entry = methods.get(name)
    return shard.map_chunks(
        len(batch.inputs),
        len(batch.inputs) if entry.reads_acquisition else profile.evaluation.batch,
        lambda lo, hi: run(batch.subset(lo, hi)),
        parts / f"{name}-{key}",
        ranks=ranks,
        progress=progress and ranks.world > 1,
        desc=f"{methods.label(name)} chunks (rank {ranks.rank})",
        image_shape=batch.inputs.shape[-2:],
    )


def _drop_parts(parts: Path, ranks: shard.Ranks) -> None:
    """Remove a finished step's chunks, once every rank has read them."""
    import shutil

    ranks.barrier()
    if ranks.main:
        shutil.rmtree(parts, ignore_errors=True)


def results_table(profile: Profile, task: str) -> list[dict[str, object]]:
    """Table 2 (cine) or 3 (mapping): ``method, acc, psnr, ssim, nmse`` (+ ``_std``)."""
    rows = []
    for acc in profile.accs:
        res = evaluate_factor(profile, task, acc, progress=False, quiet=True)
        for name in ("raw", *profile.methods):
            rows.append({"method": methods.label(name), "acc": acc, **res[methods.label(name)]})
    return rows


def paired_table(
    profile: Profile, task: str, reference="diffcmr", metric="psnr", level=0.95
) -> list[dict[str, object]]:
    """Every method against ``reference`` on the same validation slices (the paper's protocol):
    per factor, the mean per-slice difference ``method - reference`` of ``metric``, its standard
    deviation over slices, and the ``level`` confidence interval of the mean (Student's t over
    the slices: the slice-to-slice spread; the seed spread is another, see ``seeds.md``);
    ``beyond`` says whether the interval excludes 0. From the per-slice tables of
    :func:`evaluate_factor` (``<label>_slices.csv``)."""
    from scipy import stats

    ref_label = methods.label(reference)
    rows = []
    for acc in profile.accs:
        evaluate_factor(profile, task, acc, progress=False, quiet=True)
        out = paths_for(profile).eval_dir(task, acc)
        base = {r["index"]: float(r[metric]) for r in read_csv(out / f"{ref_label}_slices.csv")}
        for name in ("raw", *profile.methods):
            if name == reference:
                continue
            lab = methods.label(name)
            diffs = np.array(
                [float(r[metric]) - base[r["index"]] for r in read_csv(out / f"{lab}_slices.csv")]
            )
            n, mean = len(diffs), float(diffs.mean())
            sd = float(diffs.std(ddof=1)) if n > 1 else float("nan")
            half = (
                float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
                if n > 1
                else float("nan")
            )
            rows.append(
                {
                    "task": task,
                    "acc": acc,
                    "method": lab,
                    "reference": ref_label,
                    f"d_{metric}": mean,
                    "sd": sd,
                    "slices": n,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "beyond": bool(n > 1 and (mean - half > 0 or mean + half < 0)),
                }
            )
    return rows


def figure3_images(
    profile: Profile, task: str, acc: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Figure 3's reconstructions of the evaluated slices (RAW and every method; a sampling
    method with one round and with R rounds), their ground truth ``[N, S, S]`` and the heart's
    box in each ``[N, 4]`` (:func:`~diffcmr_core.study.steps.heart.heart_boxes`; ``-1`` without
    label truth)."""
    from diffcmr_core.study.steps.heart import heart_boxes

    paths = paths_for(profile)
    out, rounds = paths.eval_dir(task, acc), profile.evaluation.rounds
    _, tgt, meta = val_pairs(profile, task, acc, profile.evaluation.n_val)
    boxes = heart_boxes(paths.data, meta, profile.preprocess, profile.phantom.pixel_mm)
    recs = {"raw": read_recon(out, "RAW")}
    for name in profile.methods:
        lab = methods.label(name)
        rec = {"mean": read_recon(out, lab)}
        if methods.get(name).sampling:
            rec["rounds"] = read_recon(out, lab, "round0")[None]
        recs.update(methods.figure_recons(name, rec, rounds))
    return recs, tgt, boxes


# ----------------------------------------------------------------------------- ablation
def _sampled_rounds(system, model, inp, ids, steps, rounds, profile, parts, ranks, progress):
    """Every round ``[R, N, S, S]`` of DiffCMR at ``steps`` x ``rounds`` on ``inp``, split over
    ``ranks`` in chunks of the evaluation's batch kept in ``parts``."""
    ev = profile.evaluation

    def work(lo: int, hi: int) -> dict[str, np.ndarray]:
        rec = reconstruct(
            system,
            model,
            inp[lo:hi],
            steps=steps,
            rounds=rounds,
            batch=ev.batch,
            seed=ev.seed,
            ids=ids[lo:hi],
            progress=progress,
            **ev.sampling(),
        )
        return {"rounds": rec["rounds"]}

    return shard.map_chunks(
        len(inp), ev.batch, work, parts, ranks=ranks, image_shape=inp.shape[-2:]
    )["rounds"]


def _ablation_rows(profile, task, acc, ckpt, progress):
    """Table 4's rows (see :func:`ablation`) from the trained model ``ckpt``."""
    out = paths_for(profile).layout.step("ablation", task, acc)
    ev = profile.evaluation
    ranks = shard.current()
    inp, tgt, meta = val_pairs(profile, task, acc, ev.ablation_n_val)
    system, model = load_for_inference(ckpt, shard.device_for(ranks), ev.weights)
    key = methods.recipe(profile, task, acc, "diffcmr")[:16]

    def rounds_of(steps: int, rounds: int) -> np.ndarray:
        parts = out / "parts" / f"T{steps}R{rounds}-{key}"
        return _sampled_rounds(
            system, model, inp, meta["index"], steps, rounds, profile, parts, ranks, progress
        )

    def score(name: str, rec: np.ndarray) -> dict[str, float]:
        return evaluate(name, rec, tgt, meta, out, write=ranks.main)

    raw = score("RAW", inp)
    t_max, r_max = max(ev.ablation_steps), max(ev.ablation_rounds)
    r_fixed = min(ev.rounds, r_max)
    big = rounds_of(t_max, r_max)
    rounds_rows = [{"rounds": "Raw", **raw}]
    for r in ev.ablation_rounds:
        rounds_rows.append({"rounds": r, **score(f"rounds{r}", big[:r].mean(0))})
    steps_rows = [{"steps": "Raw", **raw}]
    for t in ev.ablation_steps:
        rec = big[:r_fixed] if t == t_max else rounds_of(t, r_fixed)
        steps_rows.append({"steps": t, **score(f"steps{t}", rec.mean(0))})
    _drop_parts(out / "parts", ranks)
    return {"steps": steps_rows, "rounds": rounds_rows}


def ablation(
    profile: Profile, task="cine", acc=4, *, progress=True, force=False
) -> tuple[list[dict], list[dict]]:
    """Table 4: (a) steps T with R = 4, (b) rounds R with T = 1000 (the largest T).

    (b) comes from one run with max(R) rounds: with one generator per round, the first R rounds
    of it are exactly an R-round run, so no sampling is repeated. Under ``torchrun`` each run's
    slices are split over the ranks (as in :func:`evaluate_factor`).
    """
    result = _model_step(profile, ("ablation", task, acc), _ablation_rows, progress, force)
    return result["steps"], result["rounds"]


# the steps on one fitted model: each one's name in messages and the check of its cached result
_MODEL_STEPS = {
    "ablation": ("ablation", lambda r: keyed_rows_problem(r, "the ablation", ("steps", "rounds"))),
    "fast sampling": ("fast sampling", lambda r: rows_problem(r, "the samplers' rows")),
    "public": ("public-code choices", lambda r: rows_problem(r, "the public code's choices")),
}


def _model_step(profile, what, rows, progress, force, prepare=None):
    """A cached step on one fitted model: ``what`` = (the step's kind, task, factor), its result
    ``rows(profile, task, acc, model, progress)`` with the model ``prepare()`` fits (default:
    DiffCMR's for the task and factor), checked as :data:`_MODEL_STEPS` says."""
    kind, task, acc = what
    name, check = _MODEL_STEPS[kind]

    def fit():
        if prepare is not None:
            return prepare()
        return ensure_trained(profile, task, acc, "diffcmr", progress=progress)

    return cached_step(
        paths_for(profile).layout.cache(kind, task, acc),
        profile,
        lambda ckpt: rows(profile, task, acc, ckpt, progress),
        uses=STEP_USES[kind],
        force=force,
        name=name,
        prepare=fit,
        check=check,
    )


# ----------------------------------------------------------------------------- fast sampling
DC_VARIANTS = ("none", "magnitude", "coil")
DC_LABEL = {"none": "", "magnitude": " + DC (magnitude)", "coil": " + DC (coil data)"}


def _crop_model(profile, task, acc, progress):
    """The DiffCMR trained on the crop pairs of :func:`sampler_comparison` (built first)."""
    paths = paths_for(profile)
    crop_dir = paths.pairs.parent / f"{profile.name}_crop"
    ensure_data(profile, progress=progress)
    build_pairs(
        paths.data, crop_dir, task, crop_preprocess(profile), accs=(acc,), progress=progress
    )
    return train(
        "diffcmr",
        pairs_path(crop_dir, task, acc),
        paths.layout.crop_model(task, acc),
        profile.fast_train_config(),
        profile.network("diffcmr").model,
        device=default_device(),
        progress=progress,
    )


def _fast_rows(profile, task, acc, ckpt, progress):
    """Table 5's rows (see :func:`sampler_comparison`) from the crop-pairs model ``ckpt``."""

    paths, ev = paths_for(profile), profile.evaluation
    out = paths.layout.step("fast sampling", task, acc)
    crop_dir = paths.pairs.parent / f"{profile.name}_crop"
    system, model = load_for_inference(ckpt, default_device(), ev.weights)
    batch, tgt, meta = val_batch(profile, task, acc, ev.ablation_n_val, crop_dir=crop_dir)
    inp, vr = batch.inputs, system.cfg.value_range
    operator = acquisition_consistency(batch.acquired, len(inp), inp.shape[-1], batch.scale)
    blank = {"sampler": "-", "steps": 0, "rounds": 0, "nfe": 0, "dc": "none"}
    rows = [
        {"label": "RAW", **blank, "seconds_per_slice": 0.0, **evaluate("RAW", inp, tgt, meta, out)}
    ]
    for k, (sampler, steps, rounds) in enumerate(ev.fast_settings):
        hooks = {
            "none": None,
            "magnitude": mask_lines_hook_for(meta["mask_lines"], rounds, vr),
            "coil": coil_consistency_hook_for(operator, rounds, vr),
        }
        name = "paper protocol" if k == 0 else SAMPLER_LABEL[sampler]
        for dc in DC_VARIANTS:
            rec, seconds = sample_at(
                profile,
                system,
                model,
                inp,
                batch.slice_ids,
                (sampler, steps, rounds),
                progress=progress,
                x0_hook_for=hooks[dc],
            )
            mean = rec["mean"]
            rows.append(
                {
                    "label": f"{name} T={steps} R={rounds}{DC_LABEL[dc]}",
                    "sampler": sampler,
                    "steps": steps,
                    "rounds": rounds,
                    "reference": k == 0 and dc == "none",
                    "nfe": steps * rounds,
                    "dc": dc,
                    "seconds_per_slice": seconds,
                    **evaluate(_fast_name(sampler, steps, rounds, dc), mean, tgt, meta, out),
                }
            )
    return rows


def sampler_comparison(
    profile: Profile, task="cine", acc=4, *, progress=True, force=False
) -> list[dict]:
    """Paper protocol against DDIM and DPM-Solver++, each without data consistency, with the
    magnitude images' consistency and with consistency on the acquired coil data, on one model and
    one set of validation slices: PSNR/SSIM/NMSE, network evaluations (T x R) and seconds per
    slice.

    The first of the profile's ``fast_settings`` is the paper protocol (Alg. 2, T = 1000, R = 4)
    and its row without DC the reference; "DDPM" rows are Alg. 2 on a shorter respaced chain.
    ``dc``: ``"none"``; ``"magnitude"``, every step's x0 prediction takes the acquired lines of
    the zero-filled magnitude image's k-space
    (:func:`~diffcmr_core.method.inference.data_consistency_hook`, which is not the
    acquisition); ``"coil"``, every x0 prediction is made consistent with the measured
    multi-coil k-space (:class:`~diffcmr_core.data.kspace.CoilConsistency`: ESPIRiT maps, the
    low-resolution phase, the measured lines, RSS). Data consistency needs images whose k-space
    grid matches the mask, so this comparison uses pairs made with ``crop=True`` (the k-space
    centre: the whole field of view at low resolution, no ``roi``) and a DiffCMR trained on them
    (same profile otherwise). The reconstructions are kept for :func:`kspace_errors`.
    """
    crop = lambda: _crop_model(profile, task, acc, progress)  # noqa: E731 (the model it needs)
    return _model_step(profile, ("fast sampling", task, acc), _fast_rows, progress, force, crop)


def _fast_name(sampler: str, steps: int, rounds: int, dc: str) -> str:
    return f"{sampler}{steps}r{rounds}" + ("" if dc == "none" else f"dc-{dc}")


def kspace_errors(
    profile: Profile, task: str = "cine", acc: int = 4, slice_index: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """For one slice of :func:`sampler_comparison`, at the paper protocol's setting: the k-space
    error ``|F(recon) - F(target)|`` of each DC variant (``{variant: (S, S)}``, on the magnitude
    images' k-space) and the slice's acquired ky lines ``(S,)``."""

    paths = paths_for(profile)
    out = paths.layout.step("fast sampling", task, acc)
    _, tgt, meta = val_pairs(
        profile,
        task,
        acc,
        profile.evaluation.ablation_n_val,
        crop_dir=paths.pairs.parent / f"{profile.name}_crop",
    )
    sampler, steps, rounds = profile.evaluation.fast_settings[0]
    truth = fft2c(tgt[slice_index].astype(np.complex64))
    errors = {
        dc: np.abs(
            fft2c(
                read_recon(out, _fast_name(sampler, steps, rounds, dc))[slice_index].astype(
                    np.complex64
                )
            )
            - truth
        )
        for dc in DC_VARIANTS
    }
    return errors, meta["mask_lines"][slice_index]


# ----------------------------------------------------------------------------- Figure 1
def forward_and_backward(
    profile: Profile,
    task: str,
    acc: int,
    slice_index: int,
    *,
    show_t: tuple[int, ...] = (0, 100, 250, 500, 750, 999),
    progress: bool = True,
):
    """Figure 1's two rows for one validation slice: the forward process (Eq. 4, one noise
    draw) and one Alg. 2 chain of the trained model (the longest chain of the ablation, 1000
    steps but in a short profile), both at the time-steps of ``show_t`` that chain visits
    (:func:`~diffcmr_core.method.inference.visited_near`: the nearest, so every panel is shown,
    titled with its own t)."""
    chain_steps = max(profile.evaluation.ablation_steps)
    show_t = tuple(visited_near(show_t, chain_steps))
    inp, tgt, _ = val_pairs(profile, task, acc, slice_index + 1)
    x0 = to_model_space(
        torch.from_numpy(tgt[slice_index : slice_index + 1])[:, None],
        profile.network("diffcmr").model.value_range,
    )
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    forward = [(t, q_sample(x0, torch.tensor([t]), noise)[0, 0].numpy()) for t in show_t]
    ev = profile.evaluation
    system, model = load_for_inference(
        ensure_trained(profile, task, acc, "diffcmr", progress=progress),
        default_device(),
        ev.weights,
    )
    final, trace = record_chain(
        system,
        model,
        inp[slice_index],
        steps=chain_steps,
        record=list(show_t),
        progress=progress,
        variance=ev.variance,
        clip=ev.clip,
    )
    backward = [(t, trace[t]) for t in sorted(trace, reverse=True)] + [("0 (output)", final)]
    return forward, backward


# ----------------------------------------------------------------------- the challenge's protocol
def _challenge_rows(profile, force, progress):
    """Every method's ranking rows on the challenge's protocol (see :func:`challenge_scores`)."""
    import shutil

    runs = paths_for(profile).layout.step("challenge")
    names = ("raw", *profile.methods)
    ranks = shard.current()
    if force and ranks.main:
        for name in names:
            shutil.rmtree(runs / name, ignore_errors=True)
    ranks.barrier()
    return {
        methods.label(name): local_split_scores(profile, name, progress=progress) for name in names
    }


def challenge_scores(
    profile: Profile, *, progress: bool = True, force: bool = False, quiet: bool = False
) -> dict[str, list[dict]]:
    """Every method (and RAW) scored the challenge's way on the profile's validation cases:
    each under-sampled file reconstructed (the frames and slices ``run4Ranking`` keeps), brought
    back to its original matrix size, cropped, scored per file and set, the better coil type
    kept (:mod:`diffcmr_core.method.challenge`). ``{method label: ranking rows}``; cached in
    ``runs/<profile>/challenge/scores.json``. The files are those of
    :func:`~diffcmr_core.study.steps.submit.submit` (split over the ranks under ``torchrun``; a
    file a
    model with the same recipe made already is kept, so an interrupted step resumes; ``force``
    removes them first)."""
    factors = [(task, acc) for task in profile.tasks for acc in profile.accs]
    return cached_step(
        paths_for(profile).layout.cache("challenge"),
        profile,
        lambda _fitted: _challenge_rows(profile, force, progress),
        force=force,
        prepare=lambda: _fit_methods(profile, factors, progress),
        name="challenge protocol",
        quiet=quiet,
        check=lambda r: keyed_rows_problem(r, "the challenge scores", None),
    )


def protocols_table(profile: Profile, task: str) -> list[dict[str, object]]:
    """Each method and factor scored by both protocols side by side: the paper's (each
    ``size x size`` image whole, the validation subset) and the challenge's (original matrix
    size, ``run4Ranking``'s slices, frames and crop, per-file and per-set means, the better
    coil type); where the data has label truth, the paper's images scored inside the heart's
    box too (``heart psnr`` ...)."""
    paper_rows = results_table(profile, task)
    challenge = challenge_scores(profile, progress=False, quiet=True)
    rows = []
    for r in paper_rows:
        c = next(x for x in challenge[r["method"]] if x["task"] == task and x["acc"] == r["acc"])
        rows.append(
            {
                "method": r["method"],
                "acc": r["acc"],
                "paper psnr": r["psnr"],
                "paper ssim": r["ssim"],
                "paper nmse": r["nmse"],
                "challenge psnr": c["psnr"],
                "challenge ssim": c["ssim"],
                "challenge nmse": c["nmse"],
                **{f"heart {m}": r[f"heart_{m}"] for m in METRICS if f"heart_{m}" in r},
            }
        )
    return rows


# ----------------------------------------------------------------------------- the evaluate command
def missing_models(profile: Profile) -> list[Path]:
    """The fitted artefacts (checkpoints, choices) of ``profile``'s methods not yet on disk."""
    missing = []
    for task, acc, method, _ in model_list(profile):
        artefact = methods.get(method).artefact(profile, task, acc)
        if artefact is not None and not artefact.is_file():
            missing.append(artefact)
    return missing


def evaluation_steps(
    profile: Profile, *, ablation_too: bool = True, progress: bool = True, force: bool = False
) -> None:
    """The sampling-heavy steps of notebooks 04 and 05 (Tables 2-3 on the paper's protocol and
    the challenge's, Table 4), in one process or split over ``torchrun`` ranks (the ``evaluate``
    command); the notebooks then read their results from the cache. The models must be fitted
    already (notebook 03): the ranks split inference, not training."""

    missing = missing_models(profile)
    if missing:
        raise CheckpointError(
            missing[0],
            f"{len(missing)} fitted models of profile {profile.name} "
            "are missing; fit them first with `python -m diffcmr_core "
            f"study --profile {profile.name} --only 03_training`",
        )
    ranks = shard.current()
    if ranks.main:
        ensure_data(profile, progress=False)
    ranks.barrier()
    for task in profile.tasks:
        for acc in profile.accs:
            evaluate_factor(profile, task, acc, progress=progress, force=force)
    challenge_scores(profile, progress=progress, force=force)
    if ablation_too and "cine" in profile.tasks and 4 in profile.accs:
        ablation(profile, "cine", 4, progress=progress, force=force)


# ---------------------------------------------------------------------- the public code's choices
def _public_rows(profile, task, acc, ckpt, progress):
    """The rows of :func:`public_choices` from the trained model ``ckpt``."""
    out = paths_for(profile).layout.step("public", task, acc)
    ev = profile.evaluation
    inp, tgt, meta = val_pairs(profile, task, acc, ev.ablation_n_val)
    system, model = load_for_inference(ckpt, default_device(), ev.weights)
    rows = [{"variance": "-", "clip": "-", "label": "RAW", **evaluate("RAW", inp, tgt, meta, out)}]
    for variance in ("beta_tilde", "beta"):
        for clip in (False, True):
            rec = reconstruct(
                system,
                model,
                inp,
                steps=ev.steps,
                rounds=ev.rounds,
                batch=ev.batch,
                seed=ev.seed,
                progress=progress,
                variance=variance,
                clip=clip,
                ids=meta["index"],
                precision=ev.precision,
            )
            kind = "beta-tilde (Alg. 2)" if variance == "beta_tilde" else "beta (public)"
            tag = f"{variance}_{'clip' if clip else 'noclip'}"
            rows.append(
                {
                    "variance": variance,
                    "clip": clip,
                    "label": f"{kind}, {'clip' if clip else 'no clip'}",
                    **evaluate(tag, rec["mean"], tgt, meta, out),
                }
            )
    return rows


def public_choices(
    profile: Profile, task="cine", acc=4, *, progress=True, force=False
) -> list[dict]:
    """What the public code's sampling choices change, on one trained model and the ablation's
    slices at the profile's T and R: sampler variance beta-tilde (Alg. 2) or beta (public), and
    x0 clipped to [-1, 1] at each step (public) or not (Alg. 2 as printed); one row each, with
    the same seeds. Cached in ``runs/<profile>/public/<task>_accNN.json``."""
    return _model_step(profile, ("public", task, acc), _public_rows, progress, force)
