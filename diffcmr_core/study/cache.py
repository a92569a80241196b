"""Cached steps: a step's result is stored as JSON with the profile's configuration (its stamp)
and the seconds of compute it took; a later call with the same configuration reuses it, any
other configuration recomputes it. One function, :func:`cached_step`, for every cached step."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.study.profiles import Profile, stamp

T = TypeVar("T")


def read_entry(path: Path, profile: Profile) -> dict | None:
    """The cache entry at ``path`` (``result``, ``stamp``, ``seconds``) if it was made with this
    profile's configuration, else None (also for an unreadable file, which is then redone)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("stamp") == stamp(profile) else None


def store(path: Path, profile: Profile, result: Any, seconds: float) -> None:
    """Cache ``result`` with the profile's stamp and the ``seconds`` of compute it took (read back
    by the report, so that a re-run that reuses the result still says what it cost)."""
    write_text_atomic(
        path,
        json.dumps(
            {"stamp": stamp(profile), "seconds": round(seconds, 3), "result": result}, indent=1
        ),
    )


def cached_step(
    path: Path,
    profile: Profile,
    compute: Callable[..., T],
    *,
    force: bool = False,
    prepare: Callable[[], Any] | None = None,
    name: str | None = None,
    quiet: bool = False,
) -> T:
    """The result of ``compute``, from the cache at ``path`` when it was made with this profile's
    configuration (unless ``force``). On a miss ``prepare()`` runs first, untimed (e.g. training
    the model a step evaluates), and what it returns is handed to ``compute``:
    ``compute(prepare())``, or ``compute()`` without a ``prepare``. The time of ``compute`` is
    stored with the result. A reuse is said in one line, with how to recompute, unless
    ``quiet`` (a table re-reading a step).

    Under ``torchrun`` every rank runs ``compute`` (which splits its work, see
    :mod:`~diffcmr_core.study.shard`); rank 0 alone stores the result, and the others wait for
    it, so that no rank reads a step's files before they are written."""
    from diffcmr_core.study.shard import current

    entry = None if force else read_entry(path, profile)
    if entry is not None:
        if not quiet:
            print(f"[{name or path.parent.name}] reused from {path} (force=True recomputes)")
        return entry["result"]
    prepared = prepare() if prepare is not None else None
    tic = time.perf_counter()
    result = compute(prepared) if prepare is not None else compute()
    ranks = current()
    if ranks.main:
        store(path, profile, result, time.perf_counter() - tic)
    ranks.barrier()
    return result
