"""Reading and writing CMRxRecon 2023 files (see ``cmrxrecon-format.md``).

Conventions, everywhere in this package:

* k-space arrays are complex64 in **h5py axis order**: multi-coil ``(t, kz, kc, ky, kx)``,
  single-coil ``(t, kz, ky, kx)``; ``kx`` is the fully sampled read-out, ``ky`` the under-sampled
  phase-encoding direction. (MATLAB's order is the reverse.)
* masks are bool arrays of shape ``(ky, kx)``, whatever the file format.
* every problem with a file raises :class:`~diffcmr_core.errors.CMRxReconError` naming the file.

This module is the one place that knows the challenge's names: tasks, factors, coil types,
file and variable names, and the folder layout (:func:`file_path`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from diffcmr_core.errors import CMRxReconError
from diffcmr_core.fileio import atomic_path

COIL_TYPES = ("MultiCoil", "SingleCoil")
ACCS = (4, 8, 10)  # the challenge's acceleration factors
TASKS = ("cine", "mapping")  # the study's names of the two tasks
TASK_FOLDER = {"cine": "Cine", "mapping": "Mapping"}  # ... and the challenge's folders
TASK_LABEL = {"cine": "Task 1", "mapping": "Task 2"}  # ... and the paper's labels
TASK_FILES = {"cine": ("cine_sax", "cine_lax"), "mapping": ("T1map", "T2map")}
SPLITS = ("TrainingSet", "ValidationSet")
MAX_TIME_MS = 10_000.0  # no MOLLI TI or T2-prep TE is longer
_MAT_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: %s HDF5 schema 1.00 ."


# ----------------------------------------------------------------------------- names
def kspace_key(coil: str, acc: int | None) -> str:
    """Variable name of a k-space file: ``kspace_full``, ``kspace_single_sub04``, ..."""
    prefix = "kspace_single" if coil == "SingleCoil" else "kspace"
    return f"{prefix}_full" if acc is None else f"{prefix}_sub{acc:02d}"


def mask_key(acc: int) -> str:
    """Variable name of a mask file: ``mask04``, ``mask08``, ``mask10``."""
    return f"mask{acc:02d}"


def split_folder(acc: int | None) -> str:
    """``FullSample`` or ``AccFactor04`` etc."""
    return "FullSample" if acc is None else f"AccFactor{acc:02d}"


def file_path(
    root: str | Path,
    coil: str,
    task: str,
    case: str,
    name: str,
    *,
    acc: int | None = None,
    split: str = "TrainingSet",
    kind: str = "kspace",
) -> Path:
    """Where a file lives in a CMRxRecon tree:
    ``root/<coil>/<Cine|Mapping>/<split>/<FullSample|AccFactorNN>/<case>/<name><suffix>``.

    ``kind``: ``"kspace"`` (``name.mat``), ``"mask"`` (``name_mask.mat``) or ``"times"``
    (``name.csv``, mapping files only).
    """
    suffix = {"kspace": ".mat", "mask": "_mask.mat", "times": ".csv"}[kind]
    return (
        Path(root) / coil / TASK_FOLDER[task] / split / split_folder(acc) / case / f"{name}{suffix}"
    )


# ----------------------------------------------------------------------------- reading
_COMPLEX64_COMPOUND = np.dtype([("real", "<f4"), ("imag", "<f4")])


def _selection_shape(shape: tuple[int, ...], index: Any) -> tuple[int, ...]:
    """Shape of ``array[index]`` for an array of ``shape``, without allocating it."""
    return np.lib.stride_tricks.as_strided(np.zeros(1), shape, (0,) * len(shape))[index].shape


def _variables_h5(f: h5py.File) -> list[str]:
    return [k for k in f.keys() if not k.startswith("#")]


def _pick_key(path: Path, keys: list[str], key: str | None, what: str) -> str:
    if key is not None:
        if key not in keys:
            raise CMRxReconError(path, f"missing variable {key!r} (file holds {sorted(keys)})")
        return key
    if len(keys) != 1:
        raise CMRxReconError(
            path, f"expected a single {what} variable, found {sorted(keys)}; pass key="
        )
    return keys[0]


def _dataset(path: Path, f: h5py.File, key: str) -> h5py.Dataset:
    """The array variable ``key``; a group (e.g. a MATLAB struct or cell) is an error of ours."""
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise CMRxReconError(
            path,
            f"variable {key!r} is not an array (it is an HDF5 group: a MATLAB struct or cell?)",
        )
    return node


def _check_written(path: Path, key: str, ds: h5py.Dataset) -> None:
    """A dataset that was declared but never written has no storage and reads as zeros."""
    if ds.size and ds.id.get_storage_size() == 0:
        raise CMRxReconError(
            path,
            f"variable {key!r} was declared {ds.shape} but never written "
            "(no data stored: an interrupted or truncated write?)",
        )


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise CMRxReconError(path, f"corrupt or truncated HDF5/MAT v7.3 file ({err})") from err


def _load_old_mat(path: Path) -> dict[str, np.ndarray]:
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for broken files
        raise CMRxReconError(path, f"corrupt or unreadable MAT file ({err})") from err
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _check_finite(path: Path, key: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise CMRxReconError(path, f"variable {key!r} holds NaN or Inf values")


def _check_rank(path: Path, key: str, shape: tuple[int, ...]) -> None:
    if len(shape) not in (4, 5):
        raise CMRxReconError(
            path,
            f"variable {key!r} has rank {len(shape)} (shape {shape}); expected "
            "(t, kz, kc, ky, kx) multi-coil or (t, kz, ky, kx) single-coil",
        )
    if 0 in shape:
        axes = ("t", "kz", "kc", "ky", "kx") if len(shape) == 5 else ("t", "kz", "ky", "kx")
        empty = [a for a, n in zip(axes, shape) if n == 0]
        raise CMRxReconError(path, f"variable {key!r} has shape {shape}: no data along {empty}")


@contextmanager
def _variable(path: Path, key: str | None, what: str):
    """Open one variable of a ``.mat`` file, either format: yields ``(key, data, is_v73)`` with
    ``data`` an h5py dataset (v7.3, read lazily, in h5py order) or the array scipy read (older
    files, in MATLAB order)."""
    if not path.is_file():
        raise CMRxReconError(path, "file not found")
    if h5py.is_hdf5(path):
        with _open_h5(path) as f:
            key = _pick_key(path, _variables_h5(f), key, what)
            yield key, _dataset(path, f, key), True
    else:
        data = _load_old_mat(path)
        key = _pick_key(path, list(data), key, what)
        yield key, data[key], False


def load_kspace(path: str | Path, key: str | None = None, *, index: Any = None) -> np.ndarray:
    """Read a k-space variable as complex64 in h5py order.

    Args:
        path: a ``.mat`` file, MATLAB v7.3 (HDF5) or older (read through scipy).
        key: the variable name; ``None`` picks the file's single variable.
        index: optional numpy-style index applied on disk (e.g. ``(slice(0, 2),)`` for the first
            two frames), so that a large v7.3 file is never loaded whole.

    Returns:
        complex64 array, multi-coil ``(t, kz, kc, ky, kx)`` or single-coil ``(t, kz, ky, kx)``
        (fewer axes if ``index`` drops some).
    """
    path = Path(path)
    with _variable(path, key, "k-space") as (key, ds, v73):
        if v73:
            _check_rank(path, key, ds.shape)
            _check_written(path, key, ds)
            names = ds.dtype.names or ()
            if set(names) != {"real", "imag"}:
                raise CMRxReconError(
                    path,
                    f"variable {key!r} is not complex (dtype {ds.dtype}); expected a "
                    "compound of 'real' and 'imag'",
                )
            try:  # read straight into complex64 memory through a (real, imag) compound view
                sel = np.s_[...] if index is None else index
                shape = _selection_shape(ds.shape, sel)
                out = np.empty(shape, np.complex64)
                ds.read_direct(out.view(_COMPLEX64_COMPOUND), sel)
            except MemoryError:
                raise CMRxReconError(
                    path,
                    f"variable {key!r}: reading {shape} complex64 "
                    f"({8 * int(np.prod(shape)) / 2**30:.1f} GiB) does not fit "
                    "in memory; read part of it with index=",
                ) from None
            except OSError as err:
                raise CMRxReconError(path, f"truncated or corrupt data in {key!r} ({err})") from err
        else:
            arr = ds
            _check_rank(path, key, arr.shape)
            if not np.iscomplexobj(arr):
                raise CMRxReconError(path, f"variable {key!r} is not complex (dtype {arr.dtype})")
            arr = np.ascontiguousarray(arr.transpose()).astype(np.complex64)  # MATLAB -> h5py order
            out = arr if index is None else arr[index]
    _check_finite(path, key, out)
    return out


def kspace_shape(path: str | Path, key: str | None = None) -> tuple[int, ...]:
    """Shape of a k-space variable (h5py order) without reading its data."""
    path = Path(path)
    with _variable(path, key, "k-space") as (key, data, v73):
        shape = tuple(data.shape) if v73 else tuple(reversed(data.shape))
    _check_rank(path, key, shape)
    return shape


def load_mask(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a sampling mask as a bool array of shape ``(ky, kx)``.

    v7.3 files (read through h5py) store ``(ky, kx)``; older MAT files keep MATLAB's ``(kx, ky)``
    and are transposed, so both give the same orientation.
    """
    path = Path(path)
    with _variable(path, key, "mask") as (key, ds, v73):
        if v73:
            _check_written(path, key, ds)
            try:
                mask = np.asarray(ds[()])
            except OSError as err:
                raise CMRxReconError(path, f"truncated or corrupt data in {key!r} ({err})") from err
        else:
            mask = np.asarray(ds).T
    if mask.ndim != 2:
        raise CMRxReconError(path, f"mask {key!r} has shape {mask.shape}; expected 2D (ky, kx)")
    if mask.dtype.names or np.iscomplexobj(mask):
        raise CMRxReconError(path, f"mask {key!r} is not a real array (dtype {mask.dtype})")
    _check_finite(path, key, mask.astype(np.float64))
    if not np.isin(mask, (0, 1)).all():
        raise CMRxReconError(path, f"mask {key!r} is not binary (values {np.unique(mask)[:5]}...)")
    if not mask.any():
        raise CMRxReconError(path, f"mask {key!r} samples no k-space line (all zeros)")
    return mask.astype(bool)


def check_mask_fits(mask: np.ndarray, kspace_shape: tuple[int, ...], path: str | Path) -> None:
    """Raise if a ``(ky, kx)`` mask does not match the last two axes of a k-space shape."""
    if tuple(mask.shape) != tuple(kspace_shape[-2:]):
        raise CMRxReconError(
            path,
            f"mask shape {tuple(mask.shape)} does not fit k-space (ky, kx) = "
            f"{tuple(kspace_shape[-2:])}",
        )


def check_mask_matches(mask: np.ndarray, kspace: np.ndarray, path: str | Path) -> None:
    """Raise if an under-sampled k-space (any leading axes, ``(..., ky, kx)``) does not carry data
    exactly on the ky lines its ``(ky, kx)`` mask samples: data on a line the mask skips, or a
    sampled line without data, means the mask belongs to another file or is shifted."""
    check_mask_fits(mask, kspace.shape, path)
    sampled = mask.any(axis=1)
    has_data = np.abs(kspace).reshape(-1, *kspace.shape[-2:]).max(axis=(0, 2)) > 0
    extra, missing = np.flatnonzero(has_data & ~sampled), np.flatnonzero(sampled & ~has_data)
    if extra.size or missing.size:
        raise CMRxReconError(
            path,
            f"mask does not match its k-space: {extra.size} ky line(s) hold data the mask "
            f"marks as skipped (e.g. {extra[:3].tolist()}), {missing.size} sampled line(s) "
            f"hold no data (e.g. {missing[:3].tolist()}); a shifted or foreign mask?",
        )


def load_times(csv_path: str | Path) -> np.ndarray:
    """Inversion (T1 MOLLI) or echo (T2-prep) times in ms from ``T1map.csv``/``T2map.csv``.

    Every cell is a time, in reading order; only a first row of text (a header) is skipped, and
    empty cells are ignored. A cell that is not a number, a time that is negative, not finite or
    over ``MAX_TIME_MS``, or a file that is not text is an error naming the row and column.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise CMRxReconError(path, "file not found")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except UnicodeDecodeError as err:
        raise CMRxReconError(
            path, f"not a UTF-8 text file of times ({err.reason} at byte {err.start})"
        ) from None
    if rows and rows[0] and not any(_is_number(c) for c in rows[0] if c.strip()):
        rows = rows[1:]  # a header row
    values: list[float] = []
    for r, row in enumerate(rows, start=1):
        for c, cell in enumerate(row, start=1):
            if not cell.strip():
                continue
            if not _is_number(cell):
                raise CMRxReconError(
                    path, f"row {r}, column {c}: {cell.strip()!r} is not a time in ms"
                )
            values.append(float(cell))
    times = np.asarray(values, dtype=np.float64)
    if times.size == 0:
        raise CMRxReconError(path, "no numeric times found")
    if not np.all(np.isfinite(times)):
        raise CMRxReconError(path, "times hold NaN or Inf values")
    bad = times[(times < 0) | (times > MAX_TIME_MS)]
    if bad.size:
        raise CMRxReconError(
            path, f"times must lie in [0, {MAX_TIME_MS:g}] ms; found {bad[:3].tolist()}"
        )
    return times


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- writing
def _write_userblock(path: Path) -> None:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%a %b %d %H:%M:%S %Y").encode()
    text = (_MAT_HEADER % stamp).ljust(116, b" ")[:116]
    block = text + b" " * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as fh:
        fh.write(block.ljust(512, b"\x00"))


def _save_v73(path: str | Path, key: str, data: np.ndarray, matlab_class: str) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as f:
            ds = f.create_dataset(key, data=data)
            ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        _write_userblock(tmp)


def save_kspace(path: str | Path, key: str, array: np.ndarray) -> None:
    """Write k-space (h5py order, complex) as a MATLAB v7.3 file, atomically.

    On disk the dataset has HDF5 dimensions ``(t, kz, [kc,] ky, kx)``, i.e. MATLAB sees
    ``(kx, ky, [kc,] kz, t)`` exactly as in the challenge's files; values are a ``real``/``imag``
    float32 compound with ``MATLAB_class = 'single'``.
    """
    array = np.asarray(array)
    _check_rank(Path(path), key, array.shape)
    if not np.iscomplexobj(array):
        raise CMRxReconError(path, f"refusing to write non-complex k-space {key!r}")
    compound = np.empty(array.shape, dtype=[("real", "<f4"), ("imag", "<f4")])
    compound["real"] = array.real
    compound["imag"] = array.imag
    _save_v73(path, key, compound, "single")


def save_mask(path: str | Path, key: str, mask: np.ndarray) -> None:
    """Write a ``(ky, kx)`` mask as a MATLAB v7.3 ``double`` array of 0/1, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise CMRxReconError(path, f"mask must be 2D (ky, kx), got shape {mask.shape}")
    _save_v73(path, key, mask.astype(np.float64), "double")


def save_times(path: str | Path, times: np.ndarray) -> None:
    """Write inversion/echo times (ms) as one comma-separated row, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(",".join(f"{t:g}" for t in np.asarray(times, float)) + "\n")


# ----------------------------------------------------------------------------- walking
@dataclass(frozen=True)
class Entry:
    """One k-space file of a CMRxRecon tree."""

    coil: str  # MultiCoil | SingleCoil
    task: str  # cine | mapping (folder Cine | Mapping)
    split: str  # TrainingSet | ValidationSet
    acc: int | None  # None for FullSample
    case: str  # P001 ...
    file: str  # cine_sax, cine_lax, T1map, T2map
    variable: str  # kspace_full, kspace_sub04, kspace_single_full, ...
    path: Path


_ACC_RE = re.compile(r"^AccFactor(\d+)$")


def walk(root: str | Path) -> Iterator[Entry]:
    """List the k-space files under a CMRxRecon root, in sorted order.

    Missing coil types, tasks, splits, cases or files are skipped silently; a root holding no
    k-space file at all raises :class:`CMRxReconError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise CMRxReconError(root, "data root not found")
    found = False
    for coil in COIL_TYPES:
        for task in TASKS:
            for split_dir in sorted((root / coil / TASK_FOLDER[task]).glob("*Set")):
                for acc_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                    match = _ACC_RE.match(acc_dir.name)
                    if acc_dir.name != "FullSample" and not match:
                        continue
                    acc = int(match.group(1)) if match else None
                    for case_dir in sorted(acc_dir.glob("P*")):
                        for name in TASK_FILES[task]:
                            path = case_dir / f"{name}.mat"
                            if path.is_file():
                                found = True
                                yield Entry(
                                    coil,
                                    task,
                                    split_dir.name,
                                    acc,
                                    case_dir.name,
                                    name,
                                    kspace_key(coil, acc),
                                    path,
                                )
    if not found:
        raise CMRxReconError(root, "no CMRxRecon k-space files found (empty root?)")
