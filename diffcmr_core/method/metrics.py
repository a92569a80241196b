"""The challenge's metrics (see ``cmrxrecon-format.md``), for one 2D magnitude image.

Both images are first divided by their own maximum; then PSNR and SSIM are scikit-image's with
``data_range = gt.max()`` (SSIM with its defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03) and
NMSE = ||gt - pred||^2 / ||gt||^2. Every table of the study is computed by these functions.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _normalise(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(f"expected two 2D images of one shape, got {gt.shape} and {pred.shape}")
    return gt / gt.max(), pred / pred.max()


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for a perfect reconstruction)."""
    gt, pred = _normalise(gt, pred)
    if np.array_equal(gt, pred):
        return float("inf")
    return float(peak_signal_noise_ratio(gt, pred, data_range=gt.max()))


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """Structural similarity."""
    gt, pred = _normalise(gt, pred)
    return float(structural_similarity(gt, pred, data_range=gt.max()))


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mean squared error."""
    gt, pred = _normalise(gt, pred)
    return float(np.sum((gt - pred) ** 2) / np.sum(gt**2))


METRICS = ("psnr", "ssim", "nmse")


def all_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and NMSE of ``pred`` against ``gt`` (2D images), as the paper scores them."""
    return {"psnr": psnr(gt, pred), "ssim": ssim(gt, pred), "nmse": nmse(gt, pred)}


HEART_METRICS = tuple(f"heart_{m}" for m in METRICS)
SSIM_WINDOW = 7  # scikit-image's default window: a region needs at least this many pixels a side


def region_metrics(gt: np.ndarray, pred: np.ndarray, box) -> dict[str, float]:
    """:func:`all_metrics` inside ``box = (y0, y1, x0, x1)`` (ends exclusive), as the challenge
    scores its central crop: both images cropped, then each divided by its own maximum. A box
    narrower than the SSIM window is widened to it about its centre, inside the image."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(f"expected two 2D images of one shape, got {gt.shape} and {pred.shape}")
    edges = []
    for (lo, hi), n in zip(((box[0], box[1]), (box[2], box[3])), gt.shape):
        lo, hi = int(lo), int(hi)
        if not 0 <= lo < hi <= n:
            raise ValueError(f"region {tuple(box)} does not fit an image of {gt.shape}")
        if hi - lo < SSIM_WINDOW:
            lo = min(max(0, (lo + hi - SSIM_WINDOW) // 2), n - SSIM_WINDOW)
            hi = lo + SSIM_WINDOW
        edges.append((lo, hi))
    (y0, y1), (x0, x1) = edges
    return all_metrics(gt[y0:y1, x0:x1], pred[y0:y1, x0:x1])
