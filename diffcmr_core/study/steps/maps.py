"""T1 and T2 maps from every method's reconstructions (beyond the paper; notebook 09).

For each factor, every method reconstructs every weighted image of the mapping task's validation
cases (``MAP_COIL`` files; RAW and every method of the profile, DiffCMR with one round and with
R rounds); the
weightings of each slice are brought back to one common scale (each image times its input's
maximum, ``meta['scale']``, known at inference) and fitted with
:func:`~diffcmr_core.method.mapping.fit_t1` / :func:`~diffcmr_core.method.mapping.fit_t2`.
The maps are compared, in the myocardium and in the blood pool, with the maps of the fully
sampled images (the reference a clinician would have had) and with the phantom's truth brought
to the same grid by the preprocessing's own geometry (:func:`truth_on_grid`). The same fits
without the common scale (each weighting left at its own input's maximum, as the network
outputs it) measure what the scale does. The phantom labels tissues, not the AHA segments the
organisers score (no right-ventricular insertion points), so the regions are whole tissues; and
the evaluation needs the phantom's labels and truth, so it runs on the synthetic data only
(the fits themselves work on any images).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from diffcmr_core.data import acquired
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import fft2c, kspace_to_image
from diffcmr_core.data.pairs import PreprocessConfig, load_pairs, pairs_path, pairs_stamp
from diffcmr_core.data.phantom import load_truth, truth_path
from diffcmr_core.data.phantom.anatomy import LABEL
from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.checkpoints import default_device
from diffcmr_core.method.mapping import fit_t1, fit_t2
from diffcmr_core.study import methods
from diffcmr_core.study.settings.profiles import Profile, paths_for
from diffcmr_core.study.steps import ensure_trained
from diffcmr_core.study.store.cache import cached_step, keyed_rows_problem

MAP_COIL = "MultiCoil"  # the challenge's main track
FITS = {"T1map": ("T1", fit_t1), "T2map": ("T2", fit_t2)}
REGIONS = {"myo": "myocardium", "blood": "blood"}
REGION_FRACTION = 0.5  # a pixel belongs to the tissue covering most of it
REFERENCES = ("full", "truth")
SCALINGS = ("common", "own")
FULL = "Fully sampled"
UNCERTAINTY_METHOD = "diffcmr"  # whose std over rounds the uncertainty rows test


def maps_dir(profile: Profile, acc: int) -> Path:
    """Where the maps of factor ``acc`` and their tables are kept."""
    return paths_for(profile).layout.step("maps", acc=acc)


def truth_on_grid(
    truth: dict[str, np.ndarray], z: int, pre: PreprocessConfig
) -> dict[str, np.ndarray]:
    """The phantom's truth of slice ``z`` on the pairs' grid: ``t1`` and ``t2`` [ms] and, per
    region of :data:`REGIONS`, a mask of the pixels that tissue covers for more than
    :data:`REGION_FRACTION`. Each map goes through the preprocessing's own geometry (its
    k-space, then :func:`~diffcmr_core.data.kspace.kspace_to_image` with the profile's padding,
    region and size, divided by what that does to a constant map), so it lands where the
    images' pixels are, in ms."""

    def image(m: np.ndarray) -> np.ndarray:
        return kspace_to_image(
            fft2c(m.astype(np.complex64)),
            multicoil=False,
            pad_to=pre.pad_to,
            size=pre.size,
            crop=pre.crop,
            roi=pre.roi,
            resize_method=pre.resize,
        )

    # the orthonormal FFTs scale by sqrt(acquired / padded size): a constant map gives the factor
    gain = image(np.ones(truth["t1"].shape[1:], np.float32))

    def grid(m: np.ndarray) -> np.ndarray:
        return image(m) / gain

    out = {"t1": grid(truth["t1"][z]), "t2": grid(truth["t2"][z])}
    for key, tissue in REGIONS.items():
        out[key] = grid((truth["label"][z] == LABEL[tissue]).astype(np.float32)) > REGION_FRACTION
    return out


def _groups(meta: dict[str, np.ndarray]) -> list[tuple[str, str, int, np.ndarray]]:
    """``(case, file, slice, indices in weighting order)`` of the ``MAP_COIL`` images."""
    groups: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for i in np.flatnonzero(meta["coil"] == MAP_COIL):
        groups[(meta["case"][i], meta["file"][i], int(meta["slice"][i]))].append(int(i))
    return [
        (c, f, z, np.array(sorted(idx, key=lambda i: meta["frame"][i])))
        for (c, f, z), idx in sorted(groups.items())
    ]


def _reconstructions(
    profile: Profile, batch: methods.Batch, acc: int, progress: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Every method's images of ``batch`` (RAW first; a sampling method with one round and with
    R rounds); DiffCMR's std and rounds (for the uncertainty)."""

    recs: dict[str, np.ndarray] = {}
    std = rounds = None
    for name in ("raw", *profile.methods):
        rec = methods.reconstruct(
            profile, "mapping", acc, name, batch, device=default_device(), progress=progress
        )
        recs.update(methods.figure_recons(name, rec, profile.evaluation.rounds))
        if name == UNCERTAINTY_METHOD:
            std, rounds = rec["std"], rec["rounds"]
    return recs, std, rounds


def _summary(diffs: list[np.ndarray], failed: int, total: int) -> dict[str, float]:
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    return {
        "mae": float(np.abs(d).mean()) if len(d) else float("nan"),
        "bias": float(d.mean()) if len(d) else float("nan"),
        "n": int(len(d)),
        "unfitted": failed / total if total else float("nan"),
    }


def _mapping_batch(profile: Profile, acc: int):
    """The validation ``MAP_COIL`` mapping slices at ``acc``, checked to allow the maps'
    evaluation: ``(targets, meta, groups, position of each row in the batch, batch)``."""
    paths, pre = paths_for(profile), profile.preprocess
    if not paths.is_synthetic:
        raise DiffCMRError(
            paths.data,
            "the maps' evaluation needs the phantom's tissue labels "
            "and truth maps (fit_t1 / fit_t2 work on any images)",
        )
    if pre.normalise != "input":
        raise DiffCMRError(
            paths.pairs,
            "the maps need every target on its input's scale "
            "(PreprocessConfig.normalise='input'); with 'each' "
            "the weightings' common scale is lost",
        )
    pairs = pairs_path(paths.pairs, "mapping", acc)
    inp, tgt, meta = load_pairs(pairs, "val", expect=pairs_stamp(paths.data, "mapping", pre))
    groups = _groups(meta)
    if not groups:
        raise ValueError(f"no {MAP_COIL} mapping slices in the validation split of {pairs}")
    order = np.concatenate([idx for *_, idx in groups])
    at = {int(i): k for k, i in enumerate(order)}
    sub = {k: v[order] for k, v in meta.items()}
    batch = methods.Batch(
        np.ascontiguousarray(inp[order]),
        sub["scale"].astype(np.float32),
        pre,
        lambda: acquired.of_pairs(paths.data, "mapping", acc, sub),
        sub["index"],
    )
    return tgt, meta, groups, at, batch


def _slice_maps(full, recs, pos, scale, fit, times):
    """One slice's maps: the fully sampled images' and every method's on the common scale
    (``maps``), and every method's without it (``own``)."""
    maps, own = {FULL: fit(full * scale, times)}, {}
    for m, r in recs.items():
        r = np.maximum(r[pos], 0)  # magnitudes (a regression may dip below 0)
        maps[m] = fit(r * scale, times)
        own[m] = fit(r, times)
    return maps, own


def _add_errors(errors, maps, own, truth, key, names) -> None:
    """Add one slice's map errors, per method, region, reference and scaling, to ``errors``
    (``diffs``, ``failed``, ``totals``, keyed by ``(method, map, region, reference, scaling)``)."""
    diffs, failed, totals = errors
    for region in REGIONS:
        mask = truth[region]
        refs = {"full": maps[FULL], "truth": truth[key.lower()]}
        for ref_name, ref in refs.items():
            for m in names:
                for scaling, source in (("common", maps), ("own", own)):
                    if m == FULL and (scaling == "own" or ref_name == "full"):
                        continue
                    v = source[m]
                    k = (m, key, region, ref_name, scaling)
                    both = mask & np.isfinite(v) & np.isfinite(ref)
                    diffs[k].append((v - ref)[both])
                    failed[k] += int((mask & ~np.isfinite(v)).sum())
                    totals[k] += int(mask.sum())


def _uncertainty_terms(profile, maps, truth, std, rounds, pos, scale, fit, times):
    """Over the heart's pixels of one T1 slice: DiffCMR's std map (averaged over the
    inversions), the std of the T1 fitted to each round, DiffCMR's |T1 error|; and the two
    uncertainty images."""
    heart = (truth["myo"] | truth["blood"]) & np.isfinite(maps[FULL])
    err = np.abs(maps[f"DiffCMR R={profile.evaluation.rounds}"] - maps[FULL])
    per_round = np.stack([fit(rounds[k][pos] * scale, times) for k in range(len(rounds))])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all rounds unfitted
        round_std = np.nanstd(per_round, axis=0)
    ok = heart & np.isfinite(err) & np.isfinite(round_std)
    std_map = std[pos].mean(0)
    return {"std_map": std_map[ok], "round_t1_std": round_std[ok], "t1_error": err[ok]}, {
        "uncertainty": std_map,
        "round_t1_std": round_std,
    }


def _spearman(unc: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    """Spearman's rho (and p, n) of each uncertainty against |T1 error| over the pixels."""
    out = {}
    err = np.concatenate(unc["t1_error"]) if unc["t1_error"] else np.zeros(0)
    for name in ("std_map", "round_t1_std"):
        x = np.concatenate(unc[name]) if unc[name] else np.zeros(0)
        if len(x) > 2 and np.ptp(x) > 0 and np.ptp(err) > 0:
            rho, p = spearmanr(x, err)
            out[name] = {"rho": float(rho), "p": float(p), "n": int(len(x))}
        else:
            out[name] = {"rho": float("nan"), "p": float("nan"), "n": int(len(x))}
    return out


def _map_results(profile: Profile, acc: int, progress: bool) -> dict:
    """What :func:`map_errors` returns, computed (the maps saved in ``maps.npz``)."""
    paths, pre = paths_for(profile), profile.preprocess
    tgt, meta, groups, at, batch = _mapping_batch(profile, acc)
    recs, std, rounds = _reconstructions(profile, batch, acc, progress)
    names = [FULL, *recs]
    errors = (defaultdict(list), defaultdict(int), defaultdict(int))
    saved: dict[str, np.ndarray] = {}
    unc: dict[str, list[np.ndarray]] = {"std_map": [], "round_t1_std": [], "t1_error": []}
    for case, name, z, idx in groups:
        key, fit = FITS[name]
        times = io.load_times(
            io.file_path(paths.data, MAP_COIL, "mapping", case, name, acc=acc, kind="times")
        )
        pos = np.array([at[int(i)] for i in idx])
        scale = meta["scale"][idx][:, None, None]
        maps, own = _slice_maps(tgt[idx], recs, pos, scale, fit, times)
        truth = truth_on_grid(load_truth(truth_path(paths.data, "TrainingSet", case, name)), z, pre)
        tag = f"{case}/{name}/{z}"
        saved.update({f"{tag}/{m}": v for m, v in maps.items()})
        saved[f"{tag}/truth"] = truth[key.lower()]
        saved.update({f"{tag}/{region}": truth[region] for region in REGIONS})
        _add_errors(errors, maps, own, truth, key, names)
        if key == "T1" and std is not None:
            terms, images = _uncertainty_terms(
                profile, maps, truth, std, rounds, pos, scale, fit, times
            )
            for k, v in terms.items():
                unc[k].append(v)
            saved.update({f"{tag}/{k}": v for k, v in images.items()})
    diffs, failed, totals = errors
    rows = [
        {
            "method": k[0],
            "map": k[1],
            "region": k[2],
            "reference": k[3],
            "scaling": k[4],
            **_summary(diffs[k], failed[k], totals[k]),
        }
        for k in diffs
    ]
    out = maps_dir(profile, acc)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "maps.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **saved)
    return {"rows": rows, "uncertainty": _spearman(unc), "slices": len(groups), "methods": names}


def map_errors(profile: Profile, acc: int, *, progress: bool = True, force: bool = False) -> dict:
    """Errors of every method's T1 and T2 maps at factor ``acc`` (cached in
    ``runs/<profile>/maps/accNN/summary.json``, the maps in ``maps.npz`` beside it).

    Returns ``rows``: one per method, map (T1/T2), region, reference (``full``: the fully
    sampled images' maps; ``truth``: the phantom's, synthetic data only) and scaling
    (``common``, ``own``): mean absolute error and bias [ms] over the region's pixels where both
    maps are fitted, their number, and the fraction of the region the method left unfitted;
    ``uncertainty``: Spearman's rank correlation, over the heart's pixels (myocardium and blood)
    of the T1 slices, between |T1 error| of DiffCMR (R rounds, against the fully sampled map)
    and (a) the paper's uncertainty map (std over rounds, averaged over the inversions),
    (b) the std over rounds of the T1 fitted to each round.
    """

    return cached_step(
        maps_dir(profile, acc) / "summary.json",
        profile,
        lambda _fitted: _map_results(profile, acc, progress),
        force=force,
        prepare=lambda: [
            ensure_trained(profile, "mapping", acc, m, progress=progress) for m in profile.methods
        ],
        name=f"maps {acc}x",
        check=lambda r: keyed_rows_problem(r, "the maps' summary", ("rows",), numeric=("n",)),
    )


def load_maps(profile: Profile, acc: int) -> dict[str, np.ndarray]:
    """The maps :func:`map_errors` saved: ``<case>/<file>/<slice>/<method|truth|myo|blood|...>``."""
    with np.load(maps_dir(profile, acc) / "maps.npz") as f:
        return {k: f[k] for k in f.files}


def _wide(results: dict[int, dict], reference: str, scaling: str, methods: list[str]) -> list[dict]:
    rows = []
    for acc, res in results.items():
        index = {
            (r["method"], r["map"], r["region"]): r
            for r in res["rows"]
            if r["reference"] == reference and r["scaling"] == scaling
        }
        for m in methods:
            if not any(k[0] == m for k in index):
                continue
            row: dict[str, object] = {"method": m, "acc": acc}
            for key in ("T1", "T2"):
                for region in REGIONS:
                    r = index.get((m, key, region))
                    row[f"{key} {region} MAE"] = r["mae"] if r else float("nan")
                    row[f"{key} {region} bias"] = r["bias"] if r else float("nan")
            rows.append(row)
    return rows


def maps_table(results: dict[int, dict], reference: str = "full") -> list[dict]:
    """Table 6: per method and factor, mean absolute error and bias [ms] of the T1 and T2 maps
    (common scale) in the myocardium and the blood pool, against the fully sampled images' maps
    (``full``) or the phantom's truth (``truth``; with the fully sampled maps' own errors)."""
    first = next(iter(results.values()))
    methods = [m for m in first["methods"] if reference == "truth" or m != FULL]
    return _wide(results, reference, "common", methods)


def scale_table(results: dict[int, dict]) -> list[dict]:
    """Per method and factor, the myocardial T1 and T2 errors (against the fully sampled maps)
    with the common scale and with each weighting at its own input's maximum, and the fraction
    of the myocardium left unfitted without it."""
    rows = []
    for acc, res in results.items():
        index = {
            (r["method"], r["map"], r["scaling"]): r
            for r in res["rows"]
            if r["reference"] == "full" and r["region"] == "myo"
        }
        nan = {"mae": float("nan"), "unfitted": float("nan")}
        for m in (m for m in res["methods"] if m != FULL):
            row: dict[str, object] = {"method": m, "acc": acc}
            for key in ("T1", "T2"):
                row |= {
                    f"{key} myo MAE ({s} scale)": index.get((m, key, s), nan)["mae"]
                    for s in SCALINGS
                }
                row[f"{key} myo unfitted (own scale)"] = index.get((m, key, "own"), nan)["unfitted"]
            rows.append(row)
    return rows


def uncertainty_table(results: dict[int, dict]) -> list[dict]:
    """Per factor, Spearman's rho between DiffCMR's uncertainty and its |T1 error|."""
    rows = []
    for acc, res in results.items():
        u = res["uncertainty"]
        rows.append(
            {
                "acc": acc,
                "pixels": u["std_map"]["n"],
                "rho (std map)": u["std_map"]["rho"],
                "p (std map)": u["std_map"]["p"],
                "rho (T1 std over rounds)": u["round_t1_std"]["rho"],
                "p (T1 std over rounds)": u["round_t1_std"]["p"],
            }
        )
    return rows


def example_slice(
    profile: Profile, acc: int, name: str = "T1map", which: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One validation slice of the mapping task: its times [ms], its fully sampled weighted
    images on their common scale ``(n, S, S)`` and its truth on that grid
    (:func:`truth_on_grid`)."""
    paths, pre = paths_for(profile), profile.preprocess
    _, tgt, meta = load_pairs(
        pairs_path(paths.pairs, "mapping", acc),
        "val",
        expect=pairs_stamp(paths.data, "mapping", pre),
    )
    chosen = [g for g in _groups(meta) if g[1] == name]
    if not chosen:
        raise ValueError(f"no {MAP_COIL} {name} slice in the validation split")
    case, _, z, idx = chosen[which % len(chosen)]
    times = io.load_times(
        io.file_path(paths.data, MAP_COIL, "mapping", case, name, acc=acc, kind="times")
    )
    truth = truth_on_grid(load_truth(truth_path(paths.data, "TrainingSet", case, name)), z, pre)
    return times, tgt[idx] * meta["scale"][idx][:, None, None], truth


def panels(
    profile: Profile, acc: int, labels: list[str]
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The first T1 and the first T2 slice's maps for
    :func:`~diffcmr_core.study.writeup.plots.maps_figure`
    (``labels`` among the methods, ``truth``)."""
    saved = load_maps(profile, acc)
    out, titles = [], []
    for name, key in (("T1map", "T1"), ("T2map", "T2")):
        tags = sorted({k.rsplit("/", 1)[0] for k in saved if f"/{name}/" in k})
        if tags:
            out.append({lab: saved[f"{tags[0]}/{lab}"] for lab in labels})
            titles.append(f"{key} {tags[0].split('/')[0]} slice {tags[0].rsplit('/', 1)[1]}")
    return out, titles


# healthy myocardium at 3 T (native MOLLI T1; T2): mean and between-subject SD in ms, Granitz et
# al., Wien Klin Wochenschr 2019 (60 volunteers); Roy et al., JCMR 2017 measured 1122 +- 57 and
# 52 +- 6, with a day-to-day coefficient of variation of 6.2 % (T1) and 7 % (T2)
HEALTHY_3T = {"T1": (1184.0, 38.0), "T2": (51.6, 3.0)}


def clinical_frame(best: dict[tuple[int, str], float]) -> str:
    """A sentence putting the best method's myocardial errors (``best``: ``(acc, "T1"|"T2") ->
    MAE`` in ms) beside what separates healthy subjects (:data:`HEALTHY_3T`)."""
    if not best:
        return ""
    ratios = ", ".join(
        f"{key} {acc}x {mae:.0f} ms = {mae / HEALTHY_3T[key][1]:.1f} SD"
        for (acc, key), mae in sorted(best.items())
    )
    return (
        "* **For scale**: healthy myocardium at 3 T measures T1 "
        f"{HEALTHY_3T['T1'][0]:.0f} +- {HEALTHY_3T['T1'][1]:.0f} ms and T2 "
        f"{HEALTHY_3T['T2'][0]:.1f} +- {HEALTHY_3T['T2'][1]:.1f} ms between subjects (MOLLI; "
        "Granitz et al., Wien Klin Wochenschr 2019; Roy et al., JCMR 2017: 1122 +- 57 and 52 +- "
        "6 ms, day to day 6.2 % and 7 %). The best method's mean myocardial error, in those "
        f"between-subject SDs: {ratios}. An error of one SD moves a healthy value to the edge of "
        "the normal range; these maps are for studying the reconstructions, not for diagnosis."
    )


def findings(results: dict[int, dict], rounds: int) -> str:
    """The maps' results in sentences, generated from ``results`` (:func:`map_errors` per
    factor)."""
    best = f"DiffCMR R={rounds}"
    lines, best_mae = [], {}
    for acc, res in results.items():
        idx = {
            (r["method"], r["map"], r["region"], r["reference"], r["scaling"]): r
            for r in res["rows"]
        }
        parts = []
        for key in ("T1", "T2"):
            mae = {
                m: idx[(m, key, "myo", "full", "common")]["mae"]
                for m in res["methods"]
                if (m, key, "myo", "full", "common") in idx
            }
            mae = {m: v for m, v in mae.items() if np.isfinite(v)}
            if not mae:
                continue
            order = sorted(mae, key=mae.get)
            best_mae[(acc, key)] = mae[order[0]]
            parts.append(
                f"myocardial {key} error {', '.join(f'{m} {mae[m]:.0f}' for m in order)} ms "
                f"(best: {order[0]})"
            )
        if parts:
            lines.append(f"* **{acc}x** against the fully sampled maps: " + "; ".join(parts) + ".")
        for key in ("T1",):
            c, o = (
                idx.get((best, key, "myo", "full", "common")),
                idx.get((best, key, "myo", "full", "own")),
            )
            if c and o:
                lines.append(
                    f"  Without the common scale, {best}'s myocardial {key} error is "
                    f"{o['mae']:.0f} ms instead of {c['mae']:.0f} ms, with "
                    f"{100 * o['unfitted']:.0f} % of the myocardium unfitted "
                    f"({100 * c['unfitted']:.0f} % with it)."
                )
        lines += _uncertainty_sentences(res["uncertainty"])
    lines.append(clinical_frame(best_mae))
    return "\n".join(line for line in lines if line)


def _uncertainty_sentences(u: dict[str, dict[str, float]]) -> list[str]:
    """What each uncertainty's rank correlation with the T1 error says, in words."""
    lines = []
    for name, what in (
        ("std_map", "the paper's uncertainty map"),
        ("round_t1_std", "the spread of T1 over rounds"),
    ):
        rho, p, n = u[name]["rho"], u[name]["p"], u[name]["n"]
        if not np.isfinite(rho):
            lines.append(f"  {what.capitalize()}: too few pixels ({n}) to correlate.")
            continue
        verdict = (
            "does not predict the T1 error"
            if p >= 0.05
            else "ranks the error inversely, weakly"
            if rho < 0
            else "follows the T1 error only weakly"
            if rho < 0.3
            else "predicts where the T1 error is large"
        )
        lines.append(
            f"  {what[0].upper() + what[1:]} {verdict} (Spearman rho = {rho:.2f}, "
            f"p = {p:.2g}, {n} pixels)."
        )
    return lines
