"""The paper's paired image slices (§2.2, §3.1) in one HDF5 file per task and factor, and
Table 1's counts.

Per file of the CMRxRecon tree: images by :func:`~diffcmr_core.data.kspace.kspace_to_image`
(zero-pad to ``pad_to``, iFFT per coil, RSS, resize to ``size``). A file of shape
``[t, s, (c,) h, w]`` gives ``t x s`` slices.

Normalisation (``PreprocessConfig.normalise``): by default every pair ``(input, target)`` is
divided by the maximum of the under-sampled input image, so the model's input lies in [0, 1],
nothing of the ground truth leaks into it, and a reconstruction times the input's maximum (kept
in the metadata as ``scale``) is back on the data's scale. ``"each"`` divides the target by its
own maximum instead, as the public code does (both images then peak at 1; the target's scale is
lost). The challenge's metrics are invariant to either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import hashlib
import json
import os
import shutil
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import RESIZES, crop_lines, kspace_to_image
from diffcmr_core.errors import CMRxReconError
from diffcmr_core.fileio import atomic_path, folder_lock

SPLITS = ("train", "val")
SUBSETS = ("val_subset", "selection")  # stored index lists of the validation slices
NORMALISATIONS = ("input", "each")


# ----------------------------------------------------------------------------- data sets
@dataclass(frozen=True)
class PreprocessConfig:
    """How paired slices are made and split (paper §3.1)."""

    pad_to: int = 512
    size: int = 128
    coils: tuple[str, ...] = io.COIL_TYPES
    val_fraction: float = 10 / 120  # P111-P120 of P001-P120
    n_val_subset: int = 240  # "shuffle the validation set and select the first 240"
    selection_cases: int = 0  # the first this many validation cases select (stopping,
    # learning rates, samplers) and never score: the tables' subset is of the others (0: none,
    # the paper, whose validation slices serve both)
    subset_seed: int = 0
    frames_per_chunk: int = 1  # frames read and written at a time (streaming)
    crop: bool = False  # k-space centre crop instead of pad + resize (see kspace_to_image)
    roi: tuple[float, float] | None = None  # keep the central (rows, columns) fractions of the
    # padded image before resizing (None: all, the paper)
    normalise: str = "input"  # divide input and target by the input's maximum, or
    # "each" by its own (the public code)
    resize: str = "area"  # "area" (anti-aliased) or "public" (the public code's bilinear
    # without anti-aliasing; kspace.resize)

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {self.resize!r}")

    def to_json(self) -> str:
        """The configuration as sorted JSON (part of a pairs file's stamp)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class _Source:
    coil: str
    case: str
    file: str
    full: Path
    sub: dict[int, tuple[Path, Path]]  # acc -> (k-space, mask)


def _sources(root: Path, task: str, cfg: PreprocessConfig, accs: tuple[int, ...]) -> list[_Source]:
    """Fully sampled files with their under-sampled partners; missing partners are skipped."""
    full = [
        e
        for e in io.walk(root)
        if e.task == task and e.acc is None and e.split == "TrainingSet" and e.coil in cfg.coils
    ]
    out = []
    for e in full:
        sub = {}
        for acc in accs:
            kspace, mask = (
                io.file_path(root, e.coil, task, e.case, e.file, acc=acc, kind=kind)
                for kind in ("kspace", "mask")
            )
            if kspace.is_file() and mask.is_file():
                sub[acc] = (kspace, mask)
        out.append(_Source(e.coil, e.case, e.file, e.path, sub))
    return out


def split_cases(
    cases: list[str], val_fraction: float, root: str | Path | None = None
) -> tuple[list[str], list[str]]:
    """Split case names by order: the last ``round(n * val_fraction)`` (at least one) validate.
    ``root`` (the data folder) is named in the error when there are too few cases."""
    cases = sorted(set(cases))
    if len(cases) < 2:
        raise CMRxReconError(
            root,
            f"need at least two cases to split train/validation, found "
            f"{len(cases)} ({', '.join(cases) or 'none'})",
        )
    n_val = min(max(1, round(len(cases) * val_fraction)), len(cases) - 1)
    return cases[:-n_val], cases[-n_val:]


def pairs_path(out_dir: str | Path, task: str, acc: int) -> Path:
    """The pairs file of ``task`` at ``acc`` in ``out_dir``."""
    return Path(out_dir) / f"pairs_{task}_acc{acc:02d}.h5"


MARGIN = 16 << 20  # room kept free on the disk for HDF5's own records and the final flush


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    """Append ``values`` along the first axis of ``ds``. Before writing, the disk must keep
    :data:`MARGIN` bytes free after it: a disk that fills is then our ``OSError`` here, before
    HDF5 meets a failed write (after which it can neither flush nor close the file, prints a
    traceback per object and may crash the interpreter at exit)."""
    free = shutil.disk_usage(Path(ds.file.filename).parent).free
    if free < values.nbytes + MARGIN:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {free >> 20} MiB free, {MARGIN >> 20} MiB must stay free",
        )
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def _new_pairs_file(f: h5py.File, size: int, crop: bool = False) -> None:
    for name in ("input", "target"):
        f.create_dataset(
            name,
            shape=(0, size, size),
            maxshape=(None, size, size),
            dtype="f4",
            chunks=(1, size, size),
        )
    meta = {
        "coil": "S10",
        "case": "S8",
        "file": "S10",
        "slice": "i4",
        "frame": "i4",
        "scale": "f8",
        "split": "u1",
    }
    for name, dtype in meta.items():
        f.create_dataset(f"meta/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
    if crop:
        f.create_dataset(
            "mask_lines", shape=(0, size), maxshape=(None, size), dtype="u1", chunks=(1024, size)
        )


def _validate_pair(src: _Source, acc: int, full_shape: tuple[int, ...]) -> np.ndarray:
    sub_path, mask_path = src.sub[acc]
    key = io.kspace_key(src.coil, acc)
    sub_shape = io.kspace_shape(sub_path, key)
    if sub_shape != full_shape:
        raise CMRxReconError(sub_path, f"shape {sub_shape} differs from FullSample {full_shape}")
    mask = io.load_mask(mask_path, io.mask_key(acc))
    io.check_mask_fits(mask, sub_shape, mask_path)
    first = io.load_kspace(sub_path, key, index=(0, 0))  # one frame and slice suffices
    io.check_mask_matches(mask, first, mask_path)
    return mask


def build_pairs(
    root: str | Path,
    out_dir: str | Path,
    task: str,
    cfg: PreprocessConfig = PreprocessConfig(),
    *,
    accs: tuple[int, ...] = io.ACCS,
    progress: bool = True,
    force: bool = False,
) -> dict[int, Path]:
    """Build one HDF5 file of pairs per acceleration factor for ``task`` ('cine' or 'mapping').

    Each file holds float32 ``input``/``target`` ``[N, size, size]``, per-slice ``meta/*``
    (coil, case, file, slice, frame, scale, split 0=train 1=val) and ``val_subset`` (indices of
    the seeded validation subset). Fully sampled images are computed once per source file and
    shared by the factors. Streaming: ``frames_per_chunk`` frames at a time. Idempotent: a
    finished file with the same config and source is reused. Atomic: temporary names, renamed
    only when every file is complete; a failure to write (a full disk) is an error of ours naming
    the folder, leaving no temporary file and the previous files intact. Two processes building
    into one folder take turns (a lock), so neither gets a mixture of the other's files;
    :func:`load_pairs` with ``expect=`` then refuses a file built with another configuration.
    """
    root, out_dir = Path(root), Path(out_dir)
    stamp = pairs_stamp(root, task, cfg)
    targets = {acc: pairs_path(out_dir, task, acc) for acc in accs}
    if not force and all(_is_finished(p, stamp) for p in targets.values()):
        return targets  # nothing to write: no lock (the folder may be read-only)
    with folder_lock(out_dir):
        if not force and all(_is_finished(p, stamp) for p in targets.values()):
            return targets
        sources = _sources(root, task, cfg, accs)
        if not sources:
            raise CMRxReconError(root, f"no fully sampled {task} files found")
        train_cases, val_cases = split_cases([s.case for s in sources], cfg.val_fraction, root)
        split_selection(val_cases, cfg.selection_cases, root)  # refused before any writing
        failure = None
        with quiet_hdf5_teardown():
            try:
                _write_all(targets, sources, cfg, stamp, train_cases, val_cases, task, progress)
            except (OSError, RuntimeError) as err:  # a full disk (h5py: RuntimeError), read-only
                failure = str(err).split("\n")[0]  # the text only: no frame keeps a file alive
        if failure is not None:
            raise CMRxReconError(
                out_dir,
                f"could not write the {task} pairs ({failure}); the previous files are unchanged",
            )
    return targets


def pairs_stamp(root: str | Path, task: str, cfg: PreprocessConfig) -> str:
    """What a pairs file depends on: the preprocessing configuration, the task and the content
    of the files it is made from (:func:`sources_digest`), not where the tree sits: a home
    copied, moved or mounted elsewhere keeps its pairs."""
    digest = sources_digest(Path(root), task, cfg)
    return json.dumps({"config": cfg.to_json(), "sources": digest, "task": task})


_WHOLE = 4 << 20  # files up to this size are hashed whole; larger ones by their ends
_END = 64 << 10
_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime, inode) -> digest, for this process


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content: the whole file up to 4 MiB; for a larger one (a real
    CMRxRecon k-space file is hundreds of MB, a tree thousands of files) its size and its first
    and last 64 KiB (a MAT v7.3 file's header and its HDF5 records). Remembered for the
    process while the file's size, time and inode stay the same."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        h = hashlib.sha256(str(st.st_size).encode())
        with open(path, "rb") as fh:
            if st.st_size <= _WHOLE:
                h.update(fh.read())
            else:
                h.update(fh.read(_END))
                fh.seek(-_END, 2)
                h.update(fh.read())
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def sources_digest(root: Path, task: str, cfg: PreprocessConfig) -> str:
    """One digest of every file the pairs of ``task`` are made from (fully sampled k-space,
    each factor's k-space and mask): their paths relative to ``root`` and their contents
    (:func:`file_digest`)."""
    h = hashlib.sha256()
    for src in sorted(_sources(root, task, cfg, io.ACCS), key=lambda s: str(s.full)):
        for path in [src.full, *(p for acc in sorted(src.sub) for p in src.sub[acc])]:
            h.update(f"{path.relative_to(root).as_posix()} {file_digest(path)}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def quiet_hdf5_teardown() -> Iterator[None]:
    """For the block, and until its HDF5 objects are collected at its end: the errors h5py
    reports while tearing down objects of a file that can no longer be written (a full disk:
    each dataset's deallocation fails to flush, thousands of "Exception ignored" tracebacks)
    are not printed; the error the write itself raised says what happened. Other unraisable
    errors are reported as usual. A fallback: :func:`_append`'s free-space check keeps HDF5
    from meeting a full disk the study fills itself; where another process fills it, HDF5 may
    still crash the interpreter at exit."""
    hooks = sys.excepthook, sys.unraisablehook

    def from_h5py(tb) -> bool:
        return any("h5py" in frame.filename for frame in traceback.extract_tb(tb))

    def excepthook(kind, value, tb) -> None:  # Cython prints the traceback through it first
        if not from_h5py(tb):
            hooks[0](kind, value, tb)

    def unraisablehook(info) -> None:
        if not (from_h5py(info.exc_traceback) or "h5py" in repr(info.object)):
            hooks[1](info)

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    try:
        yield
    finally:
        gc.collect()  # the block's HDF5 objects go now, while their errors are muted
        sys.excepthook, sys.unraisablehook = hooks


def split_selection(
    val_cases: list[str], n: int, root: str | Path | None = None
) -> tuple[list[str], list[str]]:
    """The validation cases as ``(selection, test)``: the first ``n`` in order select, the rest
    are the held-out test cases (``n = 0``: no selection cases, every one tests). At least one
    case must be left to test."""
    cases = sorted(set(val_cases))
    if n < 0 or (n and n >= len(cases)):
        raise CMRxReconError(
            root,
            f"{n} selection case(s) asked of {len(cases)} validation case(s) "
            f"({', '.join(cases) or 'none'}): at least one must be left to test",
        )
    return cases[:n], cases[n:]


def _write_all(targets, sources, cfg, stamp, train_cases, val_cases, task, progress) -> None:
    selection, test = split_selection(val_cases, cfg.selection_cases)
    with _AtomicGroup(targets) as files:
        for f in files.values():
            _new_pairs_file(f, cfg.size, cfg.crop)
        for src in tqdm(sources, desc=f"pairs {task}", disable=not progress):
            _write_source(src, files, cfg, is_val=src.case in val_cases)
        for f in files.values():
            split = f["meta/split"][()]
            case = f["meta/case"][()].astype(str)
            val_idx = np.flatnonzero((split == 1) & np.isin(case, test))
            rng = np.random.default_rng(cfg.subset_seed)
            f.create_dataset("val_subset", data=rng.permutation(val_idx)[: cfg.n_val_subset])
            sel_idx = np.flatnonzero((split == 1) & np.isin(case, selection))
            f.create_dataset("selection", data=sel_idx)
            f.attrs["stamp"] = stamp
            f.attrs["train_cases"] = json.dumps(train_cases)
            f.attrs["val_cases"] = json.dumps(val_cases)
            f.attrs["selection_cases"] = json.dumps(selection)


def iter_images(
    path: str | Path,
    key: str,
    *,
    pad_to: int,
    size: int | None,
    frames_per_chunk: int = 1,
    crop: bool = False,
    roi: tuple[float, float] | None = None,
    resize: str = "area",
):
    """Stream a k-space file as images: yields ``(t0, images)`` with float32 images
    ``(frames, kz, size, size)`` for frames ``t0 .. t0 + frames - 1``; only ``frames_per_chunk``
    frames of k-space are in memory at a time."""
    shape = io.kspace_shape(path, key)
    for t0 in range(0, shape[0], frames_per_chunk):
        kspace = io.load_kspace(path, key, index=(slice(t0, t0 + frames_per_chunk),))
        yield (
            t0,
            kspace_to_image(
                kspace,
                multicoil=len(shape) == 5,
                pad_to=pad_to,
                size=size,
                crop=crop,
                roi=roi,
                resize_method=resize,
            ),
        )


def _write_source(
    src: _Source, files: dict[int, h5py.File], cfg: PreprocessConfig, is_val: bool
) -> None:
    full_key = io.kspace_key(src.coil, None)
    shape = io.kspace_shape(src.full, full_key)
    accs = [a for a in files if a in src.sub]
    masks = {acc: _validate_pair(src, acc, shape) for acc in accs}
    opts = dict(
        pad_to=cfg.pad_to,
        size=cfg.size,
        frames_per_chunk=cfg.frames_per_chunk,
        crop=cfg.crop,
        roi=cfg.roi,
        resize=cfg.resize,
    )
    streams = [iter_images(src.full, full_key, **opts)]
    streams += [iter_images(src.sub[a][0], io.kspace_key(src.coil, a), **opts) for a in accs]
    for (t0, target), *inputs in zip(*streams):
        n_t, n_z = target.shape[:2]
        target = target.reshape(-1, cfg.size, cfg.size)
        if not target.reshape(len(target), -1).max(1).all():
            raise CMRxReconError(
                src.full,
                f"a fully sampled image of frames {t0}..{t0 + n_t - 1} "
                "is all zeros (data never written?)",
            )
        frames, slices = np.repeat(np.arange(t0, t0 + n_t), n_z), np.tile(np.arange(n_z), n_t)
        for acc, (_, inp) in zip(accs, inputs):
            inp = inp.reshape(-1, cfg.size, cfg.size)
            scale = inp.reshape(len(inp), -1).max(1).astype(np.float64)
            if np.any(scale <= 0):
                raise CMRxReconError(src.sub[acc][0], "an under-sampled image is all zeros")
            f, n = files[acc], len(inp)
            _append(f["input"], inp / scale[:, None, None].astype(np.float32))
            own = target.reshape(len(target), -1).max(1).astype(np.float64)
            t_scale = scale if cfg.normalise == "input" else own
            _append(f["target"], target / t_scale[:, None, None].astype(np.float32))
            for name, values in (
                ("coil", np.full(n, src.coil.encode())),
                ("case", np.full(n, src.case.encode())),
                ("file", np.full(n, src.file.encode())),
                ("slice", slices),
                ("frame", frames),
                ("scale", scale),
                ("split", np.full(n, int(is_val), np.uint8)),
            ):
                _append(f[f"meta/{name}"], values)
            if cfg.crop:  # the mask at the network's resolution, for data consistency
                lines = crop_lines(masks[acc].any(axis=1), cfg.size)
                _append(f["mask_lines"], np.repeat(lines[None], n, axis=0))


def _is_finished(path: Path, stamp: str) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("stamp") == stamp
    except OSError:
        return False


class _AtomicGroup:
    """Open several HDF5 files under temporary names; rename all of them only on success.

    Every file is closed and every temporary removed whatever fails, closing included (a full
    disk fails at the final flush): the first error is raised, and no target is replaced."""

    def __init__(self, targets: dict[int, Path]) -> None:
        self.targets = targets
        self._ctx = {k: atomic_path(p) for k, p in targets.items()}
        self._entered: list = []
        self._tmps: list[Path] = []
        self.files: dict[int, h5py.File] = {}

    def __enter__(self) -> dict[int, h5py.File]:
        try:
            for k, ctx in self._ctx.items():
                tmp = ctx.__enter__()
                self._entered.append(ctx)
                self._tmps.append(tmp)
                self.files[k] = h5py.File(tmp, "w")
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self.files

    def _free(self) -> None:
        """Empty every temporary file (they are removed anyway), so that on a full disk HDF5
        has room to flush and close what it still can."""
        for tmp in self._tmps:
            with contextlib.suppress(OSError):
                os.truncate(tmp, 0)

    def __exit__(self, exc_type, exc, tb) -> None:
        failure = exc
        for f in self.files.values():  # a full disk fails here, while HDF5 can still recover
            try:
                f.flush()
            except Exception as err:  # noqa: BLE001
                failure = failure or err
        if failure is not None:
            self._free()
        for f in self.files.values():
            try:
                f.close()
            except Exception as err:  # noqa: BLE001 - close the others, report the first
                failure = failure or err
                self._free()
                with contextlib.suppress(Exception):
                    f.close()  # again, now that there is room
        for ctx in self._entered:  # renames on success, removes the temporary on failure
            try:
                if failure is None:
                    ctx.__exit__(None, None, None)
                else:
                    ctx.__exit__(type(failure), failure, failure.__traceback__)
            except Exception as err:  # noqa: BLE001
                failure = failure or err
        if failure is not None and failure is not exc:
            raise failure


# ----------------------------------------------------------------------------- reading back
def load_pairs(
    path: str | Path, split: str = "train", *, subset: int | None = None, expect: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read one split of a pairs file into memory.

    ``split='val_subset'`` gives the paper's shuffled validation subset (of the test cases when
    the file has selection cases), of which ``subset`` keeps the first entries;
    ``split='selection'`` the selection cases' slices in order (``subset``: the first).
    ``expect``: the :func:`pairs_stamp` the caller built the file with; a file built with
    another configuration is then refused. Returns ``(input, target, meta)``,
    images float32 ``[N, S, S]``. A missing, truncated or corrupt file is an error naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CMRxReconError(path, "pairs file not found (run the preprocessing first)")
    if split not in (*SPLITS, *SUBSETS):
        raise ValueError(f"unknown split {split!r}; expected one of {(*SPLITS, *SUBSETS)}")
    try:
        with h5py.File(path, "r") as f:
            if expect is not None and f.attrs.get("stamp") != expect:
                raise CMRxReconError(
                    path,
                    "pairs file was built with another configuration "
                    "(another run rebuilt it?); rebuild it",
                )
            if split in SUBSETS:
                if split not in f:
                    raise CMRxReconError(
                        path, f"pairs file has no {split} subset (an older version?); rebuild it"
                    )
                idx = f[split][()]
                if subset is not None:
                    idx = idx[:subset]
            else:
                idx = np.flatnonzero(f["meta/split"][()] == SPLITS.index(split))
            order = np.argsort(idx)  # h5py reads need increasing indices
            inv = np.argsort(order)
            sorted_idx = idx[order]
            inp = f["input"][sorted_idx][inv]
            tgt = f["target"][sorted_idx][inv]
            meta = {k: f[f"meta/{k}"][()][idx] for k in f["meta"]}
            if "mask_lines" in f:
                meta["mask_lines"] = f["mask_lines"][sorted_idx][inv].astype(bool)
    except (OSError, KeyError) as err:
        raise CMRxReconError(
            path, f"truncated or corrupt pairs file ({err}); delete it and rebuild"
        ) from None
    meta = {k: (v.astype(str) if v.dtype.kind == "S" else v) for k, v in meta.items()}
    meta["index"] = idx
    return inp, tgt, meta


def pair_counts(
    out_dir: str | Path, tasks: tuple[str, ...] = io.TASKS, accs: tuple[int, ...] = io.ACCS
) -> dict[str, dict[int, tuple[int, int]]]:
    """Pairs per task, factor and split in the files of ``out_dir``:
    ``[task][acc] -> (train, valid)``."""
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for task in tasks:
        counts[task] = {}
        for acc in accs:
            path = pairs_path(out_dir, task, acc)
            try:
                with h5py.File(path, "r") as f:
                    split = f["meta/split"][()]
            except (OSError, KeyError) as err:
                raise CMRxReconError(path, f"unreadable pairs file ({err})") from None
            n = defaultdict(int, zip(*np.unique(split, return_counts=True)))
            counts[task][acc] = (int(n[0]), int(n[1]))
    return counts


def table1(counts: dict[str, dict[int, tuple[int, int]]]) -> list[dict[str, object]]:
    """Rows in the layout of the paper's Table 1 from ``counts[task][acc] = (train, valid)``
    (ours from :func:`pair_counts`, predicted, or the paper's)."""
    rows = []
    for task, by_acc in counts.items():
        row: dict[str, object] = {"task": f"{io.TASK_LABEL[task]} ({task})"}
        for acc, (train, valid) in by_acc.items():
            row[f"AccFactor{acc:02d} Train"] = train
            row[f"AccFactor{acc:02d} Valid"] = valid
        rows.append(row)
    return rows
