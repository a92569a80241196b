"""Safe file writing: atomic replacement, the user's umask, cleanup after killed writers, and a
lock for folders that two processes may build at once."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

_TMP = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: the pid tells whether its writer lives."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP}")


def _writer_alive(tmp: Path) -> bool:
    try:
        pid = int(tmp.name[: -len(_TMP)].split(".")[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files left beside ``path`` by writers that were killed (their
    process no longer exists); returns what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f".{path.name}.*{_TMP}"):
        if not _writer_alive(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched, so a reader
    never sees a half-written file and nothing already written is lost. The file gets the mode
    an ordinary ``open`` would give it (0666 less the umask). Temporaries of earlier writers of
    ``path`` that were killed are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def folder_lock(folder: str | Path, name: str = ".lock") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (an ``flock`` on ``folder/name``) while building in
    it; a second process waits until the first is done. The lock dies with its process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's whole content (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
