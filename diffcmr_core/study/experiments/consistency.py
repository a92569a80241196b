"""Data consistency on the acquired coil data, on the evidence study's test subjects (beyond the
paper; notebook 10).

Data consistency needs images whose k-space grid is the acquisition's: a k-space centre crop to
the network's size (the whole field of view at low resolution,
:func:`~diffcmr_core.study.store.validation.crop_preprocess`), not the evidence profile's image
``roi`` resized. So the networks are trained again on such pairs of the same subjects
(:func:`dc_profile`: the same phantom, split, learning rates, budget and DiffCMR setting, seed
0, trained and stopped as every evidence network is), and on the test subjects each is scored
without and with consistency:

* **U-Net + DC, cGAN + DC**: the network's output made consistent once
  (:class:`~diffcmr_core.data.kspace.CoilConsistency`: the magnitude given the low-resolution
  phase, expanded to the coils with ESPIRiT maps, the acquired lines replaced by the measured
  ones, root-sum-of-squares);
* **DiffCMR + DC**: every x0 prediction of every step of its chain made consistent likewise
  (:func:`~diffcmr_core.method.inference.coil_consistency_hook_for`), at the tables' sampler,
  T and R.

The per-image rows (:func:`per_image_rows`, setting :data:`SETTING`) join the evidence table,
and :func:`comparisons` the verdicts, under the study's one rule (the hierarchical bootstrap
over subjects and images; one seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffcmr_core.method.evaluate import evaluate, read_recon
from diffcmr_core.study import methods
from diffcmr_core.study.settings.profiles import Profile, paths_for

SETTING = "whole field of view"  # the per-image table's setting of these rows
NETWORKS = ("unet", "cgan", "diffcmr")
DC = " + DC"


def dc_profile(profile: Profile) -> Profile:
    """The evidence profile's networks on the acquisition's grid: ``<name>-dc``, the same
    phantom (``data_name``), pairs of its own made with the crop preprocessing, the networks
    only (PI-CS is consistent by construction), seed 0, the learning rates and DiffCMR's setting
    the evidence profile chose (``profile`` tuned: they are carried, not chosen again)."""
    from diffcmr_core.study.store.validation import crop_preprocess

    evc = profile.evidence
    if evc is None:
        raise ValueError(f"profile {profile.name} has no evidence settings")
    # a profile that sweeps its rates (chooses its sampling) must have chosen them; one that
    # does not uses its configured ones
    missing = [
        m for m in NETWORKS if evc.lr_factors and m in profile.methods and m not in evc.lr_chosen
    ]
    if missing or (evc.best_samplers and not evc.sampling_chosen):
        raise ValueError(
            f"profile {profile.name}: the learning rates ({', '.join(missing) or 'chosen'}) and "
            "DiffCMR's setting must be chosen first (notebook 03; `convergence.tuned`)"
        )
    name = f"{profile.name}-dc"
    task, acc = evc.factors[0]
    return dataclasses.replace(
        profile,
        name=name,
        data_name=profile.data_name or profile.name,
        pairs_name=name,
        preprocess=crop_preprocess(profile),
        tasks=(task,),
        accs=(acc,),
        methods=tuple(m for m in profile.methods if m in NETWORKS),
        evidence=dataclasses.replace(evc, seeds=(0,), factors=((task, acc),), lr_factors=()),
    )


def evaluate_dc(profile: Profile, task: str, acc: int, *, progress: bool = True) -> dict:
    """Every network of :func:`dc_profile` without (its evaluation step) and with consistency on
    the test subjects: ``{label: mean scores}``, cached in the DC profile's run folder
    (``consistency/<task>_accNN/summary.json``, the reconstructions and per-slice scores beside
    it); trains what is missing first."""
    from diffcmr_core.study.steps import evaluate_factor
    from diffcmr_core.study.store.cache import STEP_USES, cached_step

    dp = dc_profile(profile)
    layout = paths_for(dp).layout

    def compute(plain: dict) -> dict:
        return {**plain, **_with_consistency(dp, task, acc, progress)}

    return cached_step(
        layout.cache("consistency", task, acc),
        dp,
        compute,
        uses=STEP_USES["consistency"],
        prepare=lambda: evaluate_factor(dp, task, acc, progress=progress, quiet=True),
        name=f"data consistency {task} {acc}x",
    )


def _test_batch(dp: Profile, task: str, acc: int):
    """The DC profile's test slices: ``(batch, targets, meta, heart boxes, operator)``, the
    operator (:func:`~diffcmr_core.method.classical.acquisition_consistency`) built once."""
    from diffcmr_core.method.classical import acquisition_consistency
    from diffcmr_core.study.steps import val_batch
    from diffcmr_core.study.steps.heart import heart_boxes

    paths = paths_for(dp)
    batch, tgt, meta = val_batch(dp, task, acc, dp.evaluation.n_val)
    boxes = heart_boxes(paths.data, meta, dp.preprocess, dp.phantom.pixel_mm)
    inp = batch.inputs
    operator = acquisition_consistency(batch.acquired, len(inp), inp.shape[-1], batch.scale)
    return batch, tgt, meta, boxes, operator


def _made_consistent(operator, images: np.ndarray) -> np.ndarray:
    """Magnitude images ``[N, S, S]`` made consistent once by ``operator``."""
    import torch

    return operator(torch.from_numpy(np.ascontiguousarray(images, np.float32))).numpy()


def _with_consistency(dp: Profile, task: str, acc: int, progress: bool) -> dict:
    """The networks' reconstructions made consistent with the coil data, scored (see
    :func:`evaluate_dc`)."""
    from diffcmr_core.method.inference import coil_consistency_hook_for
    from diffcmr_core.study.methods.convergence import sample_at

    paths, ev = paths_for(dp), dp.evaluation
    out = paths.layout.step("consistency", task, acc)
    batch, tgt, meta, boxes, operator = _test_batch(dp, task, acc)
    results = {}
    for name in dp.methods:
        label = methods.label(name) + DC
        if methods.get(name).sampling:
            system, model = methods.get(name).load(dp, task, acc)
            hook = coil_consistency_hook_for(operator, ev.rounds, system.cfg.value_range)
            rec, _ = sample_at(
                dp,
                system,
                model,
                batch.inputs,
                batch.slice_ids,
                (ev.sampler, ev.steps, ev.rounds),
                progress=progress,
                x0_hook_for=hook,
            )
            made = rec["mean"]
        else:
            plain = read_recon(paths.eval_dir(task, acc), methods.label(name))
            made = _made_consistent(operator, plain)
        results[label] = evaluate(label, made, tgt, meta, out, boxes=boxes)
    return results


def reference_row(profile: Profile, task: str, acc: int) -> dict:
    """The ceiling of this consistency: the fully sampled reference itself made consistent
    (whole image and heart region, mean over the test slices). Its maps and phase are estimated
    from the acquired lines at the networks' grid, so the operator changes even the truth; a
    reconstruction already closer to the truth than this can only lose by it."""
    dp = dc_profile(profile)
    _, tgt, meta, boxes, operator = _test_batch(dp, task, acc)
    label = "reference" + DC
    made = _made_consistent(operator, tgt)
    out = paths_for(dp).layout.step("consistency", task, acc)  # (nothing is written there)
    return {label: evaluate(label, made, tgt, meta, out, write=False, boxes=boxes)}


def per_image_rows(profile: Profile, task: str, acc: int) -> list[dict]:
    """The per-image rows (the evidence table's columns) of RAW and every network without and
    with consistency, on the test subjects, setting :data:`SETTING`, seed 0."""
    from diffcmr_core.study.experiments.verdicts import COLUMNS, _image_rows

    dp = dc_profile(profile)
    paths = paths_for(dp)
    folders = [(paths.eval_dir(task, acc), methods.label(m)) for m in ("raw", *dp.methods)]
    step = paths.layout.step("consistency", task, acc)
    folders += [(step, methods.label(m) + DC) for m in dp.methods]
    rows = []
    for folder, label in folders:
        rows += _image_rows(folder / f"{label}_slices.csv", "test", label, 0, SETTING)
    return [{k: row.get(k, "") for k in COLUMNS} for row in rows]


def comparisons(profile: Profile) -> list[dict]:
    """What consistency should do, as comparisons on the test subjects (``paper`` is the sign
    expected, ``source`` says the paper does not claim it): each network raised by it, and
    DiffCMR against the U-Net without and with it, on the whole field of view."""
    label = methods.label
    out = [
        {
            "claim": f"DC raises {label(m)} ({SETTING})",
            "a": (label(m) + DC, SETTING),
            "b": (label(m), SETTING),
            "paper": 1,
            "source": "beyond the paper",
        }
        for m in NETWORKS
        if m in profile.methods
    ]
    if {"unet", "diffcmr"} <= set(profile.methods):
        for suffix in ("", DC):
            out.append(
                {
                    "claim": f"DiffCMR{suffix} above U-Net{suffix} ({SETTING})",
                    "a": (label("diffcmr") + suffix, SETTING),
                    "b": (label("unet") + suffix, SETTING),
                    "paper": 1,
                    "source": "beyond the paper",
                }
            )
    return out


def summary_rows(results: dict) -> list[dict]:
    """The step's means as a table: one row per method, whole image and heart region."""
    keys = ("psnr", "ssim", "nmse", "heart_psnr", "heart_ssim", "heart_nmse")
    return [
        {"method": lab, **{k: r.get(k, float("nan")) for k in keys}} for lab, r in results.items()
    ]
