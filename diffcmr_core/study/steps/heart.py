"""Where the heart is in a network image: a box from the phantom's label truth.

The phantom writes every file's tissue labels beside its tree (``Truth/<split>/<case>/<name>.npz``,
:func:`~diffcmr_core.data.phantom.truth_path`). The heart's box of a slice is the bounding box of
its myocardium over every frame of the file (so one box holds the heart through the cycle),
widened by ``MARGIN_MM`` on each side so that both ventricles' blood pools and the wall's
surroundings are inside; it is then carried from the acquired grid ``(ky, kx)`` to the network's
image through the profile's preprocessing (zero-padding keeps the field of view, ``roi`` crops
the padded image, the resize scales it). Real data has no label truth: its boxes are ``-1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffcmr_core.data.kspace import roi_box
from diffcmr_core.data.pairs import PreprocessConfig
from diffcmr_core.data.phantom import anatomy, load_truth, truth_path

MARGIN_MM = 15.0  # around the myocardium's bounding box: the blood pools and the wall's edges


def acquired_box(label: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` (ends exclusive) of the myocardium in ``label`` ``(..., ky, kx)``
    over all leading axes, widened by ``margin`` pixels and clipped to the grid; ``None`` when
    the slice holds no myocardium."""
    where = (label == anatomy.LABEL["myocardium"]).reshape((-1,) + label.shape[-2:]).any(0)
    if not where.any():
        return None
    rows, cols = np.flatnonzero(where.any(1)), np.flatnonzero(where.any(0))
    ny, nx = where.shape
    return (
        max(0, int(rows[0]) - margin),
        min(ny, int(rows[-1]) + 1 + margin),
        max(0, int(cols[0]) - margin),
        min(nx, int(cols[-1]) + 1 + margin),
    )


def to_image(
    box: tuple[int, int, int, int], grid: tuple[int, int], pre: PreprocessConfig
) -> tuple[int, int, int, int]:
    """A box on the acquired grid ``grid = (ky, kx)`` in the network image's pixels: the padded
    image spans the same field of view on ``pad_to`` pixels (index ``n // 2`` stays the centre),
    ``roi`` keeps its central fractions, the resize scales to ``size`` (a k-space centre crop,
    ``crop=True``, keeps the field of view on ``size`` pixels)."""
    pad = pre.size if pre.crop else pre.pad_to
    out = []
    for (lo, hi), n, frac in zip((box[:2], box[2:]), grid, pre.roi or (1.0, 1.0)):
        a, b = roi_box(pad, frac) if pre.roi and not pre.crop else (0, pad)
        for edge in (lo, hi):
            j = pad // 2 + (edge - n // 2) * pad / n  # on the padded image
            out.append(int(np.clip(np.round((j - a) * pre.size / (b - a)), 0, pre.size)))
    return out[0], out[1], out[2], out[3]


def heart_boxes(
    data_root: str | Path, meta: dict[str, np.ndarray], pre: PreprocessConfig, pixel_mm: float
) -> np.ndarray:
    """The heart's box ``(y0, y1, x0, x1)`` in the network image of every slice of ``meta``
    (``case``, ``file``, ``slice`` as :func:`~diffcmr_core.data.pairs.load_pairs` gives them),
    ``int [N, 4]``; ``-1`` where the data root holds no label truth for the slice or the slice
    shows no myocardium. Validation slices come from TrainingSet cases."""
    out = np.full((len(meta["case"]), 4), -1, np.int64)
    margin = int(round(MARGIN_MM / pixel_mm))
    cache: dict[tuple[str, str], dict[str, np.ndarray] | None] = {}
    for i, (case, name, z) in enumerate(zip(meta["case"], meta["file"], meta["slice"])):
        key = (str(case), str(name))
        if key not in cache:
            path = truth_path(data_root, "TrainingSet", *key)
            cache[key] = load_truth(path) if path.is_file() else None
        truth = cache[key]
        if truth is None:
            continue
        label = truth["label"]
        label = label[:, int(z)] if label.ndim == 4 else label[int(z)]  # cine (t, kz, ..)
        box = acquired_box(label, margin)
        if box is not None:
            out[i] = to_image(box, label.shape[-2:], pre)
    return out


def zoom_window(box: np.ndarray, size: int, least: float = 0.5) -> tuple[int, int, int, int]:
    """A square window ``(y0, y1, x0, x1)`` on a ``size`` image around ``box``: the box's longer
    side, at least ``least`` of the image, centred on the box and kept inside the image; the
    whole image for a box of ``-1``."""
    if np.any(np.asarray(box) < 0):
        return 0, size, 0, size
    y0, y1, x0, x1 = (int(v) for v in box)
    side = min(size, max(y1 - y0, x1 - x0, int(np.ceil(least * size))))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top = int(np.clip(round(cy - side / 2), 0, size - side))
    left = int(np.clip(round(cx - side / 2), 0, size - side))
    return top, top + side, left, left + side


def zoom_windows(
    data_root: str | Path,
    meta: dict[str, np.ndarray],
    pre: PreprocessConfig,
    pixel_mm: float,
    least: float = 0.5,
) -> list[tuple[int, int, int, int]]:
    """The figures' window on each slice of ``meta``: :func:`zoom_window` around its heart's box
    (:func:`heart_boxes`), on images of ``pre.size``; the whole image where there is no box."""
    return [zoom_window(b, pre.size, least) for b in heart_boxes(data_root, meta, pre, pixel_mm)]
