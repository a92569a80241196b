"""K-space to images (paper §2.2): the centred FFT, zero-padding, root-sum-of-squares, resizing.

Conventions: k-space ``(..., ky, kx)`` with its centre at index ``n // 2`` (the challenge's), images
``(..., y, x)`` likewise; multi-coil k-space has coils on axis -3. (The paper's text says "RSS then
iFFT"; iFFT per coil then RSS is the correct order, and the one we use.)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _centred(x: Array, inverse: bool) -> Array:
    """ifftshift -> orthonormal 2D (inverse) FFT -> fftshift over the last two axes; numpy arrays
    through ``scipy.fft`` on all cores (complex64 stays complex64), tensors through
    ``torch.fft``."""
    if isinstance(x, torch.Tensor):
        fft = torch.fft.ifft2 if inverse else torch.fft.fft2
        y = fft(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho")
        return torch.fft.fftshift(y, dim=(-2, -1))
    fft = scipy.fft.ifft2 if inverse else scipy.fft.fft2
    y = fft(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho", workers=-1)
    return np.fft.fftshift(y, axes=(-2, -1))


def ifft2c(kspace: Array) -> Array:
    """Centred orthonormal 2D inverse FFT over the last two axes: k-space ``(..., ky, kx)``
    complex with its centre at index ``n // 2`` -> image ``(..., y, x)`` complex with its centre
    there. numpy or torch.

    >>> k = np.zeros((4, 4), np.complex64); k[2, 2] = 4  # the k-space centre alone
    >>> np.allclose(ifft2c(k), 1)  # a flat image (orthonormal: energy kept)
    True
    """
    return _centred(kspace, inverse=True)


def fft2c(image: Array) -> Array:
    """Centred orthonormal 2D FFT over the last two axes, image ``(..., y, x)`` -> k-space
    ``(..., ky, kx)``: the inverse (and adjoint) of :func:`ifft2c`.

    >>> x = np.random.default_rng(0).standard_normal((3, 8, 6))
    >>> bool(np.allclose(ifft2c(fft2c(x)), x))
    True
    >>> bool(np.isclose(np.vdot(fft2c(x), fft2c(x)).real, (x**2).sum()))  # Parseval
    True
    """
    return _centred(image, inverse=False)


def ifft1c(kspace: np.ndarray, axis: int = -1) -> np.ndarray:
    """Centred orthonormal inverse FFT along one axis (numpy, ``scipy.fft`` on all cores): the
    1D form of :func:`ifft2c`, e.g. the read-out alone, k-space to a hybrid (ky, x) space."""
    y = scipy.fft.ifft(np.fft.ifftshift(kspace, axes=axis), axis=axis, norm="ortho", workers=-1)
    return np.fft.fftshift(y, axes=axis)


RESIZES = ("area", "public")


def resize(images: torch.Tensor, size: int, method: str = "area") -> torch.Tensor:
    """Resizing of ``(..., h, w)`` real images to ``(..., size, size)``.

    ``method``:

    * ``"area"`` (our default): anti-aliased. Integer down-sampling factors (512 -> 128) use
      exact box averaging; other factors anti-aliased bilinear interpolation.
    * ``"public"``: what the authors' public code does, ``transforms.ToTensor()`` then
      ``transforms.Resize((128, 128))`` on a tensor, which in the torchvision of 2023 (up to 0.16)
      is bilinear interpolation **without** anti-aliasing (``antialias`` defaulted to ``False``
      for tensors, ``True`` only from 0.17): each output pixel interpolates the 2 x 2 input
      pixels around its centre, so detail finer than the new grid folds back in instead of
      being averaged away (at 512 -> 128, 3 of 4 rows and columns are never read). The paper's
      numbers were made this way.
    """
    if method not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {method!r}")
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    flat = images.reshape(-1, 1, h, w)
    if method == "public":
        out = F.interpolate(
            flat, size=(size, size), mode="bilinear", antialias=False, align_corners=False
        )
    elif h % size == 0 and w % size == 0:
        out = F.interpolate(flat, size=(size, size), mode="area")
    else:
        out = F.interpolate(
            flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return out.reshape(*lead, size, size)


def resize_to(images: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resizing of ``(..., h, w)`` real images to ``(..., *shape)`` (anti-aliased where
    it shrinks); float32 numpy. The way from the network's square images back to a file's
    original (ky, kx) matrix: zero-padding k-space kept the field of view, so only the grid
    changes."""
    x = torch.as_tensor(np.asarray(images, np.float32))
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    if (h, w) == tuple(shape):
        return x.numpy().copy()
    out = F.interpolate(
        x.reshape(-1, 1, h, w),
        size=tuple(shape),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return out.reshape(*lead, *shape).numpy()


def roi_box(n: int, frac: float) -> tuple[int, int]:
    """``(start, stop)`` of the central ``frac`` of an axis of length ``n`` (as
    :func:`crop_roi`)."""
    keep = max(1, int(round(n * frac)))
    start = n // 2 - keep // 2
    return start, start + keep


def _shifted_pad(x: np.ndarray, pad_to: int) -> np.ndarray:
    """``ifftshift(center_pad(x, pad_to))`` over the last two axes, built directly.

    The shift is folded into where the four quadrants of ``x`` are placed, so the padded array
    is written once and never copied to be shifted.
    """
    ny, nx = x.shape[-2:]
    if ny > pad_to or nx > pad_to:
        raise ValueError(f"k-space (ky, kx) = {(ny, nx)} is larger than pad_to = {pad_to}")
    out = np.zeros(x.shape[:-2] + (pad_to, pad_to), np.complex64)
    hy, hx = ny - ny // 2, nx - nx // 2  # from the centre line on, data go to the start
    out[..., :hy, :hx] = x[..., ny // 2 :, nx // 2 :]
    out[..., :hy, pad_to - nx // 2 :] = x[..., ny // 2 :, : nx // 2]
    out[..., pad_to - ny // 2 :, :hx] = x[..., : ny // 2, nx // 2 :]
    out[..., pad_to - ny // 2 :, pad_to - nx // 2 :] = x[..., : ny // 2, : nx // 2]
    return out


def _rss_block(kspace: np.ndarray, pad_to: int) -> np.ndarray:
    """``(b, kc, ky, kx)`` complex -> ``(b, pad_to, pad_to)`` float32 RSS magnitude.

    This is ``rss(ifft2c(center_pad(kspace)))`` with the shifts of :func:`ifft2c` moved out of
    the way of the data: the input shift is folded into where the padding puts the quadrants,
    the output shift is applied once to the real RSS image instead of to every coil; the FFT is
    scipy's, on all cores (``benchmarks/bench_preprocess.py`` measures the difference).
    """
    image = scipy.fft.ifft2(
        _shifted_pad(kspace, pad_to), norm="ortho", workers=-1, overwrite_x=True
    )
    power = (image.real**2 + image.imag**2).sum(-3)
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


def crop_roi(images: np.ndarray, roi: tuple[float, float]) -> np.ndarray:
    """The central ``roi = (fy, fx)`` fractions of the last two axes (rows, columns), centred on
    the image centre (index ``n // 2``)."""
    out = images
    for axis, frac in zip((-2, -1), roi):
        start, stop = roi_box(images.shape[axis], frac)
        out = np.take(out, np.arange(start, stop), axis=axis)
    return out


def kspace_to_image(
    kspace: np.ndarray | torch.Tensor,
    *,
    multicoil: bool,
    pad_to: int = 512,
    size: int | None = 128,
    crop: bool = False,
    roi: tuple[float, float] | None = None,
    resize_method: str = "area",
    block_bytes: int = 24 << 20,
) -> np.ndarray:
    """Magnitude images from k-space, vectorised over any leading axes.

    Centred zero-padding of k-space to ``pad_to x pad_to``, centred orthonormal 2D inverse FFT
    per coil, RSS over coils (multi-coil) or magnitude (single-coil), then :func:`resize` by
    ``resize_method``. Batched FFTs (scipy, all cores) in blocks of about ``block_bytes`` of
    padded k-space keep working memory small and cache-friendly however many images come in.

    Args:
        kspace: complex, ``(..., kc, ky, kx)`` if ``multicoil`` else ``(..., ky, kx)``.
        multicoil: combine coils by RSS (axis -3) rather than taking the magnitude.
        pad_to: k-space is zero-padded (centred) to ``pad_to x pad_to`` before the iFFT.
        size: output ``size x size``; ``None`` keeps ``pad_to``.
        crop: instead of padding to ``pad_to`` and resizing the images, keep the central
            ``size x size`` of k-space (a low-pass; zero-padded where k-space is smaller), so that
            the sampling mask carries over to the output line for line.
        roi: keep only the central ``(fy, fx)`` fractions of the ``pad_to x pad_to`` image
            (rows, columns) before resizing (the quick profile's crop around the heart).

    Returns:
        float32 ``(..., size, size)`` magnitude images, in the k-space's own scale.
    """
    if crop:
        if size is None:
            raise ValueError("crop=True needs an output size")
        if roi is not None:
            raise ValueError(
                "crop=True (a k-space centre crop) and roi (an image crop) exclude "
                "each other: the mask no longer maps onto an image region's lines"
            )
        kspace, pad_to, size = center_crop(np.asarray(kspace), size), size, None
    if resize_method not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize_method!r}")
    x = np.asarray(kspace.numpy() if isinstance(kspace, torch.Tensor) else kspace)
    if not np.iscomplexobj(x):
        raise ValueError(f"k-space must be complex, got {x.dtype}")
    lead = x.shape[:-3] if multicoil else x.shape[:-2]
    x = x.reshape((-1,) + (x.shape[-3:] if multicoil else (1,) + x.shape[-2:]))
    out_size = pad_to if size is None else size
    out = np.empty((x.shape[0], out_size, out_size), np.float32)
    step = max(1, block_bytes // (x.shape[1] * pad_to * pad_to * 8))
    for i in range(0, x.shape[0], step):
        mag = _rss_block(x[i : i + step], pad_to)
        mag = torch.from_numpy(np.ascontiguousarray(crop_roi(mag, roi)) if roi else mag)
        out[i : i + step] = (
            mag
            if mag.shape[-1] == out_size == mag.shape[-2]
            else resize(mag, out_size, resize_method)
        ).numpy()
    return out.reshape(lead + (out_size, out_size))


def coil_images(kspace: np.ndarray) -> np.ndarray:
    """Complex coil images ``(..., y, x)`` of k-space ``(..., ky, kx)`` (centred orthonormal iFFT,
    no padding), for display."""
    return ifft2c(np.asarray(kspace))


def crop_lines(lines: np.ndarray, size: int) -> np.ndarray:
    """The ky lines ``(ky,)`` of a mask as they land in a ``size``-line centre crop (or pad) of
    k-space; padded lines count as not sampled."""
    n = len(lines)
    out = np.zeros(size, bool)
    if n >= size:
        out[:] = lines[n // 2 - size // 2 : n // 2 - size // 2 + size]
    else:
        out[size // 2 - n // 2 : size // 2 - n // 2 + n] = lines
    return out


class CoilConsistency:
    """Data consistency with the acquisition, for magnitude images on the acquisition's grid
    (a k-space centre crop to the network's size, ``kspace_to_image(crop=True)``).

    A magnitude image ``m`` ``(B, S, S)`` is given the phase ``phase`` of a low-resolution
    estimate, expanded to the coils with the maps, ``k_c = F(S_c m e^{i phase})``; on the acquired
    lines the measured coil k-space replaces it (``weight = 1``) or is mixed in,
    ``(1 - weight) k + weight y`` (for noisy data); the unacquired lines are left untouched; the
    coils are combined back by root-sum-of-squares, as the targets are.

    Built once per batch of slices (measured data, lines, maps, phase), outside any sampler:
    ``measured`` ``(B, C, S, S)`` complex (zeros where not acquired, on the images' scale),
    ``lines`` ``(B, S)`` bool (acquired ky lines), ``maps`` ``(B, C, S, S)`` complex,
    ``phase`` ``(B, S, S)`` real [rad]. Torch tensors; :meth:`repeat` tiles them for R rounds
    sampled as one batch (round-major, as the samplers batch them)."""

    def __init__(
        self,
        measured: torch.Tensor,
        lines: torch.Tensor,
        maps: torch.Tensor,
        phase: torch.Tensor,
        weight: float = 1.0,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        if measured.shape != maps.shape or measured.shape[-2] != lines.shape[-1]:
            raise ValueError(
                f"measured {tuple(measured.shape)}, maps {tuple(maps.shape)} and "
                f"lines {tuple(lines.shape)} do not fit"
            )
        self.measured, self.maps, self.weight = measured, maps, weight
        self.keep = lines.to(torch.bool)[:, None, :, None]  # (B, 1, S, 1)
        self.rotation = torch.polar(torch.ones_like(phase), phase)  # e^{i phase}

    def repeat(self, rounds: int) -> CoilConsistency:
        """The same operator for R rounds stacked along the batch (round-major)."""
        out = CoilConsistency.__new__(CoilConsistency)
        out.measured, out.maps = (
            self.measured.repeat(rounds, 1, 1, 1),
            self.maps.repeat(rounds, 1, 1, 1),
        )
        out.keep, out.rotation = (
            self.keep.repeat(rounds, 1, 1, 1),
            self.rotation.repeat(rounds, 1, 1),
        )
        out.weight = self.weight
        return out

    def subset(self, first: int, n: int) -> CoilConsistency:
        """The operator of slices ``first .. first + n - 1``."""
        out = CoilConsistency.__new__(CoilConsistency)
        sl = slice(first, first + n)
        out.measured, out.maps = self.measured[sl], self.maps[sl]
        out.keep, out.rotation, out.weight = self.keep[sl], self.rotation[sl], self.weight
        return out

    def to(self, device) -> CoilConsistency:
        """The operator with its tensors on ``device``."""
        out = CoilConsistency.__new__(CoilConsistency)
        out.measured, out.maps = self.measured.to(device), self.maps.to(device)
        out.keep, out.rotation, out.weight = (
            self.keep.to(device),
            self.rotation.to(device),
            self.weight,
        )
        return out

    def expand(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``(B, S, S)`` magnitudes -> their coil k-space ``(B, C, S, S)``."""
        image = magnitude.to(torch.float32) * self.rotation
        return fft2c(self.maps * image[:, None])

    def project(self, kspace: torch.Tensor) -> torch.Tensor:
        """Coil k-space with the acquired lines set to the measurement (mixed by ``weight``)."""
        mixed = kspace + self.weight * (self.measured - kspace)
        return torch.where(self.keep, mixed, kspace)

    def combine(self, kspace: torch.Tensor) -> torch.Tensor:
        """Coil k-space -> the RSS magnitude ``(B, S, S)``."""
        coils = ifft2c(kspace)
        return (coils.real**2 + coils.imag**2).sum(1).sqrt()

    def __call__(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Magnitude images ``(B, S, S)`` -> the RSS of their acquisition-consistent coil images."""
        return self.combine(self.project(self.expand(magnitude)))


# ----------------------------------------------------------------------------- masks
def equispaced_mask(ny: int, nx: int, acc: int, acs_lines: int = 24) -> np.ndarray:
    """Challenge-like mask ``(ky, kx)`` bool: every ``acc``-th ky line through the centre line
    ``ny // 2``, plus the central ``acs_lines`` lines; each kept line is fully sampled along kx.

    >>> m = equispaced_mask(12, 2, acc=4, acs_lines=2)
    >>> m.shape, np.flatnonzero(m[:, 0]).tolist()
    ((12, 2), [2, 5, 6, 10])
    """
    centre = ny // 2
    ky = np.arange(ny)
    keep = (ky - centre) % acc == 0
    keep[max(centre - acs_lines // 2, 0) : centre + acs_lines - acs_lines // 2] = True
    return np.repeat(keep[:, None], nx, axis=1)


def effective_acceleration(ny: int, acc: int, acs_lines: int) -> float:
    """Lines of k-space over lines acquired by :func:`equispaced_mask`."""
    return ny / equispaced_mask(ny, 1, acc, acs_lines).sum()


# ----------------------------------------------------------------------------- geometry
