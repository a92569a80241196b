"""The phantom against the paper's RAW rows: the zero-filled input scored against the fully
sampled reference, which depends on the data and the preprocessing alone (no model).

For each task and factor: simulate cases (:func:`~diffcmr_core.data.phantom.simulate`), make the
paper's images (:func:`~diffcmr_core.data.kspace.kspace_to_image`: zero-pad, iFFT per coil, RSS,
resize; then, as the paper's code, each image divided by its own maximum), score every slice
with the challenge's metrics and average; the dynamic range mean(gt^2) / max(gt)^2 = MSE / NMSE
is reported beside it, as is the paper's value implied by its own PSNR and NMSE.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import equispaced_mask, ifft2c, kspace_to_image
from diffcmr_core.data.pairs import split_cases
from diffcmr_core.data.phantom import PhantomConfig, anatomy, case_name, simulate
from diffcmr_core.method.metrics import METRICS, all_metrics
from diffcmr_core.study.settings.paper import TABLE2_3

TOLERANCE = {"psnr": 1.0, "ssim": 0.04, "nmse": 1.5}  # +- dB, +- SSIM, factor (issue 12)


def paper_dynamic_range(task: str, acc: int) -> float:
    """mean(gt^2) / max^2 implied by the paper's RAW PSNR and NMSE: 10^(-PSNR/10) / NMSE."""
    p, _, n = TABLE2_3[task]["RAW"][acc]
    return 10 ** (-p / 10) / n


def raw_images(
    cfg: PhantomConfig,
    cases: range | list[int],
    *,
    pad_to: int,
    size: int,
    roi: tuple[float, float] | None = None,
    resize: str = "area",
    split: str = "TrainingSet",
    accs: tuple[int, ...] = io.ACCS,
    progress=None,
):
    """Yield ``(task, acc, coil, target, zero_filled)`` image stacks ``(n, size, size)``."""
    for index in cases:
        for task, names in io.TASK_FILES.items():
            for name in names:
                sim = simulate(cfg, index, name, split)
                for coil, k in sim.kspace.items():
                    opts = dict(
                        multicoil=coil == "MultiCoil",
                        pad_to=pad_to,
                        size=size,
                        roi=roi,
                        resize_method=resize,
                    )
                    gt = kspace_to_image(k, **opts).reshape(-1, size, size)
                    for acc in accs:
                        mask = equispaced_mask(*k.shape[-2:], acc, cfg.acs_lines)
                        zf = kspace_to_image(k * mask, **opts).reshape(-1, size, size)
                        yield task, acc, coil, gt, zf
                if progress is not None:
                    progress.update(1)


def _row(subject: str, task: str, acc: int, ms: list[dict[str, float]]) -> dict[str, object]:
    """One calibration row: the mean of the slices' metrics beside the paper's RAW row."""
    ours = {k: float(np.mean([m[k] for m in ms])) for k in (*METRICS, "range")}
    paper = dict(zip(METRICS, TABLE2_3[task]["RAW"][acc]))
    row: dict[str, object] = {"subject": subject, "task": task, "acc": acc, "slices": len(ms)}
    for k in METRICS:
        row[k], row[f"paper_{k}"] = ours[k], paper[k]
    row["nmse_ratio"] = ours["nmse"] / paper["nmse"]
    row["range"], row["paper_range"] = ours["range"], paper_dynamic_range(task, acc)
    row["psnr_ok"] = abs(ours["psnr"] - paper["psnr"]) <= TOLERANCE["psnr"]
    row["ssim_ok"] = abs(ours["ssim"] - paper["ssim"]) <= TOLERANCE["ssim"]
    row["nmse_ok"] = 1 / TOLERANCE["nmse"] <= row["nmse_ratio"] <= TOLERANCE["nmse"]
    return row


def raw_table(
    cfg: PhantomConfig,
    cases: range | list[int],
    *,
    pad_to: int = 512,
    size: int = 128,
    roi: tuple[float, float] | None = None,
    resize: str = "area",
    progress: bool = True,
) -> list[dict[str, object]]:
    """The RAW rows per subject, task and factor (mean over the subject's slices, both coil
    types), then the same over all ``cases`` (subject ``"all"``, every slice weighted alike),
    beside the paper's, with ``*_ok`` telling whether each metric is inside ``TOLERANCE`` and
    ``nmse_ratio`` = ours / the paper's. ``cases`` are 0-based TrainingSet indices (``P001`` is
    0), the subjects the table names."""
    from tqdm.auto import tqdm

    scores: dict[tuple[str, int], dict[int, list[dict[str, float]]]] = {}
    bar = tqdm(total=len(cases) * 4, desc="calibration files", disable=not progress)
    for index in cases:
        for task, acc, _, gt, zf in raw_images(
            cfg,
            range(index, index + 1),
            pad_to=pad_to,
            size=size,
            roi=roi,
            resize=resize,
            progress=bar,
        ):
            for g, z in zip(gt, zf):
                m = all_metrics(g, z)
                g = g / g.max()
                m["range"] = float((g**2).mean())
                scores.setdefault((task, acc), {}).setdefault(index, []).append(m)
    bar.close()
    rows = []
    for (task, acc), per in sorted(scores.items()):
        for index, ms in sorted(per.items()):
            rows.append(_row(case_name(index), task, acc, ms))
    if len(cases) > 1:
        for (task, acc), per in sorted(scores.items()):
            rows.append(_row("all", task, acc, [m for ms in per.values() for m in ms]))
    return rows


def evaluated_cases(profile) -> list[int]:
    """The 0-based TrainingSet indices of the subjects ``profile`` evaluates (its validation
    cases, as :func:`~diffcmr_core.data.pairs.split_cases` splits its phantom's cases)."""
    names = [case_name(i) for i in range(profile.phantom.n_cases)]
    _, val = split_cases(names, profile.preprocess.val_fraction)
    return [names.index(v) for v in val]


def profile_table(profile, frames: int = 3, progress: bool = True) -> list[dict[str, object]]:
    """:func:`raw_table` of ``profile``'s phantom (``frames`` frames per cine file) at its
    preprocessing, on the subjects it evaluates (:func:`evaluated_cases`)."""
    pre = profile.preprocess
    return raw_table(
        calibration_config(profile.phantom, frames=frames),
        evaluated_cases(profile),
        pad_to=pre.pad_to,
        size=pre.size,
        roi=pre.roi,
        resize=pre.resize,
        progress=progress,
    )


def calibration_config(
    cfg: PhantomConfig, frames: int = 3, slices: int | None = None
) -> PhantomConfig:
    """``cfg`` with fewer frames (spread over the cycle) and slices, for a faster estimate."""
    return dataclasses.replace(
        cfg,
        cine_frames=min(cfg.cine_frames, frames),
        sax_slices=min(cfg.sax_slices, slices or cfg.sax_slices),
        mapping_slices=min(cfg.mapping_slices, slices or cfg.mapping_slices),
    )


def interior(label: np.ndarray, tissue: str) -> np.ndarray:
    """Where ``label`` ``(..., y, x)`` is ``tissue`` with all 8 in-plane neighbours too: the region
    a reader's ROI would cover, without the pixels that share their voxel with a neighbour
    (partial volume at a 1.5 mm pixel: a wall's edge pixels carry blood)."""
    from scipy.ndimage import binary_erosion

    where = label == anatomy.LABEL[tissue]
    flat = where.reshape((-1,) + where.shape[-2:])
    out = np.stack([binary_erosion(w, np.ones((3, 3), bool)) for w in flat])
    return out.reshape(where.shape)


def cine_contrast(kspace: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """How a reader sees a cine file: on its fully sampled RSS image (centred iFFT per coil,
    root-sum-of-squares over coils, no padding or resizing), the mean blood over the mean
    myocardium, the image's maximum over the mean blood, and the fat's 99th percentile over
    the mean blood; blood and myocardium as a reader's ROIs, their :func:`interior` pixels.

    Args:
        kspace: multi-coil cine k-space ``(t, kz, kc, ky, kx)`` complex (h5py order).
        label: the phantom's tissue labels ``(t, kz, ky, kx)``
            (``Truth/<split>/<case>/<name>.npz``), indices into ``anatomy.TISSUE_NAMES``.
    """
    if kspace.ndim != 5 or label.shape != kspace.shape[:2] + kspace.shape[3:]:
        raise ValueError(
            f"cine_contrast: k-space {kspace.shape} (t, kz, kc, ky, kx) and labels "
            f"{label.shape} (t, kz, ky, kx) do not fit"
        )
    rss = np.sqrt((np.abs(ifft2c(kspace)) ** 2).sum(2))
    tissue = {name: interior(label, name) for name in ("blood", "myocardium")}
    tissue["fat"] = label == anatomy.LABEL["fat"]
    for name, where in tissue.items():
        if not where.any():
            raise ValueError(f"cine_contrast: no {name} pixel in the labels")
    blood = float(rss[tissue["blood"]].mean())
    return {
        "blood_over_myocardium": blood / float(rss[tissue["myocardium"]].mean()),
        "max_over_blood": float(rss.max()) / blood,
        "fat_p99_over_blood": float(np.percentile(rss[tissue["fat"]], 99)) / blood,
    }


def cine_snr(noisy: np.ndarray, clean: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """A cine file's myocardial SNR and blood-myocardium CNR as a reader measures them, with the
    noise known: on the multi-coil RSS images of the file (``noisy``) and of its noise-free twin
    (``clean``, the same file simulated with ``noise=0``), the mean :func:`interior` myocardium
    (and blood minus myocardium) of ``clean`` over the standard deviation of ``noisy - clean``
    in the myocardium. Shapes as :func:`cine_contrast`'s."""
    if noisy.shape != clean.shape:
        raise ValueError(f"cine_snr: k-spaces {noisy.shape} and {clean.shape} differ")
    rss = [np.sqrt((np.abs(ifft2c(k)) ** 2).sum(2)) for k in (noisy, clean)]
    myo, blood = interior(label, "myocardium"), interior(label, "blood")
    sd = float((rss[0] - rss[1])[myo].std())
    m, b = float(rss[1][myo].mean()), float(rss[1][blood].mean())
    return {"myocardial_snr": m / sd, "blood_myocardium_cnr": (b - m) / sd}


def findings(rows: list[dict[str, object]]) -> str:
    """The calibration table in words (Markdown): which subjects, and per metric how many of
    the per-subject cells lie within ``TOLERANCE`` of the paper's RAW rows, with the farthest."""
    per = [r for r in rows if r["subject"] != "all"]
    if not per:
        raise ValueError("findings: no per-subject row in the calibration table")
    subjects = sorted({str(r["subject"]) for r in per})
    n = len(per)
    worst = max(per, key=lambda r: abs(np.log(float(r["nmse_ratio"]))))
    far_psnr = max(per, key=lambda r: abs(float(r["psnr"]) - float(r["paper_psnr"])))
    far_ssim = max(per, key=lambda r: abs(float(r["ssim"]) - float(r["paper_ssim"])))

    def cell(r):
        return f"{r['subject']} {r['task']} {r['acc']}x"

    return (
        f"Computed on the subject{'s' if len(subjects) > 1 else ''} this profile evaluates "
        f"({', '.join(subjects)}), {n} subject x task x factor cells. "
        f"NMSE within x{TOLERANCE['nmse']:g} of the paper's in "
        f"{sum(bool(r['nmse_ok']) for r in per)} of {n} (farthest: "
        f"x{float(worst['nmse_ratio']):.2f}, {cell(worst)}); "
        f"PSNR within {TOLERANCE['psnr']:g} dB in "
        f"{sum(bool(r['psnr_ok']) for r in per)} of {n} (farthest: "
        f"{float(far_psnr['psnr']) - float(far_psnr['paper_psnr']):+.2f} dB, {cell(far_psnr)}); "
        f"SSIM within {TOLERANCE['ssim']:g} in {sum(bool(r['ssim_ok']) for r in per)} of {n} "
        f"(farthest: {float(far_ssim['ssim']) - float(far_ssim['paper_ssim']):+.3f}, "
        f"{cell(far_ssim)})."
    )


def rounded_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The table as written to ``calibration.csv``: floats to 4 decimals."""
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
