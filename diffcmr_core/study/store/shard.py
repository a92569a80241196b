"""Inference split over processes: ``torchrun`` ranks each take a deterministic share of the
work, write each finished piece as they go, and every rank reads the whole result back.

* :class:`Ranks` says which process this is (``RANK`` / ``WORLD_SIZE`` of an initialised
  process group; rank 0 of 1 otherwise) and which pieces it owns: piece ``k`` belongs to rank
  ``k % world``.
* :func:`launched` sets up the process group under ``torchrun`` (gloo on the CPU, NCCL with one
  GPU per rank, each rank on its ``LOCAL_RANK`` device) and takes it down; in a plain
  ``python -m`` run it does nothing.
* :func:`map_chunks` cuts ``n`` slices into chunks of ``chunk`` (the pieces: fixed by the chunk
  size, never by the number of ranks), computes the chunks a rank owns, saves each as an
  ``.npz`` file atomically as soon as it is done, skips the ones already saved (a rerun after a
  crash redoes only what is missing, with any number of ranks), waits for the others and
  returns the whole set on every rank.

Why the result does not depend on the number of ranks: a chunk is the same slices whoever
computes it, and a sampling method's noise for a slice comes from a generator seeded by (seed,
round, slice id) (:func:`~diffcmr_core.method.inference.slice_generators`), not by its place in
a batch. On one machine with the same threads per process, 1, 2 or 8 ranks give bit-identical
reconstructions (``tests/test_shard.py``); on other hardware, the usual floating-point
differences.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.checkpoints import default_device

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of a run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes tables and caches."""
        return self.rank == 0

    def owns(self, k: int) -> bool:
        """Whether piece ``k`` (a chunk of slices, a file) is this rank's."""
        return k % self.world == self.rank

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in one process)."""
        if self.world > 1:
            dist.barrier()

    def gather(self, value: object) -> list[object]:
        """Every rank's ``value``, in rank order, on every rank (``[value]`` in one process)."""
        if self.world == 1:
            return [value]
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def current() -> Ranks:
    """The ranks of the initialised process group, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched_world() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when not under ``torchrun``)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@contextlib.contextmanager
def launched(timeout_hours: float = 6.0) -> Iterator[Ranks]:
    """The process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1), for the length of the
    block: gloo on the CPU; with CUDA, NCCL and rank ``LOCAL_RANK`` on its own GPU. A rank that
    waits at a barrier longer than ``timeout_hours`` (another rank is stuck) fails. In one
    process (or a group someone else set up) it only yields :func:`current`."""
    if launched_world() == 1 or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(
        "nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=timeout_hours)
    )
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def device_for(ranks: Ranks | None = None) -> torch.device:
    """This rank's device: its ``LOCAL_RANK`` GPU under ``torchrun`` with CUDA, else the
    default device of :func:`~diffcmr_core.method.checkpoints.default_device`."""

    if torch.cuda.is_available() and (ranks or current()).world > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return default_device()


def _read_chunk(path: Path) -> Arrays | None:
    """A saved chunk, or None when missing or unreadable (then it is computed again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def _save_chunk(path: Path, arrays: Arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def chunk_path(folder: Path, lo: int, hi: int) -> Path:
    """Where chunk ``lo:hi`` is saved."""
    return Path(folder) / f"slices_{lo:06d}-{hi:06d}.npz"


def _signature(arrays: Arrays) -> tuple:
    """A chunk's layout without its slice count: each array's name, dtype and other axes."""
    return tuple(sorted((k, v.dtype.str, v.shape[:-3] + v.shape[-2:]) for k, v in arrays.items()))


def chunk_problem(
    arrays: Arrays, lo: int, hi: int, image_shape: tuple[int, ...] | None = None
) -> str | None:
    """Why a saved chunk cannot be chunk ``lo:hi`` (None: it can): an array with fewer than
    three axes, another number of slices on the third axis from the end, images of another
    ``image_shape``, or a NaN or infinite value."""
    if not arrays:
        return "holds no arrays"
    for k, v in arrays.items():
        if v.ndim < 3:
            return f"array {k!r} has shape {v.shape}, not [..., slices, rows, columns]"
        if v.shape[-3] != hi - lo:
            return f"array {k!r} holds {v.shape[-3]} slices, not the {hi - lo} of {lo}:{hi}"
        if image_shape is not None and tuple(v.shape[-2:]) != tuple(image_shape):
            return f"array {k!r} holds images of {v.shape[-2:]}, not {tuple(image_shape)}"
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            return f"array {k!r} holds NaN or infinite values"
    return None


def set_aside(path: Path, problem: str) -> Path:
    """Move a saved intermediate result that cannot be used out of the way (``<name>.rejected``,
    kept for a look), saying so in one line; it is then computed again."""
    aside = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, aside)
    except OSError as err:  # read-only storage: it is recomputed, and stays where it is
        print(f"{path}: {problem}; computed again (could not set it aside: {err})", flush=True)
        return path
    print(f"{path}: {problem}; set aside as {aside.name} and computed again", flush=True)
    return aside


def _usable(path: Path, lo: int, hi: int, image_shape, like: tuple | None) -> Arrays | None:
    """The saved chunk ``lo:hi`` if it is usable (see :func:`chunk_problem`; with ``like``, it
    must also have that :func:`_signature`); a bad one is set aside. None: compute it."""
    got = _read_chunk(path)
    if got is None:
        return None
    problem = chunk_problem(got, lo, hi, image_shape)
    if problem is None and like is not None and _signature(got) != like:
        problem = f"its arrays {_signature(got)} differ from the other chunks' {like}"
    if problem is not None:
        with contextlib.suppress(FileNotFoundError):  # another rank may have moved it
            set_aside(path, problem)
        return None
    return got


def _reference(chunks: list[Arrays], fresh: list[Arrays]) -> tuple | None:
    """The layout every chunk must share: that of a chunk computed in this call, else the
    commonest among the saved ones."""
    if fresh:
        return _signature(fresh[0])
    sigs = [_signature(c) for c in chunks]
    return max(sigs, key=sigs.count) if sigs else None


def _gather(bounds, work, folder, ranks, image_shape, fresh) -> dict[tuple[int, int], Arrays]:
    """Every chunk of ``bounds``, read back once all ranks are done (:func:`map_chunks`): a
    missing or bad one (:func:`chunk_problem`, or another layout than the others') is set aside
    and redone by its rank, once; one still missing after that is an error."""
    for attempt in range(2):
        ranks.barrier()
        got = {b: _read_chunk(chunk_path(folder, *b)) for b in bounds}
        like = _reference([c for c in got.values() if c is not None], fresh)
        bad = [
            b
            for b in bounds
            if got[b] is None
            or chunk_problem(got[b], *b, image_shape) is not None
            or _signature(got[b]) != like
        ]
        if not bad:
            return got
        if attempt == 1:
            raise RuntimeError(
                f"chunks {', '.join(f'{lo}:{hi}' for lo, hi in bad)} missing or unusable in "
                f"{folder} after every rank finished (another run removed them?)"
            )
        ranks.barrier()  # every rank has judged the chunks before any is moved
        for k, (lo, hi) in enumerate(bounds):
            if (lo, hi) in bad and ranks.owns(k):
                path = chunk_path(folder, lo, hi)
                if _usable(path, lo, hi, image_shape, like) is None:
                    fresh.append(work(lo, hi))
                    _save_chunk(path, fresh[-1])
    raise AssertionError("unreachable")


def map_chunks(
    n: int,
    chunk: int,
    work: Callable[[int, int], Arrays],
    folder: str | Path,
    *,
    ranks: Ranks | None = None,
    progress: bool = False,
    desc: str = "chunks",
    image_shape: tuple[int, ...] | None = None,
) -> Arrays:
    """``work(lo, hi)`` -> arrays whose slice axis is the third from last (``[..., N, S, S]``,
    as :func:`~diffcmr_core.method.inference.reconstruct_all` returns them) for every chunk
    ``lo:hi`` of ``range(n)`` in steps of ``chunk``, split over ``ranks``; each chunk saved in
    ``folder`` when done and reused when already there. Returns the chunks concatenated, on
    every rank. ``folder`` must name everything the result depends on (a model's recipe, the
    settings).

    A saved chunk is checked before use (:func:`chunk_problem`: its slice count, its images'
    ``image_shape``, finite values; and the same arrays and shapes as the other chunks): a bad
    one is named, set aside (:func:`set_aside`) and computed again by its rank."""
    ranks = ranks or current()
    folder = Path(folder)
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, max(1, chunk))]
    mine = [b for k, b in enumerate(bounds) if ranks.owns(k)]
    fresh: list[Arrays] = []
    for lo, hi in tqdm(mine, desc=desc, disable=not progress or not mine):
        path = chunk_path(folder, lo, hi)
        if _usable(path, lo, hi, image_shape, None) is None:
            fresh.append(work(lo, hi))
            _save_chunk(path, fresh[-1])
    got = _gather(bounds, work, folder, ranks, image_shape, fresh)
    parts: dict[str, list[np.ndarray]] = {}
    for lo, hi in bounds:
        for k, v in got[(lo, hi)].items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v, axis=v[0].ndim - 3) for k, v in parts.items()}
