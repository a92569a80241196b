"""Shipped weights: a profile's trained cine networks, committed under ``weights/<profile>/`` with a
manifest, so that a class can run DiffCMR without training first.

``python -m diffcmr_core weights --profile quick`` copies the final networks of a finished study
(``runs/<profile>/models/``) into ``weights/<profile>/``, keeping what inference needs (the
method, its configurations and the EMA weights; not the optimiser's state), and writes
``manifest.json``: per file its SHA-256, size, method, task, training step and seed, the commit
of the tree that shipped it, and the scores of the profile's committed Table 2 (cine, the
validation subjects it never trained on). :func:`shipped` returns a file after checking it
against the manifest; a file that differs is refused, never loaded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import atomic_path, sha256, write_text_atomic

SHIPPED = ("diffcmr", "unet")  # the networks a class needs: DiffCMR and its regression rival
TASK = "cine"
KEEP = ("method", "step", "ema", "model_config", "train_config", "cpu_seconds", "pairs")
CHECKOUT = Path(__file__).resolve().parents[3]  # diffcmr_core/study/store/weights.py


def folder(profile: str, root: Path | None = None) -> Path:
    """Where a profile's shipped weights live: ``weights/<profile>/`` of the checkout holding
    this package (they are committed with it; ``$DIFFCMR_HOME`` does not move them), or of
    ``root``."""
    return Path(root or CHECKOUT) / "weights" / profile


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _scores(paths, method: str) -> list[dict[str, str]]:
    """The method's rows of the profile's committed Table 2 (cine), as written."""
    from diffcmr_core.tables import read_csv

    table = paths.table("table2_cine")
    label = {"diffcmr": "DiffCMR", "unet": "U-Net"}[method]
    if not table.is_file():
        return []
    keep = ("acc", "psnr", "ssim", "nmse")
    return [{k: r[k] for k in keep} for r in read_csv(table) if r["method"] == label]


def ship(profile, root: Path | None = None) -> Path:
    """Copy ``profile``'s trained cine networks (from its study folder, ``paths_for``) into
    ``weights/<profile>/`` (inference state only) and write the manifest; returns the
    manifest's path."""
    import torch

    from diffcmr_core.method.checkpoints import load_checkpoint
    from diffcmr_core.study.settings.profiles import paths_for

    paths = paths_for(profile)
    out = folder(profile.name, root)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for method in SHIPPED:
        source = paths.model_dir(TASK, profile.accs[0], method) / "last.pt"
        if not source.is_file():
            raise DiffCMRError(source, f"no trained {method} model: run `make study` first")
        ckpt = load_checkpoint(source)
        name = f"{TASK}_{method}.pt"
        with atomic_path(out / name) as tmp:
            torch.save({k: ckpt[k] for k in KEEP if k in ckpt}, tmp)
        files[name] = {
            "sha256": sha256(out / name),
            "bytes": (out / name).stat().st_size,
            "method": method,
            "task": TASK,
            "step": int(ckpt["step"]),
            "seed": int(ckpt["train_config"].get("seed", 0)),
            "validation_scores": _scores(paths, method),
        }
    manifest = {
        "profile": profile.name,
        "commit": _commit(paths.root),  # the study folder that trained them
        "made_by": f"python -m diffcmr_core weights --profile {profile.name}",
        "files": files,
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return out / "manifest.json"


def manifest(profile: str, root: Path | None = None) -> dict:
    """The manifest of ``profile``'s shipped weights (an error of ours if there is none)."""
    path = folder(profile, root) / "manifest.json"
    if not path.is_file():
        raise DiffCMRError(path, f"no shipped weights of the {profile} profile")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DiffCMRError(path, f"the manifest is not valid JSON ({err})") from None


def shipped(profile: str, method: str, root: Path | None = None) -> Path:
    """The shipped checkpoint of ``method`` (cine), checked against the manifest's SHA-256."""
    entry = manifest(profile, root)["files"].get(f"{TASK}_{method}.pt")
    path = folder(profile, root) / f"{TASK}_{method}.pt"
    if entry is None or not path.is_file():
        raise DiffCMRError(path, f"no shipped {method} weights of the {profile} profile")
    if sha256(path) != entry["sha256"]:
        raise DiffCMRError(
            path, "differs from its manifest (SHA-256): refused; regenerate with `weights`"
        )
    return path
