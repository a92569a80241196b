"""Evaluation: reconstructions of a validation set in, per-slice metrics (CSV), their mean and
standard deviation, and the reconstructions themselves (HDF5, for the figures) out."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.metrics import HEART_METRICS, METRICS, all_metrics, region_metrics
from diffcmr_core.tables import write_table


def evaluate(
    name: str,
    recon: np.ndarray,
    target: np.ndarray,
    meta: dict[str, np.ndarray],
    out_dir: str | Path,
    extra: dict[str, np.ndarray] | None = None,
    *,
    write: bool = True,
    boxes: np.ndarray | None = None,
) -> dict[str, float]:
    """Score ``recon`` ``[N, S, S]`` against ``target``; write ``<name>_slices.csv`` and
    ``<name>_recon.h5`` (reconstructions, and ``extra`` arrays such as uncertainty maps) into
    ``out_dir`` (unless not ``write``: a rank other than the one that writes); return the mean
    and standard deviation of each metric. ``boxes`` ``[N, 4]`` (the heart's region of each
    slice, ``-1`` where unknown; ``study.steps.heart``) adds ``heart_psnr``, ``heart_ssim`` and
    ``heart_nmse`` inside it (:func:`~diffcmr_core.method.metrics.region_metrics`; NaN in the
    slice's row where unknown, the summary's means over the slices that have one)."""
    out_dir = Path(out_dir)
    rows = []
    for i in range(len(recon)):
        row = {
            k: (str(meta[k][i]) if meta[k].dtype.kind in "SU" else meta[k][i].item())
            for k in ("coil", "case", "file", "slice", "frame", "index")
            if k in meta
        }
        row.update(all_metrics(target[i], recon[i]))
        if boxes is not None:
            known = bool(np.all(boxes[i] >= 0))
            heart = region_metrics(target[i], recon[i], boxes[i]) if known else {}
            row.update({f"heart_{m}": heart.get(m, float("nan")) for m in METRICS})
        rows.append(row)
    if not write:
        return summarise(rows)
    write_table(rows, out_dir / f"{name}_slices.csv")
    with atomic_path(out_dir / f"{name}_recon.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f["recon"] = recon.astype(np.float32)
            for k, v in (extra or {}).items():
                f[k] = np.asarray(v, np.float32)
            f["index"] = meta["index"]
    return summarise(rows)


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation (``<metric>_std``, over the rows) of each metric of per-slice
    rows."""
    values = {m: np.array([r[m] for r in rows], float) for m in METRICS}
    out = {
        **{m: float(v.mean()) for m, v in values.items()},
        **{f"{m}_std": float(v.std()) for m, v in values.items()},
    }
    for m in HEART_METRICS:  # over the slices with a heart region, where any has one
        v = np.array([r.get(m, np.nan) for r in rows], float)
        if np.isfinite(v).any():
            out[m] = float(np.nanmean(v))
    return out


def read_recon(out_dir: str | Path, name: str, key: str = "recon") -> np.ndarray:
    """An array that :func:`evaluate` stored in ``<name>_recon.h5`` (``recon`` or an extra)."""
    with h5py.File(Path(out_dir) / f"{name}_recon.h5", "r") as f:
        return f[key][()]
