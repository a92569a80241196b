"""A challenge submission from a profile's trained models, and the challenge's scores of a split.

:func:`submit` reconstructs every under-sampled file of a split (only the frames and slices that
``run4Ranking`` keeps), brings each reconstruction back to the file's original matrix size,
and writes ``img4ranking`` where the organisers expect it (see
:mod:`diffcmr_core.method.challenge`). The profile's model for each task and factor (one per
task for every factor with ``shared_models``), checked to be that model (method, configuration,
training settings, task and factor), the profile's own preprocessing and sampling.

The way back to the original size: the network's images are the zero-padded k-space's images
resized to ``size x size`` (padding k-space keeps the field of view), each divided by the input
image's maximum. A reconstruction is multiplied by that maximum and resized to the file's
(ky, kx). With an image ``roi`` (the quick profile: the whole phase field of view, the central
5/16 of the read-out), the network sees only part of the field of view: its reconstruction goes
back into that region of the zero-filled image at the padded resolution, and the rest of the
image stays zero-filled.

A rerun keeps a file only when the same recipe made it (the checkpoint's bytes, the
preprocessing and the sampling settings: :func:`~diffcmr_core.study.methods.recipe`),
recorded beside the folder with the file's SHA-256 in ``.<folder>.made_by.json`` (rank 0) and
``.<folder>.made_by.rank<N>.json`` (the other ranks of a ``torchrun`` launch: each rank writes
its own record, every rank reads them all); files of an older model are redone.

Under ``torchrun`` (``torchrun --nproc-per-node 8 -m diffcmr_core submit ...``) the files are
split over the ranks (file ``k`` of the sorted list to rank ``k % world``); each slice's noise
is seeded by the seed and the slice's id (the file's place in the tree and the slice's index),
so the files do not depend on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffcmr_core.data import acquired
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import kspace_to_image, resize_to, roi_box
from diffcmr_core.data.pairs import PreprocessConfig, split_cases
from diffcmr_core.errors import CMRxReconError, DiffCMRError, ReconstructionError
from diffcmr_core.fileio import sha256, write_text_atomic
from diffcmr_core.method.challenge import (
    load_ranking,
    ranking_crop,
    ranking_kspace,
    ranking_selection,
    save_ranking,
    score_submission,
    submission_path,
)
from diffcmr_core.study import methods
from diffcmr_core.study.experiments.cost import submission_line
from diffcmr_core.study.methods import Batch, recipe
from diffcmr_core.study.settings.profiles import Profile, paths_for
from diffcmr_core.study.store import shard

Recon = Callable[[Batch], np.ndarray]  # a batch of slices -> [N, S, S] reconstructions


@dataclass
class Submission:
    """What :func:`submit` did: files written, files already there (kept), files skipped with
    the reason."""

    out: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What was written, kept and skipped, in lines."""
        lines = [
            f"submission in {self.out}: {len(self.written)} files written, {len(self.kept)} "
            f"already there (kept), {len(self.skipped)} skipped"
        ]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def back_to_original(
    recon: np.ndarray,
    scale: np.ndarray,
    zero_filled: np.ndarray | None,
    pre: PreprocessConfig,
    shape: tuple[int, int],
) -> np.ndarray:
    """Reconstructions ``[N, S, S]`` (input-normalised) at the original ``shape`` = (ky, kx).

    ``scale`` ``[N]``: each input's maximum. Without ``pre.roi``: a resize. With it: pasted
    into its region of ``zero_filled`` ``[N, pad_to, pad_to]`` (the zero-filled images before
    the roi crop and resize), then the whole image resized."""
    values = recon * scale[:, None, None]
    if pre.roi is None:
        return resize_to(values, shape)
    canvas = np.array(zero_filled, np.float32, copy=True)
    (y0, y1), (x0, x1) = (
        roi_box(canvas.shape[-2], pre.roi[0]),
        roi_box(canvas.shape[-1], pre.roi[1]),
    )
    canvas[:, y0:y1, x0:x1] = resize_to(values, (y1 - y0, x1 - x0))
    return resize_to(canvas, shape)


def _mask_of(path: Path, acc: int, kspace: np.ndarray) -> np.ndarray:
    """The sampling mask ``(ky, kx)`` of an under-sampled file: its ``_mask.mat`` beside it, or,
    where there is none, the lines that hold data (for the methods that read the acquisition)."""
    mask_path = path.with_name(f"{path.stem}_mask.mat")
    if mask_path.is_file():
        mask = io.load_mask(mask_path, io.mask_key(acc))
        if mask.shape != kspace.shape[-2:]:
            raise CMRxReconError(
                mask_path,
                f"mask {mask.shape} does not fit the k-space {kspace.shape[-2:]} of {path.name}",
            )
        return mask
    lines = np.abs(kspace).reshape(-1, *kspace.shape[-2:]).max(0).any(axis=1)
    return np.broadcast_to(lines[:, None], kspace.shape[-2:]).copy()


def file_ids(rel: str, n: int) -> np.ndarray:
    """Slice ids of a submission file's ``n`` images: the CRC-32 of its path in the submission
    (``MultiCoil/Cine/ValidationSet/AccFactor04/P001/cine_sax.mat``) and the image's index,
    so that a file's noise depends on which file it is, not on the run that makes it."""
    import zlib

    return (np.int64(zlib.crc32(rel.encode())) << np.int64(24)) + np.arange(n, dtype=np.int64)


def reconstruct_file(
    path: Path,
    coil: str,
    name: str,
    acc: int,
    pre: PreprocessConfig,
    recon: Recon,
    rel: str | None = None,
) -> np.ndarray:
    """``img4ranking`` of one under-sampled file: read the kept frames and slices, make the
    network's inputs (and, for the methods that need it, hand over the acquisition itself),
    reconstruct, go back to the original size, crop. ``rel``: the file's path in the
    submission, which seeds its slices' noise (:func:`file_ids`; default: the file's name)."""
    if pre.crop:
        raise DiffCMRError(None, "a submission needs image-domain preprocessing (crop=False)")
    kspace, shape = ranking_kspace(path, coil, name, acc)
    multicoil = coil == "MultiCoil"
    lead = kspace.shape[:2]
    inputs = kspace_to_image(
        kspace,
        multicoil=multicoil,
        pad_to=pre.pad_to,
        size=pre.size,
        roi=pre.roi,
        resize_method=pre.resize,
    ).reshape(-1, pre.size, pre.size)
    zero_filled = None
    if pre.roi is not None:
        zero_filled = kspace_to_image(
            kspace, multicoil=multicoil, pad_to=pre.pad_to, size=None
        ).reshape(-1, pre.pad_to, pre.pad_to)
    if not np.isfinite(inputs).all():
        raise CMRxReconError(
            path,
            "its images overflow float32 (k-space values too large, or NaN / infinite samples)",
        )
    scale = inputs.reshape(len(inputs), -1).max(1).astype(np.float32)
    if np.any(scale <= 0):
        raise CMRxReconError(path, "an under-sampled image is all zeros")
    batch = Batch(
        np.ascontiguousarray(inputs / scale[:, None, None], np.float32),
        scale,
        pre,
        lambda: acquired.of_block(kspace, _mask_of(path, acc, kspace), coil, path),
        file_ids(rel or path.name, len(inputs)),
    )
    try:
        out = recon(batch)
    except ReconstructionError as err:  # the data's fault: this file is named and skipped
        raise CMRxReconError(path, f"cannot be reconstructed: {err.problem}") from None
    if not np.isfinite(out).all():
        raise CMRxReconError(path, "the reconstruction has NaN or infinite pixels")
    images = ranking_crop(
        back_to_original(out, scale, zero_filled, pre, shape[-2:]).reshape(*lead, *shape[-2:])
    )
    if not np.isfinite(images).all():
        raise CMRxReconError(path, "its reconstruction overflows float32 at the original scale")
    return images


def expected_model(profile: Profile, task: str, acc: int, method: str) -> dict:
    """What the checkpoint that reconstructs ``task`` at ``acc`` with a network ``method`` must
    be (the keywords of :func:`~diffcmr_core.method.checkpoints.check_checkpoint`)."""
    return methods.get(method).expected(profile, task, acc)


def model_recon(
    profile: Profile,
    task: str,
    acc: int,
    method: str,
    *,
    device: torch.device | None = None,
    progress: bool = False,
) -> Recon:
    """A reconstruction function with the profile's fitted ``method`` for ``task`` and ``acc``
    (``raw``: the zero-filled input itself). A missing model is an error naming the task, the
    factor and the command that fits it."""
    if method not in methods.names():
        raise ValueError(f"method must be one of {methods.names()}, got {method!r}")
    run = methods.get(method).reconstructor(profile, task, acc, device=device, progress=progress)
    return lambda batch: run(batch)["mean"]


def _split_files(
    data: Path, split: str, tasks, accs, cases
) -> list[tuple[str, str, int, str, str, Path]]:
    jobs = []
    for coil in io.COIL_TYPES:
        for task in tasks:
            for acc in accs:
                folder = data / coil / io.TASK_FOLDER[task] / split / f"AccFactor{acc:02d}"
                if not folder.is_dir():
                    continue
                for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                    if cases is not None and case_dir.name not in cases:
                        continue
                    for name in io.TASK_FILES[task]:
                        path = io.file_path(
                            data, coil, task, case_dir.name, name, acc=acc, split=split
                        )
                        if path.is_file():
                            jobs.append((coil, task, acc, case_dir.name, name, path))
    return jobs


def _images(jobs: list[tuple]) -> int:
    """The images (kept frames x kept slices) of the jobs' files, from their headers alone; a
    file whose header cannot be read counts nothing here (the loop reports it)."""
    total = 0
    for coil, _task, acc, _case, name, path in jobs:
        try:
            shape = io.kspace_shape(path, io.kspace_key(coil, acc))
        except CMRxReconError:
            continue
        frames, slices = ranking_selection(name, shape[0], shape[1])
        total += len(frames) * len(slices)
    return total


def _finished(path: Path) -> bool:
    try:
        load_ranking(path)
        return True
    except CMRxReconError:
        return False


def submit(
    profile: Profile,
    *,
    split: str = "ValidationSet",
    out: str | Path | None = None,
    data: str | Path | None = None,
    method: str = "diffcmr",
    cases: list[str] | None = None,
    progress: bool = True,
) -> Submission:
    """Reconstruct every under-sampled file of ``split`` in ``data`` (default: the profile's
    tree) with the profile's trained models and write the submission under ``out`` (default
    ``runs/<profile>/submission/<method>/<split>``).

    Resumable: a file already written (and readable) is kept. Atomic: every file is written
    under a temporary name and renamed. A bad input file is skipped with its reason and the rest
    of the set is still written; a missing model is an error before anything is written.
    Under ``torchrun``, each rank makes its share of the files and every rank returns the whole
    run's report (see the module)."""

    ranks = shard.current()
    paths = paths_for(profile)
    data = Path(data) if data is not None else paths.data
    out = Path(out) if out is not None else paths.layout.submission(method, split)
    jobs = _split_files(data, split, profile.tasks, profile.accs, cases)
    if not jobs:
        raise CMRxReconError(
            data,
            f"no under-sampled {split} files (expected <coil>/"
            f"<Cine|Mapping>/{split}/AccFactorXX/PNNN/*.mat)",
        )
    recons, recipes = _models(profile, jobs, method, shard.device_for(ranks))
    if progress and ranks.main:
        print(submission_line(profile, method, _images(jobs), ranks.world))
    record_path = _record_path(out, ranks.rank)
    made_by = _read_records(out)
    record = dict(_read_record(record_path))
    report = Submission(out)
    mine = [job for k, job in enumerate(jobs) if ranks.owns(k)]
    rank = f" (rank {ranks.rank})" if ranks.world > 1 else ""
    bar = tqdm(mine, desc=f"submit {method} {split}{rank}", disable=not progress)
    for coil, task, acc, case, name, path in bar:
        target = submission_path(out, coil, task, split, acc, case, name)
        rel = str(target.relative_to(out))
        bar.set_postfix_str(f"{coil} {name} {acc}x {case}")
        if _made_by(target, made_by.get(rel, []), recipes[(task, acc)]) and _finished(target):
            report.kept.append(target)
            continue
        try:
            img = reconstruct_file(
                path, coil, name, acc, profile.preprocess, recons[(task, acc)], rel
            )
        except CMRxReconError as err:
            report.skipped.append(str(err))
            continue
        _write_file(target, img, out)
        record[rel] = {"recipe": recipes[(task, acc)], "sha256": sha256(target)}
        _write_record(record_path, record)
        report.written.append(target)
    return _merged(report, ranks)


def _models(profile: Profile, jobs: list[tuple], method: str, device) -> tuple[dict, dict]:
    """The reconstruction function and the recipe of every (task, factor) the jobs need (all
    models loaded and checked before anything is written)."""
    factors = list(dict.fromkeys((j[1], j[2]) for j in jobs))
    recons = {(t, a): model_recon(profile, t, a, method, device=device) for t, a in factors}
    return recons, {(t, a): recipe(profile, t, a, method) for t, a in factors}


def _merged(report: Submission, ranks) -> Submission:
    """Every rank's report in one, in the sorted order of the files (one process: as it is)."""
    if ranks.world == 1:
        return report
    merged = Submission(report.out)
    for part in ranks.gather(report):
        merged.written += part.written
        merged.kept += part.kept
        merged.skipped += part.skipped
    merged.written.sort()
    merged.kept.sort()
    return merged


def _record_path(out: Path, rank: int) -> Path:
    """Rank ``rank``'s record of the files it wrote in ``out``."""
    return out.parent / (
        f".{out.name}.made_by.json" if rank == 0 else f".{out.name}.made_by.rank{rank}.json"
    )


def _made_by(target: Path, entries: list[dict[str, str]], wanted: str) -> bool:
    """Whether a record says ``target`` was made by the recipe ``wanted`` and the file is still
    the one it wrote (same SHA-256: a record of another rank may be older than the file)."""
    if not target.is_file():
        return False
    matching = [e for e in entries if e.get("recipe") == wanted]
    if not matching:
        return False
    sha = sha256(target)
    return any(e.get("sha256", sha) == sha for e in matching)


def _read_records(out: Path) -> dict[str, list[dict[str, str]]]:
    """Every rank's record of ``out`` merged: for each file, the entries that name it."""
    merged: dict[str, list[dict[str, str]]] = {}
    for path in sorted(out.parent.glob(f".{out.name}.made_by*.json")):
        for rel, entry in _read_record(path).items():
            merged.setdefault(rel, []).append(entry)
    return merged


def _read_record(path: Path) -> dict[str, dict[str, str]]:
    """Which recipe made each file of a submission folder, with the file's SHA-256 (see
    :func:`~diffcmr_core.study.methods.recipe`); empty when missing or unreadable (every file
    is then redone). A record of an earlier version (recipe only) is read without the hash."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for k, v in data.items():
        if isinstance(v, str):
            out[str(k)] = {"recipe": v}
        elif isinstance(v, dict) and isinstance(v.get("recipe"), str):
            out[str(k)] = {
                "recipe": v["recipe"],
                **({"sha256": str(v["sha256"])} if "sha256" in v else {}),
            }
    return out


def _write_record(path: Path, record: dict[str, dict[str, str]]) -> None:
    import json

    try:
        write_text_atomic(path, json.dumps(record, indent=0, sort_keys=True))
    except OSError as err:
        raise DiffCMRError(
            path,
            f"could not write the submission's record ({err}); the files written so far are kept",
        ) from None


def _write_file(target: Path, img: np.ndarray, out: Path) -> None:
    """One submission file, atomically; never through a symbolic link planted in ``out``."""
    _inside(target, out)
    try:
        save_ranking(target, img)
    except OSError as err:
        raise DiffCMRError(
            target,
            f"could not write the submission file ({err}); the files "
            "written before it are kept and a rerun continues",
        ) from None


def _inside(target: Path, out: Path) -> None:
    """Refuse to write ``target`` when a symbolic link inside ``out`` would take it elsewhere."""
    probe = target
    while probe != out and probe != probe.parent:
        if probe.is_symlink():
            raise DiffCMRError(
                probe,
                "is a symbolic link inside the output folder; refusing to "
                "write through it (remove it)",
            )
        probe = probe.parent


def local_split_scores(profile: Profile, method: str, *, progress: bool = False) -> list[dict]:
    """The challenge's scores of ``method`` on the profile's own validation cases (the last
    cases of the TrainingSet, as the pairs split them): a submission of those cases under
    ``runs/<profile>/challenge/<method>``, scored against their fully sampled files. Returns the
    ranking rows (task, acc, psnr, ssim, nmse)."""

    paths = paths_for(profile)
    cases = sorted({c for task in profile.tasks for c in _full_cases(paths.data, task)})
    _, val_cases = split_cases(cases, profile.preprocess.val_fraction, paths.data)
    out = paths.layout.challenge_files(method)
    submit(profile, split="TrainingSet", out=out, method=method, cases=val_cases, progress=progress)
    scores = score_submission(
        out,
        paths.data,
        split="TrainingSet",
        tasks=profile.tasks,
        accs=profile.accs,
        cases=val_cases,
    )
    return scores.ranking


def _full_cases(data: Path, task: str) -> list[str]:
    return [
        e.case
        for e in io.walk(data)
        if e.task == task and e.acc is None and e.split == "TrainingSet"
    ]
