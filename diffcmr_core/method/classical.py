"""The classical baseline: parallel imaging plus compressed sensing (PI-CS), from the acquisition.

What a scanner's reconstruction does today, and what the paper's introduction sets DiffCMR
against: coil sensitivities estimated from the fully sampled centre lines (ESPIRiT, Uecker et al.
2014) and a SENSE reconstruction with an L1 prior on Daubechies-4 wavelet coefficients
(Lustig et al. 2007),

    min_x  1/2 || P F S x - y ||_2^2 + lambda || W x ||_1,

solved by FISTA. Single-coil files have no coil maps (S = 1): the same prior alone. The solver,
the ESPIRiT calibration, the wavelet and the proximal operators are sigpy's
(``sigpy.mri.app.EspiritCalib``, ``sigpy.linop``, ``sigpy.prox``, ``sigpy.app.LinearLeastSquares``);
this module is the glue. The objective is the one of ``sigpy.mri.app.L1WaveletRecon``, built
from sigpy's operators so that every frame of a slice is solved in one call with the slice's one
set of maps (frames are independent problems: the wavelet and the L1 term act per frame, and
FISTA's step size is fixed at 1, the bound of ``||P F S|| <= 1`` for ESPIRiT's unit-norm maps,
so no power iteration is needed; ``tests/test_classical.py`` checks the result against
``L1WaveletRecon`` frame by frame). ``regulariser="tv"`` uses ``sigpy.mri.app.TotalVariationRecon``
per frame instead.

Conventions: k-space ``(F, C, ky, kx)`` complex (``C = 1`` for single-coil), the centred
orthonormal FFT of :mod:`~diffcmr_core.data.kspace` (sigpy's ``center=True`` FFT is the same
transform), masks ``(ky, kx)`` bool with whole lines. The weight ``lambda`` is relative: the data
are divided by the maximum of their zero-filled SENSE image first, so one weight suits files of
any scale (the real data's and the phantom's).

Read-out decoupling (``columns``): the read-out ``kx`` is fully sampled, so after an inverse FFT
along ``kx`` every image column is its own problem in the data term. With ``columns=(x0, x1)``
only those image columns are solved (the wavelet prior then sees that band), and the others keep
the zero-filled SENSE combination; the study uses it when its images keep only the central part
of the read-out (the quick profile's ``roi``), as the networks, which see only that region too.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from diffcmr_core.data.kspace import CoilConsistency, center_crop, crop_lines, fft2c, ifft1c, ifft2c
from diffcmr_core.errors import ReconstructionError

REGULARISERS = ("wavelet", "tv")


@dataclass(frozen=True)
class CSConfig:
    """The PI-CS baseline's settings. ``weight`` and ``iterations`` are chosen on training
    slices from the grids ``weights`` x ``iteration_grid`` (:func:`choose`); the study records
    the choice beside the models."""

    regulariser: str = "wavelet"  # L1 of db4 wavelets, or total variation
    weights: tuple[float, ...] = (5e-3, 2e-2, 8e-2, 3e-1)  # log-spaced, x4
    iteration_grid: tuple[int, ...] = (5, 10, 20, 40)
    tuning_slices: int = 4  # training slices per task, factor, coil
    espirit_iterations: int = 30  # power iterations per pixel (sigpy: 100)
    espirit_kernel: int | None = None  # None: 3 to 6, a quarter of the ACS lines
    espirit_crop: float = 0.95  # sigpy's default eigenvalue threshold

    def __post_init__(self) -> None:
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}, got {self.regulariser!r}")
        if not self.weights or min(self.weights) <= 0:
            raise ValueError(f"weights must be positive, got {self.weights}")
        if not self.iteration_grid or min(self.iteration_grid) < 1:
            raise ValueError(f"iteration_grid must be positive, got {self.iteration_grid}")


def acs_width(lines: np.ndarray) -> int:
    """The number of contiguous sampled ky lines around the centre line ``n // 2`` of a line
    mask ``(ky,)`` (the auto-calibration region the coil maps are estimated from)."""
    lines = np.asarray(lines, bool)
    c = len(lines) // 2
    if not lines[c]:
        return 0
    lo = c
    while lo > 0 and lines[lo - 1]:
        lo -= 1
    hi = c
    while hi < len(lines) - 1 and lines[hi + 1]:
        hi += 1
    return hi - lo + 1


_MAPS: OrderedDict[str, np.ndarray] = OrderedDict()  # ESPIRiT maps by their calibration data
_MAPS_KEPT = 64


def coil_maps(kspace: np.ndarray, lines: np.ndarray, cfg: CSConfig = CSConfig()) -> np.ndarray:
    """ESPIRiT sensitivity maps ``(C, ky, kx)`` complex64 of one slice from its k-space
    ``(F, C, ky, kx)`` and its line mask ``(ky,)``; calibrated on the central
    ``acs_width(lines)`` lines (at most 24, the real data's) of the frame with the most energy
    there (the coils do not move between frames; a mapping series' weightings differ in sign and
    size, so a mean over frames can cancel: on the quick profile's validation slices the
    strongest frame gave 0.03-0.19 dB more than the mean, in all six settings tried). ESPIRiT's
    kernel needs a calibration region several kernels wide: a quarter of the
    lines, from 3 to 6 (``espirit_kernel=None``): with the real data's 24 lines sigpy's default 6,
    with the quick phantom's 10 lines 3 (with 6 the maps are wrong: on one quick slice, combining
    the fully sampled coils with them left an NMSE of 0.85 against their RSS, with 3 0.012).
    Single-coil data (``C = 1``) get ones.

    The maps depend only on the calibration lines, which every factor's file of a slice shares,
    so they are kept (in this process) by a hash of those lines and computed once per slice."""
    import sigpy.mri

    n_coils = kspace.shape[1]
    if n_coils == 1:
        return np.ones(kspace.shape[1:], np.complex64)
    width = min(acs_width(lines), 24)
    if width < 4:
        raise ReconstructionError(
            None, f"only {width} contiguous central lines: too few to estimate coil maps"
        )
    kernel = cfg.espirit_kernel or max(3, min(6, width // 4))
    c = kspace.shape[-2] // 2
    rows = slice(c - width // 2, c - width // 2 + width)
    energy = (np.abs(kspace[:, :, rows]) ** 2).sum(axis=(1, 2, 3))
    mean = kspace[int(np.argmax(energy))]
    calib = np.ascontiguousarray(mean[:, rows])
    key = hashlib.sha1(
        calib.tobytes()
        + repr((mean.shape, kernel, cfg.espirit_iterations, cfg.espirit_crop)).encode()
    ).hexdigest()
    if key not in _MAPS:
        maps = sigpy.mri.app.EspiritCalib(
            mean,
            calib_width=width,
            kernel_width=kernel,
            crop=cfg.espirit_crop,
            max_iter=cfg.espirit_iterations,
            show_pbar=False,
        ).run()
        _MAPS[key] = np.asarray(maps, np.complex64)
        while len(_MAPS) > _MAPS_KEPT:
            _MAPS.popitem(last=False)
    _MAPS.move_to_end(key)
    return _MAPS[key]


def _sense_l1_wavelet(
    y: np.ndarray,
    maps: np.ndarray,
    lines: np.ndarray,
    weight: float,
    record: tuple[int, ...],
    axes: tuple[int, ...],
) -> dict[int, np.ndarray]:
    """``argmin 1/2 ||P F S x - y||^2 + weight ||W x||_1`` for every frame of ``y``
    ``(F, C, ky, n)`` at once (FFT over ``axes``) by FISTA; ``x`` ``(F, ky, n)`` after each
    number of iterations in ``record`` (one run: a shorter run is the start of a longer one)."""
    import sigpy as sp

    n_frames, n_coils, ny, nx = y.shape
    keep = np.broadcast_to(lines[:, None], (ny, nx)).astype(np.float32)
    S = sp.linop.Multiply((n_frames, 1, ny, nx), maps[None])
    A = (
        sp.linop.Multiply((n_frames, n_coils, ny, nx), keep)
        * sp.linop.FFT(S.oshape, axes=axes, center=True)
        * S
    )
    W = sp.linop.Wavelet((n_frames, 1, ny, nx), axes=(-2, -1), wave_name="db4")
    prox = sp.prox.UnitaryTransform(sp.prox.L1Reg(W.oshape, weight), W)
    app = sp.app.LinearLeastSquares(
        A, y * keep, proxg=prox, max_iter=max(record), alpha=1.0, show_pbar=False
    )
    out = {}
    while not app.alg.done():  # sigpy's App.run, keeping the recorded iterates
        app.alg.update()
        if app.alg.iter in record:
            out[app.alg.iter] = np.array(app.x[:, 0], np.complex64)
    return out


def _tv(
    y: np.ndarray, maps: np.ndarray, lines: np.ndarray, weight: float, record: tuple[int, ...]
) -> dict[int, np.ndarray]:
    import sigpy.mri

    keep = np.broadcast_to(lines[:, None], y.shape[-2:]).astype(np.float32)
    return {
        it: np.stack(
            [
                np.asarray(
                    sigpy.mri.app.TotalVariationRecon(
                        f, maps, weight, weights=keep, max_iter=it, show_pbar=False
                    ).run(),
                    np.complex64,
                )
                for f in y
            ]
        )
        for it in record
    }


def pics(
    kspace: np.ndarray,
    mask: np.ndarray,
    weight: float,
    iterations: int,
    cfg: CSConfig = CSConfig(),
    *,
    columns: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PI-CS images of one slice's frames: k-space ``(F, C, ky, kx)`` complex (zeros where not
    acquired), mask ``(ky, kx)`` (or lines ``(ky,)``), relative ``weight``, FISTA
    ``iterations``. Returns ``(image (F, ky, kx) complex64, maps (C, ky, kx))``: the coil-combined
    complex image (its scale that of the data) and the coil maps it was solved with.

    ``columns=(x0, x1)``: solve only those image columns (read-out decoupling, see the module's
    docstring); the others keep the zero-filled SENSE combination ``S^H F^H y``."""
    images, maps = pics_path(kspace, mask, weight, (iterations,), cfg, columns=columns)
    return images[iterations], maps


def pics_path(
    kspace: np.ndarray,
    mask: np.ndarray,
    weight: float,
    record: tuple[int, ...],
    cfg: CSConfig = CSConfig(),
    *,
    columns: tuple[int, int] | None = None,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """:func:`pics` after each number of iterations in ``record`` (one solve): ``({iterations:
    image}, maps)``. The parameter choice uses it to score several iteration counts at once."""
    y = np.asarray(kspace, np.complex64)
    if y.ndim != 4:
        raise ValueError(f"k-space must be (frames, coils, ky, kx), got shape {y.shape}")
    lines = np.asarray(mask, bool)
    lines = lines.any(axis=1) if lines.ndim == 2 else lines
    if len(lines) != y.shape[-2]:
        raise ValueError(f"mask has {len(lines)} lines, k-space {y.shape[-2]}")
    record = tuple(sorted(set(int(r) for r in record)))
    if not record or record[0] < 1:
        raise ValueError(f"iterations must be positive, got {record}")
    y = y * lines[:, None]
    maps = coil_maps(y, lines, cfg)
    zero_filled = (np.conj(maps) * ifft2c(y)).sum(axis=1)
    scale = float(np.abs(zero_filled).max())
    if not np.isfinite(scale) or scale <= 0:
        raise ReconstructionError(None, "the zero-filled image is all zeros or not finite")
    y = y / scale
    if columns is None:
        data, sub_maps, axes = y, maps, (-2, -1)
    else:
        x0, x1 = columns
        hybrid = ifft1c(y, axis=-1)  # (F, C, ky, x): image along the read-out
        data, sub_maps, axes = (
            np.ascontiguousarray(hybrid[..., x0:x1]),
            np.ascontiguousarray(maps[..., x0:x1]),
            (-2,),
        )
    if cfg.regulariser == "wavelet":
        solved = _sense_l1_wavelet(data, sub_maps, lines, weight, record, axes)
    else:
        if columns is not None:
            raise ValueError("read-out decoupling (columns) is implemented for the wavelet prior")
        solved = _tv(data, sub_maps, lines, weight, record)
    out = {}
    for it, x in solved.items():
        if columns is None:
            image = x
        else:
            image = zero_filled / scale
            image[..., columns[0] : columns[1]] = x
        out[it] = (image * scale).astype(np.complex64)
    return out, maps


def coil_kspace(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The coil k-space ``(F, C, ky, kx)`` of coil-combined images ``(F, ky, kx)`` and maps
    ``(C, ky, kx)``: ``F S x`` (what the preprocessing reads, as it reads an acquisition)."""
    return fft2c(maps[None] * image[:, None]).astype(np.complex64)


def cost_per_image(ky: int, kx: int, coils: int, iterations: int) -> float:
    """Approximate floating-point operations of one image's PI-CS solve: per iteration one
    forward and one adjoint FFT per coil (5 N log2 N each, N = ky kx), the coil products
    (8 N per coil each way) and a wavelet transform and its inverse (about 2 x 8 taps x 2 x N
    for db4); ESPIRiT is left out (once per slice, shared by frames and factors)."""
    n = ky * kx
    per = coils * (2 * 5 * n * np.log2(max(n, 2)) + 2 * 8 * n) + 2 * 32 * n
    return float(iterations * per)


def acquisition_consistency(
    acquisitions,
    n: int,
    size: int,
    scale: np.ndarray,
    cfg: CSConfig = CSConfig(),
    weight: float = 1.0,
):
    """The :class:`~diffcmr_core.data.kspace.CoilConsistency` of ``n`` images made by
    ``kspace_to_image(crop=True)`` at ``size`` from ``acquisitions``
    (:class:`~diffcmr_core.data.acquired.Acquired`, their ``index`` among the ``n`` images),
    each image divided by its ``scale`` (the input's maximum): the measured coil k-space cropped
    (or zero-padded) to the ``size x size`` centre as the images were, its acquired lines, ESPIRiT
    maps at that grid (:func:`coil_maps`; ones for single-coil) and the phase of the
    low-resolution image of the central lines alone. Coil counts that differ between files are
    padded with empty coils (zero maps and data: they add nothing)."""
    import torch

    n_coils = max(a.kspace.shape[1] for a in acquisitions)
    measured = np.zeros((n, n_coils, size, size), np.complex64)
    maps = np.zeros((n, n_coils, size, size), np.complex64)
    phase = np.zeros((n, size, size), np.float32)
    lines = np.zeros((n, size), bool)
    for acq in acquisitions:
        k = _centre(center_crop(acq.kspace, size), size)  # (F, C, S, S)
        keep = crop_lines(acq.mask.any(axis=1), size)
        k = k * keep[:, None]
        m = coil_maps(k, keep, cfg)
        width = acs_width(keep)
        centre = np.zeros(size, bool)
        centre[size // 2 - width // 2 : size // 2 - width // 2 + width] = True
        low = (np.conj(m) * ifft2c(k * centre[:, None])).sum(axis=1)  # (F, S, S)
        c = k.shape[1]
        measured[acq.index, :c] = k / scale[acq.index][:, None, None, None]
        maps[acq.index, :c] = m
        phase[acq.index] = np.angle(low)
        lines[acq.index] = keep
    return CoilConsistency(
        torch.from_numpy(measured),
        torch.from_numpy(lines),
        torch.from_numpy(maps),
        torch.from_numpy(phase),
        weight,
    )


def _centre(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the last two axes to ``size`` around the k-space centre (index ``n // 2`` goes
    to ``size // 2``), as ``kspace_to_image(crop=True)`` does for smaller k-space."""
    ny, nx = x.shape[-2:]
    if ny == size and nx == size:
        return x
    out = np.zeros(x.shape[:-2] + (size, size), x.dtype)
    y0, x0 = size // 2 - ny // 2, size // 2 - nx // 2
    out[..., y0 : y0 + ny, x0 : x0 + nx] = x
    return out
