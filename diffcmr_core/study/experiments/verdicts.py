"""The evidence study's verdicts at the level of subjects (notebook 10): every image's scores in
one table, intervals from a hierarchical bootstrap, and the ensemble law of DiffCMR's rounds.

* **Per-image table** (:func:`per_image_rows`): one row per image, method, seed and setting, on
  the test subjects (the tables, Table 4, every number of rounds R) and the selection subjects
  (the final models at the tables' settings), with the whole image's and the heart region's
  PSNR, SSIM and NMSE. Every interval of the study can be recomputed from it.
* **Hierarchical bootstrap** (:func:`hierarchical_interval`): a paired difference ``a - b`` per
  image and seed; each replicate draws the seeds with replacement, the subjects with
  replacement and, within each drawn subject, its images with replacement, and averages (over
  the seeds drawn, the subjects drawn, each subject's images drawn). The interval is the
  replicates' 2.5 and 97.5 percentiles; a difference **holds** when the interval excludes 0
  (and there are at least two subjects).
  Subjects, not slices, are the unit: the slices of one subject are correlated. The one rule
  for every verdict of the study (:func:`verdict_rows`).
* **The ensemble law** (:func:`ensemble_law`): if DiffCMR's R rounds were exact posterior
  samples, the mean of R of them would have (1 + 1/R) times the squared error of the
  posterior mean. Measured: the squared error of the mean of the first R rounds, the rounds'
  own spread v (the unbiased variance over rounds, per pixel, averaged), which predicts
  MSE(R) = MSE_inf + v / R for independent rounds of any distribution, and the posterior
  law's (1 + 1/R) MSE_inf, which holds only when v equals MSE_inf.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from diffcmr_core.method.metrics import METRICS, all_metrics, region_metrics
from diffcmr_core.study import methods
from diffcmr_core.study.experiments.seeds import seed_profile
from diffcmr_core.study.settings.profiles import Profile, paths_for
from diffcmr_core.tables import read_csv

KEYS = ("subject", "split", "coil", "file", "slice", "frame", "index")
COLUMNS = (*KEYS, "method", "seed", "setting", *METRICS, *(f"heart_{m}" for m in METRICS))


def _image_rows(path: Path, split: str, method: str, seed: int, setting: str) -> list[dict]:
    """The rows of one per-slice table (``<label>_slices.csv``) in the per-image layout."""
    out = []
    for r in read_csv(path):
        row = {"subject": r["case"], "split": split, "method": method, "seed": seed}
        row.update({k: r[k] for k in KEYS[2:]})
        row["setting"] = setting
        for m in (*METRICS, *(f"heart_{m}" for m in METRICS)):
            row[m] = float(r[m]) if r.get(m) not in (None, "", "nan") else float("nan")
        out.append(row)
    return out


def tables_setting(profile: Profile) -> str:
    """DiffCMR's setting in the tables, as the per-image table writes it."""
    ev = profile.evaluation
    return f"{ev.sampler} T={ev.steps} R={ev.rounds}"


def per_image_rows(profile: Profile, task: str, acc: int) -> list[dict]:
    """Every image's scores (see the module): the tables' methods on the test subjects, each
    number of rounds of DiffCMR's tables' run (``R=<r>``), Table 4's settings, and the
    selection subjects' scores of the final models, for every seed."""
    rows: list[dict] = []
    for seed in profile.evidence.seeds:
        sp = seed_profile(profile, seed)
        paths = paths_for(sp)
        ev_dir, abl_dir = paths.eval_dir(task, acc), paths.layout.step("ablation", task, acc)
        sel_dir = selection_dir(sp, task, acc)
        for name in ("raw", *sp.methods):
            lab = methods.label(name)
            setting = tables_setting(sp) if methods.get(name).sampling else ""
            rows += _image_rows(ev_dir / f"{lab}_slices.csv", "test", lab, seed, setting)
            if (sel_dir / f"{lab}_slices.csv").is_file():
                rows += _image_rows(sel_dir / f"{lab}_slices.csv", "selection", lab, seed, setting)
        ev = sp.evaluation
        for r, r_rows in ensemble_images(sp, task, acc).items():
            if r < ev.rounds:  # (all the rounds: the tables' own rows)
                setting = f"{ev.sampler} T={ev.steps} R={r}"
                rows += [{**x, "seed": seed, "setting": setting} for x in r_rows]
        rows += _ablation_images(sp, abl_dir, seed)
    return [{k: row.get(k, "") for k in COLUMNS} for row in rows]


def _ablation_images(profile: Profile, folder: Path, seed: int) -> list[dict]:
    """Table 4's per-image rows (DDPM, Alg. 2): each T at Table 4(a)'s R, each R at the
    largest T."""
    ev = profile.evaluation
    t_max, r_fixed = max(ev.ablation_steps), min(ev.rounds, max(ev.ablation_rounds))
    rows = []
    for t in ev.ablation_steps:
        setting = f"table4 ddpm T={t} R={r_fixed}"
        rows += _image_rows(folder / f"steps{t}_slices.csv", "test", "DiffCMR", seed, setting)
    for r in (r for r in ev.ablation_rounds if r != r_fixed):  # (r_fixed: a T row above)
        setting = f"table4 ddpm T={t_max} R={r}"
        rows += _image_rows(folder / f"rounds{r}_slices.csv", "test", "DiffCMR", seed, setting)
    return rows


def rounded(rows: list[dict]) -> list[dict]:
    """The per-image rows with each score at 6 significant digits (what the committed CSV
    holds; the verdicts are computed from these, so that the CSV reproduces them)."""
    scores = (*METRICS, *(f"heart_{m}" for m in METRICS))
    return [{k: float(f"{v:.6g}") if k in scores else v for k, v in r.items()} for r in rows]


def write_per_image(rows: list[dict], path: Path) -> Path:
    """The per-image table as CSV only (no Markdown copy: thousands of rows)."""
    from diffcmr_core.fileio import write_text_atomic
    from diffcmr_core.tables import to_csv_text

    path = Path(path).with_suffix(".csv")
    write_text_atomic(path, to_csv_text(rows))
    return path


def selection_dir(profile: Profile, task: str, acc: int) -> Path:
    """Where the final models' scores on the selection subjects are kept."""
    return paths_for(profile).layout.selection_scores(task, acc)


# ----------------------------------------------------------------------------- the ensemble law
def _rounds_of(profile: Profile, task: str, acc: int) -> tuple[np.ndarray, np.ndarray]:
    """DiffCMR's rounds ``[R, N, S, S]`` of the tables' run and the slices' rows (index)."""
    path = paths_for(profile).eval_dir(task, acc) / f"{methods.label('diffcmr')}_recon.h5"
    with h5py.File(path, "r") as f:
        if "rounds" not in f:
            raise ValueError(
                f"{path}: no rounds kept (an evidence profile's evaluation keeps them)"
            )
        return f["rounds"][()], f["index"][()]


def _test_slices(profile: Profile, task: str, acc: int):
    """The test slices' targets, metadata and heart boxes, as the evaluation scored them."""
    from diffcmr_core.study.steps.heart import heart_boxes
    from diffcmr_core.study.store.validation import val_pairs

    _, tgt, meta = val_pairs(profile, task, acc, profile.evaluation.n_val)
    paths = paths_for(profile)
    boxes = heart_boxes(paths.data, meta, profile.preprocess, profile.phantom.pixel_mm)
    return tgt, meta, boxes


def rounds_list(most: int) -> list[int]:
    """The numbers of rounds the law is measured at: 1, 2, 4, ... up to ``most`` (and it)."""
    out = [1]
    while out[-1] * 2 <= most:
        out.append(out[-1] * 2)
    return out if out[-1] == most else [*out, most]


def ensemble_images(profile: Profile, task: str, acc: int) -> dict[int, list[dict]]:
    """Per number of rounds R (:func:`rounds_list`), every test image's scores of the mean of
    the first R rounds of DiffCMR's tables' run."""
    rounds, index = _rounds_of(profile, task, acc)
    tgt, meta, boxes = _test_slices(profile, task, acc)
    if not np.array_equal(index, meta["index"]):
        raise ValueError("the kept rounds are not of the test slices the evaluation scored")
    out = {}
    for r in rounds_list(len(rounds)):
        mean = rounds[:r].mean(0)
        rows = []
        for i in range(len(mean)):
            row = {"subject": str(meta["case"][i]), "split": "test", "method": "DiffCMR"}
            row.update({k: meta[k][i] for k in ("coil", "file", "slice", "frame", "index")})
            row.update(all_metrics(tgt[i], mean[i]))
            heart = region_metrics(tgt[i], mean[i], boxes[i]) if np.all(boxes[i] >= 0) else {}
            row.update({f"heart_{m}": heart.get(m, float("nan")) for m in METRICS})
            rows.append(row)
        out[r] = rows
    return out


def ensemble_law(profile: Profile, task: str, acc: int) -> list[dict]:
    """Per seed and R: the measured mean squared error of the mean of the first R rounds (test
    images, normalised intensities), the rounds' spread v, and the two predictions (see the
    module): ``mse_spread_law`` = MSE_inf + v / R and ``mse_posterior_law`` =
    (1 + 1/R) MSE_inf, with MSE_inf = MSE(R_max) - v / R_max; the mean PSNR beside them."""
    rows = []
    for seed in profile.evidence.seeds:
        sp = seed_profile(profile, seed)
        rounds, _ = _rounds_of(sp, task, acc)
        tgt, _, _ = _test_slices(sp, task, acc)
        most = len(rounds)
        v = float(rounds.var(0, ddof=1).mean()) if most > 1 else float("nan")
        mse = {r: float(((rounds[:r].mean(0) - tgt) ** 2).mean()) for r in rounds_list(most)}
        limit = mse[most] - v / most
        unet = _unet_scores(sp, task, acc, tgt)
        psnr = {
            r: float(np.mean([all_metrics(t, x)["psnr"] for t, x in zip(tgt, rounds[:r].mean(0))]))
            for r in rounds_list(most)
        }
        for r in rounds_list(most):
            rows.append(
                {
                    "seed": seed,
                    "rounds": r,
                    "mse": mse[r],
                    "mse_spread_law": limit + v / r,
                    "mse_posterior_law": (1 + 1 / r) * limit,
                    "spread_v": v,
                    "mse_inf": limit,
                    "psnr": psnr[r],
                    **unet,
                }
            )
    return rows


def _unet_scores(profile: Profile, task: str, acc: int, tgt: np.ndarray) -> dict[str, float]:
    """The U-Net's mean squared error and mean PSNR on the same test images (its tables'
    reconstructions), the regression network's level beside the ensemble."""
    path = paths_for(profile).eval_dir(task, acc) / f"{methods.label('unet')}_recon.h5"
    if "unet" not in profile.methods or not path.is_file():
        return {}
    with h5py.File(path, "r") as f:
        rec = f["recon"][()]
    return {
        "unet_mse": float(((rec - tgt) ** 2).mean()),
        "unet_psnr": float(np.mean([all_metrics(t, x)["psnr"] for t, x in zip(tgt, rec)])),
    }


# ----------------------------------------------------------------------------- the bootstrap
def paired_differences(
    rows: list[dict], a: tuple[str, str], b: tuple[str, str], metric: str = "psnr"
) -> dict[str, dict[int, dict[str, float]]]:
    """``a - b`` of ``metric`` per subject, seed and image (rows of the per-image table; ``a``
    and ``b`` are ``(method, setting)``), test subjects only, on the images both have a score
    of (a NaN, e.g. a heart metric where the slice has no heart region, is no score)."""
    keyed: dict[tuple, dict[tuple, float]] = {a: {}, b: {}}
    for r in rows:
        which = (r["method"], r["setting"])
        value = r.get(metric)
        scored = value is not None and value == value and value != ""
        if which in keyed and r["split"] == "test" and scored:
            image = (r["coil"], r["file"], str(r["slice"]), str(r["frame"]))
            keyed[which][(r["subject"], int(r["seed"]), image)] = float(r[metric])
    out: dict[str, dict[int, dict[str, float]]] = {}
    for key in sorted(set(keyed[a]) & set(keyed[b])):
        subject, seed, image = key
        out.setdefault(subject, {}).setdefault(seed, {})[image] = keyed[a][key] - keyed[b][key]
    return out


def _as_arrays(diffs: dict) -> tuple[list[int], list[np.ndarray]]:
    """The seeds and, per subject, its differences ``[seeds, images]`` (the images every seed
    has)."""
    seeds = sorted({s for per in diffs.values() for s in per})
    arrays = []
    for per in diffs.values():
        images = sorted(set.intersection(*(set(per.get(s, {})) for s in seeds)))
        if images:
            arrays.append(np.array([[per[s][im] for im in images] for s in seeds]))
    return seeds, arrays


def hierarchical_interval(
    diffs: dict, *, replicates: int = 4000, level: float = 0.95, seed: int = 0
) -> dict[str, object]:
    """The estimate (mean over seeds, subjects, each subject's images) of paired differences
    (:func:`paired_differences`) and its hierarchical bootstrap interval (see the module);
    ``holds`` when the interval excludes 0; the spread over seeds (sd of the per-seed
    estimates) and over subjects (sd of the per-subject means) beside it."""
    seeds, arrays = _as_arrays(diffs)
    if not arrays:
        raise ValueError("no paired images to compare")
    rng = np.random.default_rng(seed)
    n_seeds, n_subj = len(seeds), len(arrays)
    reps = np.empty(replicates)
    for b in range(replicates):
        s_idx = rng.integers(0, n_seeds, n_seeds)
        subj = rng.integers(0, n_subj, n_subj)
        means = []
        for k in subj:
            d = arrays[k]
            img = rng.integers(0, d.shape[1], d.shape[1])
            means.append(d[s_idx][:, img].mean())
        reps[b] = np.mean(means)
    lo, hi = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)])
    per_seed = [np.mean([d[i].mean() for d in arrays]) for i in range(n_seeds)]
    subject_means = [d.mean() for d in arrays]
    return {
        "estimate": float(np.mean(subject_means)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "holds": bool(n_subj > 1 and (lo > 0 or hi < 0)),
        "subjects": n_subj,
        "images": int(sum(d.shape[1] for d in arrays)),
        "seeds": n_seeds,
        "seed_sd": float(np.std(per_seed, ddof=1)) if n_seeds > 1 else float("nan"),
        "subject_sd": float(np.std(subject_means, ddof=1)) if n_subj > 1 else float("nan"),
    }


def verdict_rows(rows: list[dict], comparisons: list[dict], metric: str = "psnr") -> list[dict]:
    """One row per comparison (``claim``, ``a`` and ``b`` as ``(method, setting)``, and what
    the paper says, ``paper``: the sign it expects of ``a - b``, +1 or -1): the hierarchical
    interval and the verdict: ``reproduced`` (holds, the paper's sign), ``reversed`` (holds,
    the other sign) or ``not established``. A comparison whose ``source`` is not the paper
    (an expectation of ours, ``paper`` its sign) is ``confirmed`` or ``contradicted``."""
    out = []
    for c in comparisons:
        res = hierarchical_interval(paired_differences(rows, c["a"], c["b"], metric))
        heart = paired_differences(rows, c["a"], c["b"], f"heart_{metric}")
        region = hierarchical_interval(heart) if heart else None
        sign = np.sign(res["estimate"])
        source = c.get("source", "the paper")
        yes, no = (
            ("reproduced", "reversed") if source == "the paper" else ("confirmed", "contradicted")
        )
        verdict = "not established" if not res["holds"] else (yes if sign == c["paper"] else no)
        out.append(
            {
                "claim": c["claim"],
                "source": source,
                "a": " ".join(x for x in c["a"] if x),
                "b": " ".join(x for x in c["b"] if x),
                f"d_{metric}": res["estimate"],
                **{k: v for k, v in res.items() if k != "estimate"},
                "verdict": verdict,
                # the heart region's difference beside it (the same rule; NaN: no heart region)
                f"d_heart_{metric}": region["estimate"] if region else float("nan"),
                "heart_ci_low": region["ci_low"] if region else float("nan"),
                "heart_ci_high": region["ci_high"] if region else float("nan"),
            }
        )
    return out


def comparisons(profile: Profile) -> list[dict]:
    """The paper's claims as comparisons on the test subjects: DiffCMR (tables' setting) above
    each other method; PSNR rising with T (Table 4(a): the largest T against the smallest);
    rising with R (the tables' run: its most rounds against one, and against 4)."""
    ev = profile.evaluation
    diff = ("DiffCMR", tables_setting(profile))
    out = [
        {
            "claim": f"DiffCMR above {methods.label(m)}",
            "a": diff,
            "b": (methods.label(m), ""),
            "paper": 1,
        }
        for m in ("raw", *profile.methods)
        if m != "diffcmr"
    ]
    t_lo, t_hi = min(ev.ablation_steps), max(ev.ablation_steps)
    r_fixed = min(ev.rounds, max(ev.ablation_rounds))
    out.append(
        {
            "claim": f"PSNR rises with T ({t_lo} to {t_hi}, DDPM, R = {r_fixed})",
            "a": ("DiffCMR", f"table4 ddpm T={t_hi} R={r_fixed}"),
            "b": ("DiffCMR", f"table4 ddpm T={t_lo} R={r_fixed}"),
            "paper": 1,
        }
    )
    prefix = f"{ev.sampler} T={ev.steps}"
    for r_lo in sorted({1, min(4, ev.rounds)}):
        if r_lo < ev.rounds:
            out.append(
                {
                    "claim": f"PSNR rises with R ({r_lo} to {ev.rounds}, {prefix})",
                    "a": ("DiffCMR", f"{prefix} R={ev.rounds}"),
                    "b": ("DiffCMR", f"{prefix} R={r_lo}"),
                    "paper": 1,
                }
            )
    return out


def selection_scores(profile: Profile, task: str, acc: int, *, progress: bool = False) -> dict:
    """Every method's final model (RAW included) on the selection subjects at the tables'
    settings, per image in :func:`selection_dir` (``<label>_slices.csv``); the mean scores,
    cached there (``summary.json``). What the choices saw, beside what the tables report."""
    from diffcmr_core.method.evaluate import evaluate
    from diffcmr_core.study.steps import ensure_trained
    from diffcmr_core.study.steps.heart import heart_boxes
    from diffcmr_core.study.steps.paper_steps import val_batch
    from diffcmr_core.study.store.cache import cached_step

    out = selection_dir(profile, task, acc)

    def compute(_fitted) -> dict:
        batch, tgt, meta = val_batch(profile, task, acc, None, selection=True)
        pre = profile.preprocess
        boxes = heart_boxes(paths_for(profile).data, meta, pre, profile.phantom.pixel_mm)
        result = {}
        for name in ("raw", *profile.methods):
            rec = methods.get(name).reconstructor(profile, task, acc, progress=progress)(batch)
            lab = methods.label(name)
            result[lab] = evaluate(lab, rec["mean"], tgt, meta, out, boxes=boxes)
        return result

    return cached_step(
        out / "summary.json",
        profile,
        compute,
        extra="selection subjects",
        prepare=lambda: [ensure_trained(profile, task, acc, m) for m in profile.methods],
        name=f"the selection subjects' scores {task} {acc}x",
    )


__all__ = [
    "COLUMNS",
    "comparisons",
    "ensemble_images",
    "ensemble_law",
    "hierarchical_interval",
    "paired_differences",
    "per_image_rows",
    "rounded",
    "rounds_list",
    "selection_dir",
    "selection_scores",
    "tables_setting",
    "verdict_rows",
    "write_per_image",
]
