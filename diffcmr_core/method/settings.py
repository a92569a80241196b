"""The training settings (:class:`TrainConfig`) and which of them fix a run's arithmetic:
what a checkpoint records, what a resumed run and a model's user check; a trained network's
settings (:class:`NetworkSettings`: its configuration and its training)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``TrainConfig()`` is the paper's DiffCMR (§3.2). What the model
    is (sizes, diffusion chain, loss weighting, the cGAN's L1 weight) lives in its own config."""

    iterations: int = 100_000
    batch_size: int = 6  # per process
    lr: float = 1e-5
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)); the
    # public code has none (False)
    precision: str = "bf16"  # autocast on CUDA ("bf16") or none ("fp32", the public code)
    flips: bool = True  # horizontal and vertical, p = 0.5 each, input and target
    lr_schedule: str = "constant"  # or "cosine" (decay to 0 over the run; short runs)
    warmup: int = 0  # steps of linear learning-rate warm-up (0: none)
    decay_steps: int = 0  # the last this many of ``iterations`` decay the rate linearly to 0
    # (a constant schedule then becomes warm-up, stable, decay; 0: none)
    snapshot_every: int = 0  # keep the EMA weights every this many steps in
    # snapshots/step<NNNNNN>.pt (0: none; compute curves)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000


@dataclass(frozen=True)
class NetworkSettings:
    """Everything a trained network of the study is: ``model``, its configuration (what
    :func:`~diffcmr_core.method.systems.build_system` takes: ``DiffCMRConfig``, ``UNetConfig``,
    ``CGANConfig`` ...), and ``train``, how it is trained."""

    model: Any
    train: TrainConfig


EXTENDABLE = ("iterations", "log_every", "checkpoint_every", "snapshot_every", "decay_steps")
# (``decay_steps`` with ``iterations``: a constant-rate run may be extended by a decay; the
# steps already trained must keep their rates, which :func:`~diffcmr_core.method.train.train`
# checks)


def arithmetic_settings(train_config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's training settings that fix its arithmetic: the extendable ones left out,
    a setting added to :class:`TrainConfig` since it was written read as its default (a
    default keeps the old arithmetic), so that older checkpoints still resume."""
    full = {**dataclasses.asdict(TrainConfig()), **train_config}
    return {k: v for k, v in full.items() if k not in EXTENDABLE}
