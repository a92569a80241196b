"""The one exception type raised for bad input data."""

from __future__ import annotations

from pathlib import Path


class CMRxReconError(ValueError):
    """A CMRxRecon file or tree is unusable; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
