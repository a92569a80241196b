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
from diffcmr_core.data.phantom import PhantomConfig, anatomy, simulate
from diffcmr_core.method.metrics import METRICS, all_metrics
from diffcmr_core.study.settings.paper import TABLE2_3

TOLERANCE = {"psnr": 1.0, "ssim": 0.04, "nmse": 1.5}  # +- dB, +- SSIM, factor (issue 12)


def paper_dynamic_range(task: str, acc: int) -> float:
    """mean(gt^2) / max^2 implied by the paper's RAW PSNR and NMSE: 10^(-PSNR/10) / NMSE."""
    p, _, n = TABLE2_3[task]["RAW"][acc]
    return 10 ** (-p / 10) / n


def raw_images(
    cfg: PhantomConfig,
    cases: range,
    *,
    pad_to: int,
    size: int,
    roi: tuple[float, float] | None = None,
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
                    opts = dict(multicoil=coil == "MultiCoil", pad_to=pad_to, size=size, roi=roi)
                    gt = kspace_to_image(k, **opts).reshape(-1, size, size)
                    for acc in accs:
                        mask = equispaced_mask(*k.shape[-2:], acc, cfg.acs_lines)
                        zf = kspace_to_image(k * mask, **opts).reshape(-1, size, size)
                        yield task, acc, coil, gt, zf
                if progress is not None:
                    progress.update(1)


def raw_table(
    cfg: PhantomConfig,
    cases: range,
    *,
    pad_to: int = 512,
    size: int = 128,
    roi: tuple[float, float] | None = None,
    progress: bool = True,
) -> list[dict[str, object]]:
    """The RAW row per task and factor (mean over every slice of ``cases``, both coil types),
    beside the paper's, with ``within`` telling whether each metric is inside ``TOLERANCE``."""
    from tqdm.auto import tqdm

    scores: dict[tuple[str, int], list[dict[str, float]]] = {}
    bar = tqdm(total=len(cases) * 4, desc="calibration files", disable=not progress)
    for task, acc, _, gt, zf in raw_images(
        cfg, cases, pad_to=pad_to, size=size, roi=roi, progress=bar
    ):
        for g, z in zip(gt, zf):
            m = all_metrics(g, z)
            g = g / g.max()
            m["range"] = float((g**2).mean())
            scores.setdefault((task, acc), []).append(m)
    bar.close()
    rows = []
    for (task, acc), ms in sorted(scores.items()):
        ours = {k: float(np.mean([m[k] for m in ms])) for k in (*METRICS, "range")}
        paper = dict(zip(METRICS, TABLE2_3[task]["RAW"][acc]))
        row = {"task": task, "acc": acc, "slices": len(ms)}
        for k in METRICS:
            row[k], row[f"paper_{k}"] = ours[k], paper[k]
        row["range"], row["paper_range"] = ours["range"], paper_dynamic_range(task, acc)
        row["psnr_ok"] = abs(ours["psnr"] - paper["psnr"]) <= TOLERANCE["psnr"]
        row["ssim_ok"] = abs(ours["ssim"] - paper["ssim"]) <= TOLERANCE["ssim"]
        ratio = ours["nmse"] / paper["nmse"]
        row["nmse_ok"] = 1 / TOLERANCE["nmse"] <= ratio <= TOLERANCE["nmse"]
        rows.append(row)
    return rows


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


def cine_contrast(kspace: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """How a reader sees a cine file: on its fully sampled RSS image (centred iFFT per coil,
    root-sum-of-squares over coils, no padding or resizing), the mean blood pool over the mean
    myocardium, the image's maximum over the mean blood pool, and the fat's 99th percentile over
    the mean blood pool.

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
    tissue = {name: label == anatomy.LABEL[name] for name in ("blood", "myocardium", "fat")}
    for name, where in tissue.items():
        if not where.any():
            raise ValueError(f"cine_contrast: no {name} pixel in the labels")
    blood = float(rss[tissue["blood"]].mean())
    return {
        "blood_over_myocardium": blood / float(rss[tissue["myocardium"]].mean()),
        "max_over_blood": float(rss.max()) / blood,
        "fat_p99_over_blood": float(np.percentile(rss[tissue["fat"]], 99)) / blood,
    }
