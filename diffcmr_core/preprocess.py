"""From CMRxRecon k-space to the paper's paired image slices (paper §2.2, §3.1, Table 1).

Per file: centred zero-padding of k-space to ``pad_to x pad_to`` (512), centred orthonormal 2D
inverse FFT per coil, root-sum-of-squares over coils (multi-coil) or magnitude (single-coil),
then anti-aliased resizing to ``size x size`` (128). A file of shape ``[t, s, (c,) h, w]`` gives
``t x s`` slices. (The paper's text says "RSS then iFFT"; iFFT per coil then RSS is the correct
order and what the public code does.)

Normalisation: every pair ``(input, target)`` is divided by the maximum of the under-sampled
input image, so the model's input lies in [0, 1] and nothing of the ground truth leaks into it;
the scale is kept in the metadata. The challenge's metrics are invariant to it.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffcmr_core import cmrxrecon as io
from diffcmr_core.errors import CMRxReconError
from diffcmr_core.fileio import atomic_path

TASK_FILES = {"cine": ("cine_sax", "cine_lax"), "mapping": ("T1map", "T2map")}
TASK_FOLDER = {"cine": "Cine", "mapping": "Mapping"}
TASK_LABEL = {"cine": "Task 1", "mapping": "Task 2"}
SPLITS = ("train", "val")


# ----------------------------------------------------------------------------- transforms
def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT over the last two axes (ky, kx) -> (y, x)."""
    x = torch.fft.ifftshift(kspace, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(x, norm="ortho"), dim=(-2, -1))


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes, the inverse of :func:`ifft2c`."""
    x = torch.fft.ifftshift(image, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased resizing of ``(..., h, w)`` real images to ``(..., size, size)``.

    Integer down-sampling factors (512 -> 128) use exact box averaging (``area``); other factors
    use anti-aliased bilinear interpolation.
    """
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    flat = images.reshape(-1, 1, h, w)
    if h % size == 0 and w % size == 0:
        out = F.interpolate(flat, size=(size, size), mode="area")
    else:
        out = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return out.reshape(*lead, size, size)


def _shifted_pad(x: np.ndarray, pad_to: int) -> np.ndarray:
    """``ifftshift(center_pad(x, pad_to))`` over the last two axes, built directly.

    The shift is folded into where the four quadrants of ``x`` are placed, so the padded array
    is written once and never copied to be shifted.
    """
    ny, nx = x.shape[-2:]
    if ny > pad_to or nx > pad_to:
        raise ValueError(f"k-space (ky, kx) = {(ny, nx)} is larger than pad_to = {pad_to}")
    out = np.zeros(x.shape[:-2] + (pad_to, pad_to), np.complex64)
    hy, hx = ny - ny // 2, nx - nx // 2      # from the centre line on, data go to the start
    out[..., :hy, :hx] = x[..., ny // 2:, nx // 2:]
    out[..., :hy, pad_to - nx // 2:] = x[..., ny // 2:, :nx // 2]
    out[..., pad_to - ny // 2:, :hx] = x[..., :ny // 2, nx // 2:]
    out[..., pad_to - ny // 2:, pad_to - nx // 2:] = x[..., :ny // 2, :nx // 2]
    return out


def _rss_block(kspace: np.ndarray, pad_to: int) -> np.ndarray:
    """``(b, kc, ky, kx)`` complex -> ``(b, pad_to, pad_to)`` float32 RSS magnitude.

    The output ``fftshift`` is applied once, to the real RSS image rather than to every coil.
    """
    image = scipy.fft.ifft2(_shifted_pad(kspace, pad_to), norm="ortho", workers=-1,
                            overwrite_x=True)
    power = (image.real ** 2 + image.imag ** 2).sum(-3)
    return np.sqrt(np.fft.fftshift(power, axes=(-2, -1)))


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
    """Crop the last two axes to at most ``size`` around the k-space centre (index ``n // 2`` goes
    to ``size // 2``, the convention of the padding)."""
    for axis in (-2, -1):
        n = x.shape[axis]
        if n > size:
            start = n // 2 - size // 2
            x = np.take(x, np.arange(start, start + size), axis=axis)
    return x


def kspace_to_image(kspace: np.ndarray | torch.Tensor, *, multicoil: bool, pad_to: int = 512,
                    size: int | None = 128, crop: bool = False,
                    block_bytes: int = 24 << 20) -> np.ndarray:
    """Magnitude images from k-space, vectorised over any leading axes.

    Centred zero-padding of k-space to ``pad_to x pad_to``, centred orthonormal 2D inverse FFT
    per coil, RSS over coils (multi-coil) or magnitude (single-coil), then anti-aliased resizing.
    Images go through batched FFTs (scipy, all cores) in blocks of about ``block_bytes`` of padded
    k-space, so that working memory stays small and cache-friendly however many images come in.

    Args:
        kspace: complex, ``(..., kc, ky, kx)`` if ``multicoil`` else ``(..., ky, kx)``.
        multicoil: combine coils by RSS (axis -3) rather than taking the magnitude.
        pad_to: k-space is zero-padded (centred) to ``pad_to x pad_to`` before the iFFT.
        size: output ``size x size``; ``None`` keeps ``pad_to``.
        crop: instead of padding to ``pad_to`` and resizing the images, keep the central
            ``size x size`` of k-space (a low-pass; zero-padded where k-space is smaller), so that
            the sampling mask carries over to the output line for line.

    Returns:
        float32 ``(..., size, size)`` magnitude images, in the k-space's own scale.
    """
    if crop:
        if size is None:
            raise ValueError("crop=True needs an output size")
        kspace, pad_to, size = center_crop(np.asarray(kspace), size), size, None
    x = np.asarray(kspace.numpy() if isinstance(kspace, torch.Tensor) else kspace)
    if not np.iscomplexobj(x):
        raise ValueError(f"k-space must be complex, got {x.dtype}")
    lead = x.shape[:-3] if multicoil else x.shape[:-2]
    x = x.reshape((-1,) + (x.shape[-3:] if multicoil else (1,) + x.shape[-2:]))
    out_size = pad_to if size is None else size
    out = np.empty((x.shape[0], out_size, out_size), np.float32)
    step = max(1, block_bytes // (x.shape[1] * pad_to * pad_to * 8))
    for i in range(0, x.shape[0], step):
        mag = torch.from_numpy(_rss_block(x[i:i + step], pad_to))
        out[i:i + step] = (mag if out_size == pad_to else resize(mag, out_size)).numpy()
    return out.reshape(lead + (out_size, out_size))


def coil_images(kspace: np.ndarray) -> np.ndarray:
    """Complex coil images ``(..., y, x)`` of k-space ``(..., ky, kx)`` (centred orthonormal iFFT,
    no padding), for display."""
    x = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(x, norm="ortho"), axes=(-2, -1))


# ----------------------------------------------------------------------------- data sets
@dataclass(frozen=True)
class PreprocessConfig:
    """How paired slices are made and split (paper §3.1)."""

    pad_to: int = 512
    size: int = 128
    accs: tuple[int, ...] = (4, 8, 10)
    coils: tuple[str, ...] = ("MultiCoil", "SingleCoil")
    val_fraction: float = 10 / 120     # P111-P120 of P001-P120
    n_val_subset: int = 240            # "shuffle the validation set and select the first 240"
    subset_seed: int = 0
    frames_per_chunk: int = 1          # frames read and written at a time (streaming)
    crop: bool = False                 # k-space centre crop instead of pad + resize (see kspace_to_image)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class _Source:
    coil: str
    case: str
    file: str
    full: Path
    sub: dict[int, tuple[Path, Path]]  # acc -> (k-space, mask)


def _sources(root: Path, task: str, cfg: PreprocessConfig) -> list[_Source]:
    """Fully sampled files with their under-sampled partners; missing partners are skipped."""
    full = [e for e in io.walk(root) if e.task == TASK_FOLDER[task] and e.acc is None
            and e.split == "TrainingSet" and e.coil in cfg.coils]
    out = []
    for e in full:
        sub = {}
        for acc in cfg.accs:
            p = root / e.coil / TASK_FOLDER[task] / "TrainingSet" / io.split_folder(acc) / e.case
            if (p / f"{e.file}.mat").is_file() and (p / f"{e.file}_mask.mat").is_file():
                sub[acc] = (p / f"{e.file}.mat", p / f"{e.file}_mask.mat")
        out.append(_Source(e.coil, e.case, e.file, e.path, sub))
    return out


def split_cases(cases: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split case names by order: the last ``round(n * val_fraction)`` (at least one) validate."""
    cases = sorted(set(cases))
    if len(cases) < 2:
        raise ValueError(f"need at least two cases to split train/validation, got {cases}")
    n_val = min(max(1, round(len(cases) * val_fraction)), len(cases) - 1)
    return cases[:-n_val], cases[-n_val:]


def pairs_path(out_dir: str | Path, task: str, acc: int) -> Path:
    return Path(out_dir) / f"pairs_{task}_acc{acc:02d}.h5"


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def _new_pairs_file(f: h5py.File, size: int, crop: bool = False) -> None:
    for name in ("input", "target"):
        f.create_dataset(name, shape=(0, size, size), maxshape=(None, size, size),
                         dtype="f4", chunks=(1, size, size))
    meta = {"coil": "S10", "case": "S8", "file": "S10", "slice": "i4", "frame": "i4",
            "scale": "f8", "split": "u1"}
    for name, dtype in meta.items():
        f.create_dataset(f"meta/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
    if crop:
        f.create_dataset("mask_lines", shape=(0, size), maxshape=(None, size), dtype="u1",
                         chunks=(1024, size))


def _validate_pair(src: _Source, acc: int, full_shape: tuple[int, ...]) -> np.ndarray:
    sub_path, mask_path = src.sub[acc]
    key = io.kspace_key(src.coil, acc)
    sub_shape = io.kspace_shape(sub_path, key)
    if sub_shape != full_shape:
        raise CMRxReconError(sub_path, f"shape {sub_shape} differs from FullSample {full_shape}")
    mask = io.load_mask(mask_path, io.mask_key(acc))
    io.check_mask_fits(mask, sub_shape, mask_path)
    return mask


def crop_lines(lines: np.ndarray, size: int) -> np.ndarray:
    """The ky lines ``(ky,)`` of a mask as they land in a ``size``-line centre crop (or pad) of
    k-space; padded lines count as not sampled."""
    n = len(lines)
    out = np.zeros(size, bool)
    if n >= size:
        out[:] = lines[n // 2 - size // 2:n // 2 - size // 2 + size]
    else:
        out[size // 2 - n // 2:size // 2 - n // 2 + n] = lines
    return out


def build_pairs(root: str | Path, out_dir: str | Path, task: str,
                cfg: PreprocessConfig = PreprocessConfig(), *, progress: bool = True,
                force: bool = False) -> dict[int, Path]:
    """Build one HDF5 file of pairs per acceleration factor for ``task`` ('cine' or 'mapping').

    Each file holds float32 ``input``/``target`` ``[N, size, size]``, per-slice ``meta/*``
    (coil, case, file, slice, frame, scale, split 0=train 1=val) and ``val_subset`` (indices of
    the seeded validation subset). Fully sampled images are computed once per source file and
    shared by the factors. Streaming: ``frames_per_chunk`` frames at a time. Idempotent: a
    finished file with the same config and source is reused. Atomic: temporary name, then rename.
    """
    root, out_dir = Path(root), Path(out_dir)
    stamp = json.dumps({"config": cfg.to_json(), "root": str(root.resolve()), "task": task})
    targets = {acc: pairs_path(out_dir, task, acc) for acc in cfg.accs}
    if not force and all(_is_finished(p, stamp) for p in targets.values()):
        return targets
    sources = _sources(root, task, cfg)
    if not sources:
        raise CMRxReconError(root, f"no fully sampled {task} files found")
    train_cases, val_cases = split_cases([s.case for s in sources], cfg.val_fraction)
    with _AtomicGroup(targets) as files:
        for f in files.values():
            _new_pairs_file(f, cfg.size, cfg.crop)
        for src in tqdm(sources, desc=f"pairs {task}", disable=not progress):
            _write_source(src, files, cfg, is_val=src.case in val_cases)
        for f in files.values():
            split = f["meta/split"][()]
            val_idx = np.flatnonzero(split == 1)
            rng = np.random.default_rng(cfg.subset_seed)
            f.create_dataset("val_subset", data=rng.permutation(val_idx)[:cfg.n_val_subset])
            f.attrs["stamp"] = stamp
            f.attrs["train_cases"] = json.dumps(train_cases)
            f.attrs["val_cases"] = json.dumps(val_cases)
    return targets


def iter_images(path: str | Path, key: str, *, pad_to: int, size: int | None,
                frames_per_chunk: int = 1, crop: bool = False):
    """Stream a k-space file as images: yields ``(t0, images)`` with float32 images
    ``(frames, kz, size, size)`` for frames ``t0 .. t0 + frames - 1``; only ``frames_per_chunk``
    frames of k-space are in memory at a time."""
    shape = io.kspace_shape(path, key)
    for t0 in range(0, shape[0], frames_per_chunk):
        kspace = io.load_kspace(path, key, index=(slice(t0, t0 + frames_per_chunk),))
        yield t0, kspace_to_image(kspace, multicoil=len(shape) == 5, pad_to=pad_to, size=size,
                                  crop=crop)


def _write_source(src: _Source, files: dict[int, h5py.File], cfg: PreprocessConfig,
                  is_val: bool) -> None:
    full_key = io.kspace_key(src.coil, None)
    shape = io.kspace_shape(src.full, full_key)
    accs = [a for a in files if a in src.sub]
    masks = {acc: _validate_pair(src, acc, shape) for acc in accs}
    opts = dict(pad_to=cfg.pad_to, size=cfg.size, frames_per_chunk=cfg.frames_per_chunk, crop=cfg.crop)
    streams = [iter_images(src.full, full_key, **opts)]
    streams += [iter_images(src.sub[a][0], io.kspace_key(src.coil, a), **opts) for a in accs]
    for (t0, target), *inputs in zip(*streams):
        n_t, n_z = target.shape[:2]
        target = target.reshape(-1, cfg.size, cfg.size)
        frames, slices = np.repeat(np.arange(t0, t0 + n_t), n_z), np.tile(np.arange(n_z), n_t)
        for acc, (_, inp) in zip(accs, inputs):
            inp = inp.reshape(-1, cfg.size, cfg.size)
            scale = inp.reshape(len(inp), -1).max(1).astype(np.float64)
            if np.any(scale <= 0):
                raise CMRxReconError(src.sub[acc][0], "an under-sampled image is all zeros")
            f, n = files[acc], len(inp)
            _append(f["input"], inp / scale[:, None, None].astype(np.float32))
            _append(f["target"], target / scale[:, None, None].astype(np.float32))
            for name, values in (("coil", np.full(n, src.coil.encode())),
                                 ("case", np.full(n, src.case.encode())),
                                 ("file", np.full(n, src.file.encode())),
                                 ("slice", slices), ("frame", frames), ("scale", scale),
                                 ("split", np.full(n, int(is_val), np.uint8))):
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
    """Open several HDF5 files under temporary names; rename all of them only on success."""

    def __init__(self, targets: dict[int, Path]) -> None:
        self.targets = targets
        self._ctx = {k: atomic_path(p) for k, p in targets.items()}
        self.files: dict[int, h5py.File] = {}

    def __enter__(self) -> dict[int, h5py.File]:
        for k, ctx in self._ctx.items():
            self.files[k] = h5py.File(ctx.__enter__(), "w")
        return self.files

    def __exit__(self, *exc) -> None:
        for f in self.files.values():
            f.close()
        for ctx in self._ctx.values():
            ctx.__exit__(*exc)


# ----------------------------------------------------------------------------- reading back
def load_pairs(path: str | Path, split: str = "train", *, subset: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read one split of a pairs file into memory.

    ``split='val_subset'`` gives the paper's shuffled validation subset, of which ``subset``
    keeps the first entries. Returns ``(input, target, meta)``, images float32 ``[N, S, S]``.
    """
    path = Path(path)
    if not path.is_file():
        raise CMRxReconError(path, "pairs file not found (run the preprocessing first)")
    with h5py.File(path, "r") as f:
        if split == "val_subset":
            idx = f["val_subset"][()]
            if subset is not None:
                idx = idx[:subset]
        elif split in SPLITS:
            idx = np.flatnonzero(f["meta/split"][()] == SPLITS.index(split))
        else:
            raise ValueError(f"unknown split {split!r}")
        order = np.argsort(idx)                     # h5py reads need increasing indices
        inv = np.argsort(order)
        sorted_idx = idx[order]
        inp = f["input"][sorted_idx][inv]
        tgt = f["target"][sorted_idx][inv]
        meta = {k: f[f"meta/{k}"][()][idx] for k in f["meta"]}
        if "mask_lines" in f:
            meta["mask_lines"] = f["mask_lines"][sorted_idx][inv].astype(bool)
    meta = {k: (v.astype(str) if v.dtype.kind == "S" else v) for k, v in meta.items()}
    meta["index"] = idx
    return inp, tgt, meta


def table1(out_dir: str | Path, tasks: tuple[str, ...] = ("cine", "mapping"),
           accs: tuple[int, ...] = (4, 8, 10)) -> list[dict[str, object]]:
    """Pair counts per task, factor and split in the layout of the paper's Table 1."""
    rows = []
    for task in tasks:
        row: dict[str, object] = {"task": f"{TASK_LABEL[task]} ({task})"}
        for acc in accs:
            with h5py.File(pairs_path(out_dir, task, acc), "r") as f:
                split = f["meta/split"][()]
            counts = defaultdict(int, zip(*np.unique(split, return_counts=True)))
            row[f"AccFactor{acc:02d} Train"] = int(counts[0])
            row[f"AccFactor{acc:02d} Valid"] = int(counts[1])
        rows.append(row)
    return rows
