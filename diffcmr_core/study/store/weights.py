"""Shipped weights: a profile's trained cine networks, committed under ``weights/<profile>/`` with a
manifest, so that a class can run DiffCMR without training first.

``python -m diffcmr_core weights --profile quick`` copies the final networks of a finished study
(``runs/<profile>/models/``) into ``weights/<profile>/``, keeping what inference needs (the
method, its configurations and the EMA weights; not the optimiser's state), and writes
``manifest.json``: per file its SHA-256, size, method, task, training step, seed and learning
rate, the commit of the tree that shipped it, the scores of the profile's committed Table 2
(cine: the subjects its tables score, never trained on) and, for a profile with selection
subjects, the scores on them. :func:`shipped` returns a file after checking it
against the manifest; a file that differs is refused, never loaded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import atomic_path, sha256, write_text_atomic

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
    """The method's rows of the profile's committed Table 2 (cine), as written: the subjects its
    tables score (the ``cpu`` profile's test subjects; otherwise its validation subjects)."""
    from diffcmr_core.study import methods
    from diffcmr_core.tables import read_csv

    table = paths.table("table2_cine")
    if not table.is_file():
        return []
    keep = ("acc", "psnr", "ssim", "nmse")
    label = methods.label(method)
    return [{k: r[k] for k in keep} for r in read_csv(table) if r["method"] == label]


def _selection_scores(profile, method: str) -> dict[str, float] | None:
    """The method's mean scores on the profile's selection subjects (cine, first factor), from
    the study's cache; None for a profile without selection subjects."""
    from diffcmr_core.study import methods
    from diffcmr_core.study.experiments.verdicts import selection_scores

    if not profile.preprocess.selection_cases:
        return None
    found = selection_scores(profile, TASK, profile.accs[0])[methods.label(method)]
    return {k: round(float(found[k]), 4) for k in ("psnr", "ssim", "nmse")}


def networks(profile) -> list[str]:
    """The methods of ``profile`` that train a network (what ``ship`` copies)."""
    from diffcmr_core.study import methods

    return [m for m in profile.methods if methods.get(m).network]


def ship(profile, root: Path | None = None) -> Path:
    """Copy ``profile``'s trained cine networks (every network method; from its study folder,
    ``paths_for``: pass the profile as its study chose it, ``convergence.tuned``) into
    ``weights/<profile>/`` (inference state only) and write the manifest; returns the
    manifest's path. Every model is checked to exist before anything is written."""
    import torch

    from diffcmr_core.method.checkpoints import load_checkpoint
    from diffcmr_core.study.settings.profiles import paths_for

    paths = paths_for(profile)
    sources = {m: paths.model_dir(TASK, profile.accs[0], m) / "last.pt" for m in networks(profile)}
    for method, source in sources.items():
        if not source.is_file():
            raise DiffCMRError(source, f"no trained {method} model: run `make study` first")
    out = folder(profile.name, root)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for method, source in sources.items():
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
            "lr": float(ckpt["train_config"]["lr"]),
            "table_scores": _scores(paths, method),
            "selection_scores": _selection_scores(profile, method),
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
