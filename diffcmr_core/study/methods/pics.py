"""The PI-CS baseline in the study: its parameters chosen on training slices, and its images put
through the networks' preprocessing (the registry's ``cs`` method calls these).

:func:`choose` runs the grid of weights and iterations of the profile's
:class:`~diffcmr_core.method.classical.CSConfig` on ``tuning_slices`` training slices per coil
type and factor (spread through the training split, each factor at other places),
scores each setting by the paper's protocol against the training targets and keeps, per coil
type, the best mean PSNR. Validation slices are never looked at. The choice and the whole grid's
scores go to ``choice.json`` beside the networks' checkpoints (atomically; reused while the
configuration, the pairs and the factors are the same).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffcmr_core.data import acquired
from diffcmr_core.data.kspace import kspace_to_image, roi_box
from diffcmr_core.data.pairs import PreprocessConfig, load_pairs, pairs_path, pairs_stamp
from diffcmr_core.errors import CheckpointError, CMRxReconError
from diffcmr_core.fileio import atomic_path, write_text_atomic
from diffcmr_core.method.classical import CSConfig, coil_kspace, pics_path
from diffcmr_core.method.metrics import psnr
from diffcmr_core.study.settings.profiles import paths_for

READOUT_MARGIN = 8  # native columns solved beyond the region on each side
CHOICE_FILE = "choice.json"  # beside the networks' checkpoints, in the method's model folder


def native_columns(pre: PreprocessConfig, nx: int) -> tuple[int, int] | None:
    """The image columns of a file with ``nx`` read-out samples that the preprocessing's region
    keeps (``pre.roi``'s column fraction of the ``pad_to`` grid, mapped back to the file's grid),
    with :data:`READOUT_MARGIN` columns each side; ``None`` when the whole read-out is kept."""
    if pre.roi is None or pre.crop or pre.roi[1] >= 1.0:
        return None

    a, b = roi_box(pre.pad_to, pre.roi[1])
    ratio = nx / pre.pad_to
    x0 = math.floor(nx // 2 + (a - pre.pad_to // 2) * ratio) - READOUT_MARGIN
    x1 = math.ceil(nx // 2 + (b - pre.pad_to // 2) * ratio) + READOUT_MARGIN
    return max(0, x0), min(nx, x1)


def _images(
    acq: acquired.Acquired,
    weight: float,
    record: tuple[int, ...],
    cfg: CSConfig,
    pre: PreprocessConfig,
    cache: Path | None = None,
) -> dict[int, np.ndarray]:
    """One slice's PI-CS frames through the preprocessing, after each number of iterations in
    ``record``: ``{iterations: (F, S, S)}`` at the data's scale.

    ``cache``: a folder where the images are kept under a hash of everything they depend on (the
    k-space and mask bytes, the weight, the iterations, the PI-CS and preprocessing settings), so
    that the same slice reconstructed again (by the challenge's protocol and by the maps, or a
    rerun) is read back instead of solved; a missing or unreadable entry is solved again."""
    key = None
    if cache is not None:
        h = hashlib.sha256(np.ascontiguousarray(acq.kspace).tobytes())
        h.update(np.ascontiguousarray(acq.mask).tobytes())
        h.update(
            json.dumps(
                [
                    weight,
                    sorted(record),
                    dataclasses.asdict(cfg),
                    dataclasses.asdict(pre),
                    list(acq.kspace.shape),
                ],
                default=list,
            ).encode()
        )
        key = cache / f"{h.hexdigest()[:40]}.npz"
        try:
            with np.load(key) as f:
                return {it: f[str(it)] for it in record}
        except (OSError, KeyError, ValueError):
            pass
    images, maps = pics_path(
        acq.kspace, acq.mask, weight, record, cfg, columns=native_columns(pre, acq.kspace.shape[-1])
    )
    opts = dict(pad_to=pre.pad_to, size=pre.size, crop=pre.crop, roi=pre.roi)
    out = {
        it: kspace_to_image(
            coil_kspace(image, maps), multicoil=True, resize_method=pre.resize, **opts
        )
        for it, image in images.items()
    }
    if key is not None:
        try:
            key.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(key) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{str(it): v for it, v in out.items()})
        except OSError:
            pass  # a cache that cannot be written is skipped
    return out


def pics_images(
    batch,
    choice: dict[str, dict],
    cfg: CSConfig,
    *,
    progress: bool = False,
    cache: Path | None = None,
) -> np.ndarray:
    """PI-CS images of a :class:`~diffcmr_core.study.methods.Batch` ``[N, S, S]``, each divided
    by its input's maximum, with the chosen weight and iterations of its coil type (``cache``:
    see :func:`_images`). A coil type the choice has no entry for (a profile whose pairs hold one
    coil type, reconstructing a file of the other for the challenge's protocol) takes the entry
    of the other."""
    out = np.zeros_like(batch.inputs, dtype=np.float32)
    for acq in tqdm(batch.acquired, desc="PI-CS", disable=not progress, unit="slice"):
        pick = choice.get(acq.coil) or next(iter(choice.values()))
        images = _images(acq, pick["weight"], (pick["iterations"],), cfg, batch.preprocess, cache)
        images = images[pick["iterations"]]
        out[acq.index] = images / batch.scale[acq.index][:, None, None]
    return out


def _tuning_slices(
    meta: dict[str, np.ndarray], coil: str, n: int, part: int, parts: int
) -> np.ndarray:
    """``n`` training images of ``coil`` spread through the split: at the fractions
    ``(j + (part + 0.5) / parts) / n`` of its images (by position), so that the ``parts``
    factors take ``n`` images each and no two take the same place."""
    idx = np.flatnonzero(meta["coil"] == coil)
    if len(idx) == 0:
        return idx
    fractions = (np.arange(n) + (part + 0.5) / parts) / n
    return idx[np.unique(np.minimum((fractions * len(idx)).astype(int), len(idx) - 1))]


def _subset(meta: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in meta.items()}


def _record(cfg: CSConfig, task: str, accs: tuple[int, ...], stamps: list[str]) -> dict:
    return {"config": dataclasses.asdict(cfg), "task": task, "accs": list(accs), "pairs": stamps}


def _choice_is_current(out: Path, want: dict) -> bool:
    """Whether ``out`` holds a choice made with the settings ``want`` (unreadable: no)."""
    if not out.is_file():
        return False
    try:
        old = json.loads(out.read_text())
    except ValueError:
        return False
    return {k: old.get(k) for k in want} == json.loads(json.dumps(want, default=list))


def _tuning_jobs(profile, task: str, accs: tuple[int, ...], cfg: CSConfig) -> list[tuple]:
    """``(acc, coil, slice indices, targets, meta)`` of the training slices PI-CS is tuned on."""

    paths, pre = paths_for(profile), profile.preprocess
    jobs = []
    for part, a in enumerate(accs):
        _, tgt, meta = load_pairs(
            pairs_path(paths.pairs, task, a), "train", expect=pairs_stamp(paths.data, task, pre)
        )
        for coil in pre.coils:
            idx = _tuning_slices(meta, coil, cfg.tuning_slices, part, len(accs))
            if len(idx):
                jobs.append((a, coil, idx, tgt, meta))
    if not jobs:
        raise CMRxReconError(
            paths.pairs, f"no {task} training slices to choose the PI-CS parameters on"
        )
    return jobs


def _best_per_coil(rows: list[dict], grid, coils) -> dict[str, dict]:
    """Per coil type, the (weight, iterations) of the grid with the best mean training PSNR."""
    choice = {}
    for coil in coils:
        scores = {}
        for w, it in grid:
            got = [
                r["psnr"]
                for r in rows
                if (r["coil"], r["weight"], r["iterations"]) == (coil, w, it)
            ]
            scores[(w, it)] = np.mean(got)
        scores = {k: v for k, v in scores.items() if np.isfinite(v)}
        if scores:
            (w, it), best = max(scores.items(), key=lambda kv: kv[1])
            choice[coil] = {"weight": w, "iterations": it, "training_psnr": float(best)}
    return choice


def choose(
    profile, task: str, acc: int, out: Path, cfg: CSConfig, *, progress: bool = True
) -> Path:
    """Choose the weight and iterations on training slices; write and return ``out``
    (``choice.json``), or reuse it when it was made with the same settings."""

    paths, pre = paths_for(profile), profile.preprocess
    accs = tuple(profile.accs) if profile.shared_models else (acc,)
    want = _record(cfg, task, accs, [pairs_stamp(paths.data, task, pre) for _ in accs])
    if _choice_is_current(out, want):
        return out
    jobs = _tuning_jobs(profile, task, accs, cfg)
    rows = []
    bar = tqdm(
        total=len(jobs) * len(cfg.weights), desc=f"PI-CS weights {task}", disable=not progress
    )
    for a, coil, idx, tgt, meta in jobs:
        sub = _subset(meta, idx)
        acqs = acquired.of_pairs(paths.data, task, a, sub)
        for weight in cfg.weights:
            for acq in acqs:
                by_iterations = _images(acq, weight, cfg.iteration_grid, cfg, pre)
                for iterations, images in by_iterations.items():
                    for j, pos in enumerate(acq.index):
                        rows.append(
                            {
                                "acc": a,
                                "coil": coil,
                                "weight": weight,
                                "iterations": iterations,
                                "slice": int(idx[pos]),
                                "psnr": psnr(tgt[idx[pos]], images[j] / sub["scale"][pos]),
                            }
                        )
            bar.update()
    bar.close()
    grid = [(w, it) for w in cfg.weights for it in cfg.iteration_grid]
    choice = _best_per_coil(rows, grid, pre.coils)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out, json.dumps({**want, "choice": choice, "grid": rows}, indent=1, default=list)
    )
    return out


def load_choice(path: Path, cfg: CSConfig, task: str, acc: int, profile) -> dict[str, dict]:
    """The chosen ``{coil: {weight, iterations}}`` of ``choice.json``, checked to be this
    configuration's, for this task and factor; a missing or foreign file is an error naming it."""
    if not path.is_file():
        raise CheckpointError(
            path,
            f"no PI-CS parameters for {task} at {acc}x in profile "
            f"{profile.name}; choose them with `python -m diffcmr_core study "
            f"--profile {profile.name} --only 03_training`",
        )
    try:
        record = json.loads(path.read_text())
        choice, config, accs = record["choice"], record["config"], record["accs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            path, f"unreadable PI-CS choice ({err}); delete it and rerun 03_training"
        ) from None
    if not isinstance(choice, dict) or not choice:
        raise CheckpointError(
            path, "holds no PI-CS choice for any coil type; delete it and rerun 03_training"
        )
    if config != json.loads(json.dumps(dataclasses.asdict(cfg), default=list)):
        raise CheckpointError(path, f"was chosen with other PI-CS settings ({config})")
    if record.get("task") != task or acc not in accs:
        raise CheckpointError(
            path, f"was chosen for {record.get('task')} at {accs}, not {task} {acc}x"
        )
    return choice


def choice_table(profile, tasks=None, name: str = "cs") -> list[dict[str, object]]:
    """The PI-CS choice of each task and coil type (the method's ``choice.json``): the weight and
    iterations kept, their mean training PSNR, and the grid's worst and best means beside them."""

    rows = []
    for task in tasks or profile.tasks:
        path = paths_for(profile).data_layout.model(task, profile.accs[0], name) / CHOICE_FILE
        record = json.loads(path.read_text())
        for coil, pick in record["choice"].items():
            grid: dict[tuple, list[float]] = {}
            for r in record["grid"]:
                if r["coil"] == coil:
                    grid.setdefault((r["weight"], r["iterations"]), []).append(r["psnr"])
            means = [float(np.mean(v)) for v in grid.values()]
            rows.append(
                {
                    "task": task,
                    "coil": coil,
                    "weight": pick["weight"],
                    "iterations": pick["iterations"],
                    "training psnr": pick["training_psnr"],
                    "grid": f"{len(grid)} settings, {len(next(iter(grid.values())))} slices each",
                    "grid psnr range": f"{min(means):.2f}-{max(means):.2f}",
                }
            )
    return rows
