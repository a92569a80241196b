"""The acquisitions behind paired images: the under-sampled multi-coil k-space and the mask of the
slices a pairs file or a submission holds, for the methods that work from the data themselves
(the PI-CS baseline, data consistency on the coil data).

An :class:`Acquired` is one slice of one file, with the frames a batch of images needs, and the
positions of those frames among the batch's images, so that a method can put its results back in
the batch's order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.errors import CMRxReconError


@dataclass(frozen=True)
class Acquired:
    """One slice's acquired data.

    ``kspace`` ``(F, C, ky, kx)`` complex64 (zeros where not acquired; ``C = 1`` single-coil),
    ``mask`` ``(ky, kx)`` bool, ``index`` ``(F,)``: the positions of these frames among the
    batch's images; ``source``: the file; ``coil``: ``MultiCoil`` or ``SingleCoil``."""

    kspace: np.ndarray
    mask: np.ndarray
    index: np.ndarray
    source: Path
    coil: str

    @property
    def multicoil(self) -> bool:
        """Whether the acquisition has several coils."""
        return self.coil == "MultiCoil"


def of_block(kspace: np.ndarray, mask: np.ndarray, coil: str, source: Path) -> list[Acquired]:
    """The slices of a k-space block ``(t, kz, [kc,] ky, kx)`` read from ``source``, each with all
    its frames; the images of the block are numbered in its ``(t, kz)`` order (``t * kz + z``)."""
    block = np.asarray(kspace, np.complex64)
    if coil == "SingleCoil":
        block = block[:, :, None]
    n_t, n_z = block.shape[:2]
    return [
        Acquired(np.ascontiguousarray(block[:, z]), mask, np.arange(n_t) * n_z + z, source, coil)
        for z in range(n_z)
    ]


def of_pairs(root: str | Path, task: str, acc: int, meta: dict[str, np.ndarray]) -> list[Acquired]:
    """The acquisitions behind the images of a pairs file's ``meta`` (``coil``, ``case``,
    ``file``, ``frame``, ``slice`` per image): the ``AccFactorNN`` files of the TrainingSet in
    ``root``, one :class:`Acquired` per slice of a file, holding the frames the images need."""
    groups: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    for i in range(len(meta["coil"])):
        groups[
            (
                str(meta["coil"][i]),
                str(meta["case"][i]),
                str(meta["file"][i]),
                int(meta["slice"][i]),
            )
        ].append(i)
    out = []
    for (coil, case, name, z), positions in sorted(groups.items()):
        path = io.file_path(root, coil, task, case, name, acc=acc)
        mask_path = io.file_path(root, coil, task, case, name, acc=acc, kind="mask")
        frames = np.array([int(meta["frame"][i]) for i in positions])
        lo, hi = int(frames.min()), int(frames.max())
        block = io.load_kspace(path, io.kspace_key(coil, acc), index=(slice(lo, hi + 1), z))
        mask = io.load_mask(mask_path, io.mask_key(acc))
        if mask.shape != block.shape[-2:]:
            raise CMRxReconError(
                mask_path,
                f"mask {mask.shape} does not fit the k-space {block.shape[-2:]} of {path.name}",
            )
        block = block[frames - lo]
        if coil == "SingleCoil":
            block = block[:, None]
        out.append(
            Acquired(
                np.ascontiguousarray(block, np.complex64), mask, np.asarray(positions), path, coil
            )
        )
    return out
