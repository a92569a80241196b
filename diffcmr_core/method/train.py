"""One training loop for every method (paper §3.2): AdamW, EMA of the weights, random flips,
a CSV loss log, atomic resumable checkpoints, bf16 autocast on CUDA, DDP under ``torchrun``.

Reproducibility: everything random in step ``s`` (the data order, the flips, Alg. 1's t and eps)
is drawn from generators seeded by ``(seed, s)``, so a run resumed from a checkpoint continues
exactly as the uninterrupted run would, and a DDP run of W ranks x B samples equals a
single-process run with batch W x B (each rank takes its slice of the same global draws).
Gradients are averaged over ranks by ``torch.distributed.all_reduce`` after each backward pass
(DDP's arithmetic; the cGAN's alternating generator/discriminator updates do not fit the
one-forward-one-backward contract of the ``DistributedDataParallel`` wrapper).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from diffcmr_core.config import from_dict
from diffcmr_core.data.pairs import load_pairs
from diffcmr_core.errors import CheckpointError, DiffCMRError
from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.checkpoints import (
    default_device,
    load_checkpoint,
    save_checkpoint,
    snapshot_path,
)
from diffcmr_core.method.settings import TrainConfig, arithmetic_settings
from diffcmr_core.method.systems import build_system, config_dict


# ----------------------------------------------------------------------------- helpers
def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sync_grads(module: torch.nn.Module) -> None:
    """Average gradients over processes (one flattened all-reduce); no-op without DDP."""
    rank, world = _rank_world()
    if world == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def decay_start(cfg: TrainConfig) -> int:
    """The first step whose learning rate a ``decay_steps`` decay lowers (``iterations`` when
    there is none)."""
    return cfg.iterations - cfg.decay_steps if cfg.decay_steps else cfg.iterations


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant (the paper), or cosine decay from ``lr`` to 0, after ``warmup`` steps of linear
    warm-up (a function of the step alone, so resuming is exact; a constant schedule also makes
    a run extended to more iterations equal to one planned that long). A constant schedule with
    ``decay_steps`` falls linearly to 0 over the last ``decay_steps`` steps (warm-up, stable,
    decay: the steps before the decay are those of the constant run, so that a constant run
    extended by a decay equals one planned so)."""
    ramp = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else 1.0
    if cfg.lr_schedule == "constant":
        if step >= decay_start(cfg):
            return cfg.lr * ramp * (cfg.iterations - step) / cfg.decay_steps
        return cfg.lr * ramp
    if cfg.lr_schedule == "cosine":
        return ramp * 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / cfg.iterations))
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")


def ema_decay(cfg: TrainConfig, step: int) -> float:
    """The EMA decay after step ``step`` (0-based): ``ema_decay``, with the warm-up
    min(ema_decay, (1 + step) / (10 + step)) when ``ema_warmup``."""
    return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Indices of global batch ``step``: consecutive pieces of per-epoch seeded permutations."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + batch - len(out)])
    return np.asarray(out)


def _flip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip each image horizontally (``flips[:, 0]``) and vertically (``flips[:, 1]``)."""
    x = torch.where(flips[:, 0, None, None, None], x.flip(-1), x)
    return torch.where(flips[:, 1, None, None, None], x.flip(-2), x)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class _Run:
    """The state of one training run: the system, its EMA copy, the optimisers, the step."""

    def __init__(
        self, method: str, cfg: TrainConfig, model_config: Any, device: torch.device
    ) -> None:
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run
        self.system = build_system(method, model_config).to(device)
        self.system.precision = cfg.precision
        self.ema = copy.deepcopy(self.system.model).requires_grad_(False)
        self.opts = self.system.optimizers(cfg.lr, cfg.weight_decay)
        self.step = 0
        self.cpu_seconds = 0.0  # process CPU time of all steps so far

    def resume(self, ckpt: dict[str, Any]) -> None:
        self.system.load_state_dict(ckpt["system"])
        self.ema.load_state_dict(ckpt["ema"])
        for opt, state in zip(self.opts, ckpt["optimizers"]):
            opt.load_state_dict(state)
        torch.set_rng_state(ckpt["rng"].cpu())
        self.step = ckpt["step"]
        self.cpu_seconds = float(ckpt.get("cpu_seconds", 0.0))

    def state(self, method: str, cfg: TrainConfig, model_config: Any, pairs) -> dict[str, Any]:
        return {
            "method": method,
            "step": self.step,
            "system": self.system.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizers": [o.state_dict() for o in self.opts],
            "rng": torch.get_rng_state(),
            "train_config": dataclasses.asdict(cfg),
            "model_config": config_dict(model_config),
            "cpu_seconds": self.cpu_seconds,
            "pairs": str(pairs) if isinstance(pairs, (str, Path)) else [str(p) for p in pairs],
        }

    def snapshot(self, method: str, cfg: TrainConfig, model_config: Any, pairs) -> dict[str, Any]:
        """The EMA weights and what :func:`load_for_inference` needs (no optimiser state)."""
        full = self.state(method, cfg, model_config, pairs)
        return {k: v for k, v in full.items() if k not in ("system", "optimizers", "rng")}


def _batch(inp_all, tgt_all, run: _Run, cfg: TrainConfig, step: int, device) -> tuple:
    """Step ``step``'s slice of the global batch on this rank: inputs, targets, the method's
    random draws, all from generators seeded by ``(seed, step)``."""
    rank, world = _rank_world()
    global_batch = cfg.batch_size * world
    lo, hi = rank * cfg.batch_size, (rank + 1) * cfg.batch_size
    gen = _step_generator(cfg.seed, step)
    idx = batch_indices(len(inp_all), global_batch, step, cfg.seed)[lo:hi]
    flips = torch.rand((global_batch, 2), generator=gen)[lo:hi] < 0.5
    rand = {
        k: v[lo:hi]
        for k, v in run.system.randomness(gen, global_batch, tuple(inp_all.shape[1:])).items()
    }
    inp, tgt = inp_all[idx], tgt_all[idx]
    if cfg.flips:
        inp, tgt = _flip(inp, flips), _flip(tgt, flips)
    return inp.to(device, non_blocking=True), tgt.to(device, non_blocking=True), rand


def _start_or_resume(
    run: _Run, out_dir: Path, method: str, cfg: TrainConfig, model_config: Any, device
) -> None:
    """Resume from ``out_dir/last.pt`` if it continues this run; a checkpoint made with another
    configuration is kept aside (``stale-<time>/``) with its log, never deleted."""
    ckpt_path, log_path = out_dir / "last.pt", out_dir / "loss.csv"
    if not ckpt_path.is_file():
        return
    ckpt = load_checkpoint(ckpt_path, device)
    if not _same_run(ckpt, method, cfg, config_dict(model_config)) or not _same_rates(ckpt, cfg):
        aside = out_dir / f"stale-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.mkdir(parents=True)
        for p in (ckpt_path, log_path):
            if p.exists():
                os.replace(p, aside / p.name)
        print(f"[train] {ckpt_path} was made with another configuration: moved to {aside}")
        return
    run.resume(ckpt)


def train_pairs(
    pairs: str | Path | list[str | Path] | tuple[str | Path, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split of one pairs file, or of several concatenated in the order given
    (one model for several acceleration factors), as ``(input, target)`` ``[N, 1, S, S]``."""
    files = [pairs] if isinstance(pairs, (str, Path)) else list(pairs)
    if not files:
        raise ValueError("train: no pairs file given")
    parts = [load_pairs(p, "train")[:2] for p in files]
    inp = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    tgt = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return torch.from_numpy(inp)[:, None], torch.from_numpy(tgt)[:, None]


def _set_learning_rate(opts: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = lr


def _log_row(run: _Run, losses: dict[str, float], elapsed: float, wait: float) -> dict[str, Any]:
    """One row of ``loss.csv``: the step, its losses, wall and data-wait time, CPU seconds."""
    return {
        "step": run.step,
        **{k: f"{v:.6f}" for k, v in losses.items()},
        "seconds": f"{elapsed:.3f}",
        "data_wait_fraction": f"{wait / max(elapsed, 1e-9):.4f}",
        "cpu_seconds": f"{run.cpu_seconds:.3f}",
    }


def train(
    method: str,
    pairs: str | Path | list[str | Path] | tuple[str | Path, ...],
    out_dir: str | Path,
    cfg: TrainConfig,
    model_config: Any,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Path:
    """Train ``method`` (configured by ``model_config``) on the training split of a pairs file
    (or of several, concatenated: one model for several factors); returns the final checkpoint.

    Writes into ``out_dir``: ``loss.csv`` and ``last.pt`` (resumable), both rewritten atomically
    every ``checkpoint_every`` steps and at the end, the log first, so that a kill between the
    two never loses log rows of a checkpointed step. An existing ``last.pt`` is resumed; a
    finished one is returned as is.
    """
    out_dir = Path(out_dir)
    rank, _ = _rank_world()
    device = torch.device(device or default_device())
    ckpt_path, log_path = out_dir / "last.pt", out_dir / "loss.csv"
    inp_all, tgt_all = train_pairs(pairs)
    run = _Run(method, cfg, model_config, device)
    _start_or_resume(run, out_dir, method, cfg, model_config, device)
    if run.step >= cfg.iterations:
        return ckpt_path
    log_rows = _read_log(log_path, run.step)
    bar = tqdm(
        range(run.step, cfg.iterations),
        initial=run.step,
        total=cfg.iterations,
        desc=f"train {method}",
        disable=not progress or rank != 0,
    )
    wait, tic, cpu0 = 0.0, time.perf_counter(), time.process_time()
    cpu_base = run.cpu_seconds
    for step in bar:
        t_data = time.perf_counter()
        inp, tgt, rand = _batch(inp_all, tgt_all, run, cfg, step, device)
        wait += time.perf_counter() - t_data
        _set_learning_rate(run.opts, learning_rate(cfg, step))
        losses = run.system.train_step(inp, tgt, rand, run.opts, _sync_grads)
        # EMA with the usual warm-up (unless switched off), so that short runs are not dominated
        # by the initial weights
        _ema_update(run.ema, run.system.model, ema_decay(cfg, step))
        run.step = step + 1
        run.cpu_seconds = cpu_base + time.process_time() - cpu0
        if run.step % cfg.log_every == 0 or run.step == cfg.iterations:
            log_rows.append(_log_row(run, losses, time.perf_counter() - tic, wait))
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
        if rank == 0 and cfg.snapshot_every and run.step % cfg.snapshot_every == 0:
            save_checkpoint(
                snapshot_path(out_dir, run.step), run.snapshot(method, cfg, model_config, pairs)
            )
        if rank == 0 and (run.step % cfg.checkpoint_every == 0 or run.step == cfg.iterations):
            _write_log(log_path, log_rows)
            save_checkpoint(ckpt_path, run.state(method, cfg, model_config, pairs))
    return ckpt_path


def _same_rates(ckpt: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether the steps a checkpoint trained had the learning rates ``cfg`` gives them: none
    of them decayed, by its plan or by ``cfg``'s, or both plans decay from the same step to
    the same end (``decay_steps`` and ``iterations`` may otherwise change between runs). A
    checkpoint at or past ``cfg.iterations`` trains nothing more and is returned as it is."""
    done = int(ckpt["step"])
    if done >= cfg.iterations:
        return True
    old = TrainConfig(
        **{k: v for k, v in ckpt["train_config"].items() if k in TrainConfig.__dataclass_fields__}
    )
    if done <= decay_start(old) and done <= decay_start(cfg):
        return True
    return (old.iterations, old.decay_steps) == (cfg.iterations, cfg.decay_steps)


def _same_run(
    ckpt: dict[str, Any], method: str, cfg: TrainConfig, model_config: dict[str, Any]
) -> bool:
    """Whether a checkpoint continues this run: same method, model and training settings (a run
    may be extended to more iterations)."""
    same_model = json.dumps(ckpt["model_config"], sort_keys=True, default=list) == json.dumps(
        dict(model_config), sort_keys=True, default=list
    )
    return (
        ckpt["method"] == method
        and same_model
        and arithmetic_settings(ckpt["train_config"])
        == arithmetic_settings(dataclasses.asdict(cfg))
    )


def _read_log(path: Path, upto: int) -> list[dict[str, str]]:
    """Rows of an existing loss log up to step ``upto`` (later rows belong to lost work)."""
    if not path.is_file() or upto == 0:
        return []
    with path.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    try:
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
    except OSError as err:
        raise CheckpointError(
            path,
            f"could not write the training log ({err.strerror or err}); "
            "the previous log and checkpoint are unchanged (disk full?)",
        ) from None


# ----------------------------------------------------------------------------- torchrun entry
def read_train_spec(config: str | Path, method: str) -> dict[str, Any]:
    """The ``train`` command's JSON file, checked before any work: readable JSON, an object with
    ``train`` and ``model`` objects whose fields the configurations know. Errors name the file."""

    path = Path(config)
    try:
        spec = json.loads(path.read_text())
    except OSError as err:
        raise DiffCMRError(
            path, f"cannot read the training configuration ({err.strerror or err})"
        ) from None
    except ValueError as err:
        raise DiffCMRError(path, f"not valid JSON ({err})") from None
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("train"), dict)
        or not isinstance(spec.get("model"), dict)
    ):
        raise DiffCMRError(path, 'expected {"train": {...TrainConfig...}, "model": {...}}')
    try:
        from_dict(TrainConfig, spec["train"])
        build_system(method, spec["model"])
    except (TypeError, ValueError, KeyError) as err:
        raise DiffCMRError(path, f"bad training configuration: {err}") from None
    return spec


def run_from_config(
    method: str, pairs: str | Path, out_dir: str | Path, config: str | Path
) -> Path:
    """Train from a JSON config file ``{"train": {...}, "model": {...}}``, in one process or
    under ``torchrun`` (``python -m diffcmr_core train ...``): each rank trains its slice of
    the global batch, gradients are all-reduced."""
    spec = read_train_spec(config, method)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = None
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    try:
        return train(
            method,
            pairs,
            out_dir,
            from_dict(TrainConfig, spec["train"]),
            build_system(method, spec["model"]).cfg,
            device=device,
            progress=True,
        )
    finally:
        if distributed:
            dist.destroy_process_group()
