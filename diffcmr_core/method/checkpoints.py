"""Checkpoints: the device, writing and reading them safely (``weights_only=True``), checking
that one is the model the caller means, loading it for inference, and the EMA snapshots of a
run folder. The training loop (:mod:`~diffcmr_core.method.train`) writes them; inference, the
study and the submission read them through this module alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from diffcmr_core.errors import CheckpointError
from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.settings import TrainConfig, arithmetic_settings
from diffcmr_core.method.systems import build_system, config_dict


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically; a failed write leaves the previous one as it was."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as RuntimeError
        raise CheckpointError(
            path,
            f"could not write the checkpoint ({err}); the previous "
            "checkpoint is unchanged (disk full?)",
        ) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a missing, truncated, corrupt or
    foreign file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(err).splitlines() or [""])[0][:200]
        size = path.stat().st_size
        raise CheckpointError(
            path,
            f"unreadable checkpoint ({type(err).__name__}"
            f"{': ' + first if first else ''}; {size} bytes)",
        ) from None
    missing = {"method", "step", "ema", "model_config"} - set(
        ckpt if isinstance(ckpt, dict) else ()
    )
    if missing:
        raise CheckpointError(path, f"not a checkpoint of this study (missing {sorted(missing)})")
    return ckpt


WEIGHTS = ("ema", "raw")


def trained_on(ckpt: dict[str, Any]) -> list[tuple[str, int]]:
    """``(task, acc)`` of every pairs file a checkpoint was trained on (from its ``pairs``
    record, ``pairs_<task>_accNN.h5``); empty when the names do not tell."""
    import re

    files = ckpt.get("pairs", [])
    out = []
    for name in [files] if isinstance(files, str) else list(files):
        m = re.fullmatch(r"pairs_([a-z]+)_acc(\d+)\.h5", Path(str(name)).name)
        if m:
            out.append((m.group(1), int(m.group(2))))
    return out


def check_checkpoint(
    path: str | Path,
    ckpt: dict[str, Any],
    *,
    method: str | None = None,
    model_config: Any = None,
    train_config: TrainConfig | None = None,
    task: str | None = None,
    acc: int | None = None,
) -> None:
    """That a checkpoint is what the caller means to use: its method, its model configuration,
    its training settings (finished: every iteration done), and that it was trained on ``task``
    at ``acc``. Each given expectation is checked; a mismatch is a :class:`CheckpointError`
    naming the file and both values."""
    if method is not None and ckpt["method"] != method:
        raise CheckpointError(path, f"is a {ckpt['method']} checkpoint, not {method}")
    if model_config is not None:
        want = json.dumps(config_dict(model_config), sort_keys=True, default=list)
        if json.dumps(ckpt["model_config"], sort_keys=True, default=list) != want:
            raise CheckpointError(
                path,
                f"was made with another {ckpt['method']} configuration "
                f"(another profile's model?): {ckpt['model_config']}",
            )
    if train_config is not None:
        if arithmetic_settings(ckpt.get("train_config", {})) != arithmetic_settings(
            dataclasses.asdict(train_config)
        ):
            raise CheckpointError(
                path,
                f"was trained with other settings than this profile's ({ckpt.get('train_config')})",
            )
        if ckpt["step"] < train_config.iterations:
            raise CheckpointError(
                path,
                f"training is not finished (step {ckpt['step']} of "
                f"{train_config.iterations}); resume it first",
            )
    if task is not None and acc is not None:
        seen = trained_on(ckpt)
        if (task, acc) not in seen:
            made = ", ".join(f"{t} {a}x" for t, a in seen) or "unknown pairs"
            raise CheckpointError(path, f"was trained on {made}, not on {task} {acc}x")


def load_for_inference(
    path: str | Path, device: str | torch.device = "cpu", weights: str = "ema", **expect: Any
):
    """``(system, model)`` from a checkpoint: the system for its ``reconstruct`` method and the
    network in eval mode with the ``weights`` ``"ema"`` (default; the average the training loop
    keeps) or ``"raw"`` (the optimiser's last weights, what the public inference script loads:
    ``model120000.pt`` is improved-diffusion's name for raw weights, its EMA files are
    ``ema_<rate>_<step>.pt``). ``expect``: what :func:`check_checkpoint` checks (method,
    model_config, train_config, task, acc)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    ckpt = load_checkpoint(path, device)
    if expect:
        check_checkpoint(path, ckpt, **expect)
    system = build_system(ckpt["method"], ckpt["model_config"])
    if weights == "ema":
        system.model.load_state_dict(ckpt["ema"])
    else:
        system.load_state_dict(ckpt["system"])
    return system.to(device), system.model.eval()


def snapshot_path(out_dir: str | Path, step: int) -> Path:
    """Where :func:`train` keeps the EMA weights of step ``step`` (``snapshot_every``)."""
    return Path(out_dir) / "snapshots" / f"step{step:06d}.pt"


def snapshots(out_dir: str | Path) -> dict[int, Path]:
    """The snapshots of a run folder, by step."""
    return {int(p.stem[4:]): p for p in sorted((Path(out_dir) / "snapshots").glob("step[0-9]*.pt"))}


# ----------------------------------------------------------------------------- training
