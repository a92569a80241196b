"""The CMRxRecon challenge's own protocol: what ``run4Ranking.m`` keeps of a reconstruction, the
submission files (``img4ranking``), and the scoring of ``Evaluation/Main_Score.py``.

Read from the organisers' repository (CmrxRecon/CMRxRecon), in our words:

* ``run4Ranking(img, filetype)``: ``img`` is the reconstruction at the **original matrix size**,
  MATLAB order ``(sx, sy, sz, t)`` (sx the read-out with its oversampling, sy the phase
  encoding). It keeps the central two slices ``round(sz/2)-1 : round(sz/2)`` (every slice when
  ``sz < 3``), the first three frames (cine) or every weighting (mapping), takes the magnitude
  and crops the centre to ``round(sx/3) x round(sy/2)`` with Lustig's ``crop.m`` (1-based
  ``floor(m/2)+1+ceil(-s/2) : floor(m/2)+ceil(s/2)``); single precision.
* The submission: ``<MultiCoil|SingleCoil>/<Cine|Mapping>/ValidationSet/AccFactorXX/PNNN/
  <cine_sax|cine_lax|T1map|T2map>.mat`` holding ``img4ranking``. The scorer reads it with
  ``scipy.io.loadmat`` (MATLAB v5) and falls back to h5py for v7.3, which returns the axes
  reversed, and its metrics then fail: write v5.
* Scoring: for each 2D image of ``img4ranking`` (slice i, frame j) both images are divided by
  their own maximum, then PSNR and SSIM (scikit-image, ``data_range = gt.max()``) and NMSE; the
  mean per file, then the mean over files, per coil type, file kind (sax, lax, T1, T2) and
  factor. Per file kind and factor, the *larger* of the MultiCoil and SingleCoil means is kept
  for every metric (``get_mean_max_value``; for NMSE, where lower is better, that is the worse
  of the two: we do what their code does); then the mean of the two file kinds of a task per
  factor (NaN-aware), and the mean over the three factors.

Where our synthetic data is smaller than MATLAB's code allows (a cine file with fewer than
three frames, one slice), we keep what there is instead of failing as MATLAB would.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import ifft2c
from diffcmr_core.errors import CMRxReconError
from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.metrics import METRICS, all_metrics

KEY = "img4ranking"


def matlab_round(x: float) -> int:
    """MATLAB's ``round``: halves away from zero (Python's rounds them to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def ranking_selection(name: str, frames: int, slices: int) -> tuple[list[int], list[int]]:
    """0-based frames and slices that ``run4Ranking`` keeps of a file ``name`` with ``frames``
    frames (weightings) and ``slices`` slices."""
    keep_frames = list(range(min(3, frames))) if name.startswith("cine") else list(range(frames))
    if slices < 3:
        keep_slices = list(range(slices))
    else:
        mid = matlab_round(slices / 2)
        keep_slices = [mid - 2, mid - 1]
    return keep_frames, keep_slices


def ranking_crop(images: np.ndarray) -> np.ndarray:
    """The centre crop of ``run4Ranking`` of magnitude or complex images ``(t, z, ky, kx)`` (our
    order: already the kept frames and slices): float32 ``img4ranking`` in MATLAB order
    ``(round(kx/3), round(ky/2), z, t)``."""
    mag = np.abs(np.asarray(images)).transpose(3, 2, 1, 0)  # (sx, sy, sz, t)
    out = mag
    for axis, keep in ((0, matlab_round(mag.shape[0] / 3)), (1, matlab_round(mag.shape[1] / 2))):
        m = mag.shape[axis]
        start = m // 2 - keep // 2  # crop.m's floor(m/2)+1+ceil(-s/2), 0-based
        out = np.take(out, np.arange(start, start + keep), axis=axis)
    return np.ascontiguousarray(out, np.float32)


def run4ranking(images: np.ndarray, name: str) -> np.ndarray:
    """``run4Ranking`` of a whole file's images ``(t, z, ky, kx)`` (our order, at the original
    matrix size): keep the frames and slices, take the magnitude, crop the centre."""
    frames, slices = ranking_selection(name, images.shape[0], images.shape[1])
    return ranking_crop(np.asarray(images)[frames][:, slices])


def original_size_images(kspace: np.ndarray, multicoil: bool) -> np.ndarray:
    """Images at the original matrix size from k-space ``(..., [kc,] ky, kx)``: centred
    orthonormal iFFT per coil, then RSS (multi-coil) or magnitude; float32 ``(..., ky, kx)``
    (the organisers' ``ifft2c`` + ``rss`` up to a constant factor, which the scoring's
    normalisation removes)."""
    img = ifft2c(np.asarray(kspace, np.complex64))
    power = img.real**2 + img.imag**2
    return np.sqrt(power.sum(-3) if multicoil else power).astype(np.float32)


def ranking_kspace(path: Path, coil: str, name: str, acc: int | None = None):
    """The k-space of the frames and slices ``run4Ranking`` keeps of a file (fully sampled, or
    under-sampled at ``acc``), read alone: ``(kspace (t, z, [kc,] ky, kx), full shape)``."""
    key = io.kspace_key(coil, acc)
    shape = io.kspace_shape(path, key)
    frames, slices = ranking_selection(name, shape[0], shape[1])
    index = (slice(frames[0], frames[-1] + 1), slice(slices[0], slices[-1] + 1))
    return io.load_kspace(path, key, index=index), shape


def reference_ranking(full_path: Path, coil: str, name: str) -> np.ndarray:
    """``img4ranking`` of a fully sampled file: only its kept frames and slices are read."""
    kspace, _ = ranking_kspace(full_path, coil, name)
    return ranking_crop(original_size_images(kspace, coil == "MultiCoil"))


# ----------------------------------------------------------------------------- files
def submission_path(
    out: str | Path, coil: str, task: str, split: str, acc: int, case: str, name: str
) -> Path:
    """Where the submission file of one case's file ``name`` goes under ``out`` (the organisers'
    layout)."""
    return (
        Path(out)
        / coil
        / io.TASK_FOLDER[task]
        / split
        / f"AccFactor{acc:02d}"
        / case
        / f"{name}.mat"
    )


def save_ranking(path: str | Path, img4ranking: np.ndarray) -> None:
    """Write ``img4ranking`` (float32, MATLAB order) as a MATLAB v5 file, atomically."""
    array = np.asarray(img4ranking)
    if array.dtype != np.float32 or array.ndim != 4:
        raise ValueError(
            f"img4ranking must be float32 (sx, sy, sz, t), got {array.dtype} {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"img4ranking for {path} has non-finite values")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            scipy.io.savemat(fh, {KEY: array}, format="5", do_compression=False)


def load_ranking(path: str | Path) -> np.ndarray:
    """``img4ranking`` of a submission file, read as the organisers read it (``scipy.io.loadmat``).
    A v7.3 (HDF5) file, which their scorer reads with reversed axes, or a file without the
    variable is an error naming the file."""
    path = Path(path)
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:
        raise CMRxReconError(
            path,
            "a MATLAB v7.3 (HDF5) file: the organisers read submissions "
            "with scipy.io.loadmat, and their h5py fallback returns the axes "
            "reversed; save it as MATLAB v5",
        ) from None
    except Exception as err:  # noqa: BLE001 - scipy raises many types for a short or garbage file
        raise CMRxReconError(
            path, f"unreadable submission file ({type(err).__name__}: {err})"
        ) from None
    if KEY not in data:
        raise CMRxReconError(
            path, f"no variable {KEY!r} (found {sorted(k for k in data if not k.startswith('__'))})"
        )
    return np.asarray(data[KEY])


# ----------------------------------------------------------------------------- scoring
def score_file(pred: np.ndarray, gt: np.ndarray, path: Path | None = None) -> dict[str, float]:
    """Mean PSNR / SSIM / NMSE over the 2D images ``[:, :, i, j]`` of two ``img4ranking``
    arrays (each image normalised by its own maximum)."""
    if pred.shape != gt.shape:
        raise CMRxReconError(
            path, f"img4ranking has shape {pred.shape}; the reference's is {gt.shape}"
        )
    bad = int(np.size(pred) - np.isfinite(pred).sum())
    if bad:
        raise CMRxReconError(
            path,
            f"{bad} NaN or infinite pixels: not scored (a NaN-aware mean would silently drop them)",
        )
    flat = [
        (i, j)
        for i in range(pred.shape[2])
        for j in range(pred.shape[3])
        if not np.any(pred[:, :, i, j])
    ]
    if flat:
        raise CMRxReconError(
            path,
            f"{len(flat)} all-zero images (slice, frame: "
            f"{', '.join(f'{i + 1}, {j + 1}' for i, j in flat[:3])}"
            f"{' ...' if len(flat) > 3 else ''}): not scored",
        )
    scores = [
        all_metrics(gt[:, :, i, j], pred[:, :, i, j])
        for i in range(gt.shape[2])
        for j in range(gt.shape[3])
    ]
    return {m: float(np.mean([s[m] for s in scores])) for m in METRICS}


@dataclass
class Scores:
    """What :func:`score_submission` found: per-file rows, per-set rows, the ranking rows, and
    the files it could not score."""

    files: list[dict]
    sets: list[dict]
    ranking: list[dict]
    missing: list[str]
    failed: list[str]
    unmatched: list[str] = dataclasses.field(default_factory=list)  # submitted, no truth


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _truth_jobs(truth: Path, split: str, tasks, accs, cases) -> list[tuple]:
    """``(coil, task, acc, case, name, fully sampled file)`` for every file of ``truth`` to
    score, once per factor."""
    jobs = []
    for coil in io.COIL_TYPES:
        for task in tasks:
            full_dir = truth / coil / io.TASK_FOLDER[task] / split / "FullSample"
            if not full_dir.is_dir():
                continue
            for case in sorted(p.name for p in full_dir.iterdir() if p.is_dir()):
                if cases is not None and case not in cases:
                    continue
                for name in io.TASK_FILES[task]:
                    full = io.file_path(truth, coil, task, case, name, split=split)
                    if full.is_file():
                        jobs.extend((coil, task, acc, case, name, full) for acc in accs)
    return jobs


def _set_rows(files: list[dict], unscored: dict, tasks, accs) -> list[dict]:
    """Per coil type, file kind and factor: the mean of each metric over the scored files (a
    set none of whose files scored: a row of NaN), with the counts scored and not scored."""
    sets = []
    for coil in io.COIL_TYPES:
        for task in tasks:
            for name in io.TASK_FILES[task]:
                for acc in accs:
                    rows = [
                        r for r in files if (r["coil"], r["file"], r["acc"]) == (coil, name, acc)
                    ]
                    lost = unscored.get((coil, name, acc), 0)
                    if not rows and not lost:
                        continue
                    means = {
                        m: float(np.mean([r[m] for r in rows])) if rows else float("nan")
                        for m in METRICS
                    }
                    sets.append(
                        {
                            "coil": coil,
                            "task": task,
                            "file": name,
                            "acc": acc,
                            "files": len(rows),
                            "not scored": lost,
                            **means,
                        }
                    )
    return sets


def _ranking_rows(sets: list[dict], tasks, accs) -> list[dict]:
    """The leaderboard's rows: per task and factor, the larger of the two coil types' means of
    each file kind, averaged over the kinds; then the mean over the factors."""
    ranking = []
    for task in tasks:
        per_acc = []
        for acc in accs:
            kinds = []
            for name in io.TASK_FILES[task]:
                both = [s for s in sets if (s["file"], s["acc"]) == (name, acc) and s["files"]]
                kinds.append({m: max((s[m] for s in both), default=float("nan")) for m in METRICS})
            row = {m: _nanmean(k[m] for k in kinds) for m in METRICS}
            per_acc.append(row)
            ranking.append({"task": task, "acc": acc, **row})
        means = {m: _nanmean(r[m] for r in per_acc) for m in METRICS}
        ranking.append({"task": task, "acc": "mean", **means})
    return ranking


def score_submission(
    submission: str | Path,
    truth: str | Path,
    *,
    split: str = "ValidationSet",
    tasks: tuple[str, ...] = io.TASKS,
    accs: tuple[int, ...] = io.ACCS,
    cases: list[str] | None = None,
    progress: bool = False,
) -> Scores:
    """Score a submission folder against the fully sampled files of ``truth`` (a CMRxRecon tree
    holding ``<coil>/<Task>/<split>/FullSample``), the way the leaderboard does. ``cases``:
    only these (default: every case of the truth)."""
    from tqdm.auto import tqdm

    submission, truth = Path(submission), Path(truth)
    if not submission.is_dir():
        raise CMRxReconError(submission, "submission folder not found")
    jobs = _truth_jobs(truth, split, tasks, accs, cases)
    if not jobs:
        raise CMRxReconError(truth, f"no fully sampled {split} files to score against")
    refs: dict[Path, np.ndarray] = {}
    files, missing, failed = [], [], []
    expected = set()
    unscored: dict[tuple[str, str, int], int] = {}
    for coil, task, acc, case, name, full in tqdm(jobs, desc="score", disable=not progress):
        sub = submission_path(submission, coil, task, split, acc, case, name)
        expected.add(sub)
        if not sub.is_file():
            missing.append(str(sub))
            unscored[(coil, name, acc)] = unscored.get((coil, name, acc), 0) + 1
            continue
        try:
            if full not in refs:
                refs[full] = reference_ranking(full, coil, name)
            row = score_file(load_ranking(sub), refs[full], sub)
        except CMRxReconError as err:
            failed.append(str(err))
            unscored[(coil, name, acc)] = unscored.get((coil, name, acc), 0) + 1
            continue
        files.append({"coil": coil, "task": task, "file": name, "acc": acc, "case": case, **row})
    unmatched = sorted(
        str(p)
        for p in submission.rglob("*.mat")
        if split in p.parts
        and p not in expected
        and (cases is None or any(c in p.parts for c in cases))
    )
    if not files:
        raise CMRxReconError(submission, _nothing_scored(missing, failed, unmatched, truth))
    sets = _set_rows(files, unscored, tasks, accs)
    return Scores(files, sets, _ranking_rows(sets, tasks, accs), missing, failed, unmatched)


def _nothing_scored(missing, failed, unmatched, truth) -> str:
    """The message of a submission none of whose files could be scored."""
    return (
        f"no file could be scored: {len(missing)} missing, {len(failed)} unreadable or invalid"
        + (f" (first: {(failed or missing)[0]})" if failed or missing else "")
        + (
            f"; {len(unmatched)} submitted files have no fully sampled file in {truth}"
            if unmatched
            else ""
        )
    )
