"""Cached steps, one rule: a step's result is stored as JSON with its key, the settings it
reads (:func:`~diffcmr_core.study.settings.profiles.step_stamp`: the data's settings, the evaluation
protocol, the settings of each method it uses, its own), and the seconds of compute it took; a
later call whose key is the same reuses it, any other recomputes it. So adding a method to a
profile recomputes the steps that use it and no others. One function, :func:`cached_step`, for
every cached step; :data:`STEP_USES` says which methods each kind of step reads.

Under ``make study`` every cached step a notebook reads or writes is listed in the notebook's
ledger (``$DIFFCMR_LEDGER``, set by the runner), so that a notebook whose steps' results are
gone is stale (:mod:`~diffcmr_core.study.lab.runner`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.study.settings.profiles import Profile, step_stamp
from diffcmr_core.study.store import shard
from diffcmr_core.study.store.shard import set_aside

T = TypeVar("T")

# the methods each kind of step (a key of layout.STEP_CACHES) reads; None: RAW and all the
# profile's methods
STEP_USES: dict[str, tuple[str, ...] | None] = {
    "evaluation": None,
    "challenge": None,
    "maps": None,
    "ablation": ("raw", "diffcmr"),
    "public": ("raw", "diffcmr"),
    "fast sampling": ("raw", "diffcmr"),
    "curve sampler": ("raw", "diffcmr"),
    "consistency": ("raw", "unet", "cgan", "diffcmr"),
}
LEDGER = "DIFFCMR_LEDGER"


Check = Callable[[Any], "str | None"]


def read_stamped(
    path: Path, key: dict, problem: Callable[[dict], str | None], what: str
) -> dict | None:
    """A JSON file stamped with a key (a step's cache, a training run's validation record), if
    its stamp is ``key`` and ``problem(data)`` finds nothing wrong with it; else None. One with
    this key that cannot be used (not JSON, or a problem named) is named, set aside and
    recomputed by the caller."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        trouble = f"unreadable {what} ({err})"
    else:
        if not isinstance(data, dict) or data.get("stamp") != key:
            return None
        trouble = problem(data)
        if trouble is None:
            return data
    if path.is_file():
        set_aside(path, trouble)
    return None


def read_entry(path: Path, key: dict, check: Check | None = None) -> dict | None:
    """The cache entry at ``path`` (``result``, ``stamp``, ``seconds``) if it was made with this
    ``key`` (:func:`~diffcmr_core.study.settings.profiles.step_stamp`), else None. An entry with
    this key
    that is not what the step expects (not JSON, no ``result``, ``seconds`` not a number, or
    ``check(result)`` naming a problem) is named, set aside and recomputed
    (:func:`read_stamped`)."""
    return read_stamped(path, key, lambda data: entry_problem(data, check), "cache entry")


def stored_key(path: Path) -> object:
    """The key a cache file was stored with (None: no readable cache there)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("stamp") if isinstance(data, dict) else None


def entry_problem(entry: dict, check: Check | None = None) -> str | None:
    """Why a cache entry of the right configuration cannot be used (None: it can)."""
    seconds = entry.get("seconds")
    if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
        return f"seconds is {seconds!r}, not a number of seconds"
    if "result" not in entry:
        return "no result"
    return None if check is None else check(entry["result"])


def rows_problem(value: Any, what: str, numeric: tuple[str, ...] = ("psnr",)) -> str | None:
    """Why a cached list of table rows is not one (None: it is): a non-empty list of objects,
    each with finite numbers under ``numeric``."""
    if not isinstance(value, list) or not value:
        return f"{what} is not a non-empty list of rows"
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            return f"{what}: row {i} is not an object"
        for key in numeric:
            v = row.get(key)
            if type(v) not in (int, float) or not math.isfinite(v):
                return f"{what}: row {i}: {key} is {v!r}, not a number"
    return None


def keyed_rows_problem(
    value: Any, what: str, keys: tuple[str, ...] | None, numeric: tuple[str, ...] = ("psnr",)
) -> str | None:
    """Why a cached object of row lists (e.g. ``{"steps": [...], "rounds": [...]}``) is not one
    (None: it is); ``keys``: the lists it must hold (None: at least one, any names)."""
    if not isinstance(value, dict) or not value:
        return f"{what} is not an object of row lists"
    for key in keys if keys is not None else tuple(value):
        problem = rows_problem(value.get(key), f"{what} {key}", numeric)
        if problem is not None:
            return problem
    return None


def store(path: Path, key: dict, result: Any, seconds: float) -> None:
    """Cache ``result`` with its ``key`` and the ``seconds`` of compute it took (read back by the
    report, so that a re-run that reuses the result still says what it cost)."""
    write_text_atomic(
        path,
        json.dumps({"stamp": key, "seconds": round(seconds, 3), "result": result}, indent=1),
    )


def note_in_ledger(path: Path) -> None:
    """List a step's cache in the running notebook's ledger (when ``make study`` runs it)."""
    ledger = os.environ.get(LEDGER)
    if ledger:
        with contextlib.suppress(OSError), open(ledger, "a") as fh:
            fh.write(f"{path}\n")


_HELD: set[Path] = set()  # the step locks this process holds (a step inside a step)


@contextlib.contextmanager
def step_lock(path: Path, ranks: shard.Ranks) -> Iterator[None]:
    """Hold the lock of the step cached at ``path`` (``.<name>.lock`` beside it) for the block:
    a second command computing the same step waits, then reuses the result, instead of both
    writing (and removing) its intermediate files at once. Rank 0 takes it for its run, the
    other ranks wait at a barrier; on read-only storage, where nothing can be written, there is
    no lock."""
    lock = path.parent / f".{path.name}.lock"
    if not ranks.main or lock in _HELD:
        ranks.barrier()
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 - held for the block
    except OSError:
        ranks.barrier()
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD.add(lock)
        try:
            ranks.barrier()
            yield
        finally:
            _HELD.discard(lock)
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_step(
    path: Path,
    profile: Profile,
    compute: Callable[..., T],
    *,
    uses: tuple[str, ...] | None = None,
    extra: object = None,
    force: bool = False,
    prepare: Callable[[], Any] | None = None,
    name: str | None = None,
    quiet: bool = False,
    check: Check | None = None,
    evaluation: tuple[str, ...] | None = None,
) -> T:
    """The result of ``compute``, from the cache at ``path`` when it was made with this step's key
    (``step_stamp(profile, uses, extra)``: the methods it ``uses``, None for all, and its
    ``extra`` settings; ``evaluation``: only these fields of the evaluation), unless ``force``,
    and passes ``check`` (see :func:`read_entry`). On a miss ``prepare()`` runs first, untimed
    (e.g. training the model a step evaluates), and what it returns is handed to ``compute``:
    ``compute(prepare())``, or ``compute()`` without a ``prepare``. The time of ``compute`` is
    stored with the result. A reuse is said in one line, with how to recompute, unless ``quiet``
    (a table re-reading a step).

    Two commands on one home: the step is computed under its lock (:func:`step_lock`), and the
    cache is read again once the lock is held, so the second reuses what the first computed.

    Under ``torchrun`` every rank runs ``compute`` (which splits its work, see
    :mod:`~diffcmr_core.study.store.shard`); rank 0 alone stores the result, and the others wait
    for it, so that no rank reads a step's files before they are written.
    """
    ranks = shard.current()
    key = step_stamp(profile, uses, extra, evaluation=evaluation)
    note_in_ledger(path)

    def reuse() -> dict | None:
        entry = None if force else read_entry(path, key, check)
        if entry is not None and not quiet and ranks.main:
            print(f"[{name or path.parent.name}] reused from {path} (force=True recomputes)")
        return entry

    entry = reuse() if ranks.world == 1 else None  # ranks decide together, under the lock
    if entry is not None:
        return entry["result"]
    with step_lock(path, ranks):
        entry = reuse()
        if entry is not None:
            return entry["result"]
        prepared = prepare() if prepare is not None else None
        tic = time.perf_counter()
        result = compute(prepared) if prepare is not None else compute()
        if ranks.main:
            store(path, key, result, time.perf_counter() - tic)
        ranks.barrier()
    return result
