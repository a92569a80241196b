"""The study's own exceptions. Each names the file (or folder) and the problem."""

from __future__ import annotations

from pathlib import Path


class DiffCMRError(ValueError):
    """A file or folder the study reads or writes is unusable; the message names it."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

    def __reduce__(self):
        # (rebuilt from its two arguments: an error raised in a worker process reaches the parent)
        return (type(self), (self.path, self.problem))


class CMRxReconError(DiffCMRError):
    """A CMRxRecon file or tree (or a pairs file made from one) is unusable."""


class CheckpointError(DiffCMRError):
    """A checkpoint cannot be read or written."""


class ReconstructionError(DiffCMRError):
    """A method cannot reconstruct the data it was given (too few calibration lines for coil
    maps, an all-zero image): a fault of the data, not of the code. A command that works file by
    file (``submit``) names the file and skips it."""
