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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from diffcmr_core.fileio import atomic_path
from diffcmr_core.methods import build_system
from diffcmr_core.preprocess import load_pairs


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``TrainConfig()`` is the paper's DiffCMR (§3.2)."""

    iterations: int = 100_000
    batch_size: int = 6               # per process
    lr: float = 1e-5
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    train_steps: int = 100            # the diffusion chain used in training
    loss_weighting: str = "eps"       # DiffCMR: "eps" (Eq. 5) or "v" (see diffusion.loss_weights)
    flips: bool = True                # horizontal and vertical, p = 0.5 each, input and target
    lr_schedule: str = "constant"     # or "cosine" (decay to 0 over the run; short runs)
    l1_weight: float = 100.0          # cGAN only
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000


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
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant (the paper), or cosine decay from ``lr`` to 0 (a function of the step alone, so
    resuming is exact)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / cfg.iterations))
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Indices of global batch ``step``: consecutive pieces of per-epoch seeded permutations."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset:offset + batch - len(out)])
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


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_for_inference(path: str | Path, device: str | torch.device = "cpu"):
    """``(system, ema_model)`` from a checkpoint: the system for its ``reconstruct`` method and
    the EMA weights in eval mode."""
    ckpt = load_checkpoint(path, device)
    tcfg = ckpt["train_config"]
    system = build_system(ckpt["method"], ckpt["model_config"], tcfg["train_steps"], tcfg["l1_weight"],
                          tcfg.get("loss_weighting", "eps"))
    system.model.load_state_dict(ckpt["ema"])
    return system.to(device), system.model.eval()


# ----------------------------------------------------------------------------- training
def train(method: str, pairs: str | Path, out_dir: str | Path, cfg: TrainConfig,
          model_config: dict[str, Any], *, device: str | torch.device | None = None,
          progress: bool = True) -> Path:
    """Train ``method`` on the training split of a pairs file; returns the final checkpoint.

    Writes into ``out_dir``: ``last.pt`` (resumable, rewritten atomically every
    ``checkpoint_every`` steps and at the end) and ``loss.csv``. An existing ``last.pt`` is
    resumed; a finished one is returned as is.
    """
    out_dir = Path(out_dir)
    rank, world = _rank_world()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt_path, log_path = out_dir / "last.pt", out_dir / "loss.csv"
    inp_all, tgt_all, _ = load_pairs(pairs, "train")
    inp_all = torch.from_numpy(inp_all)[:, None]
    tgt_all = torch.from_numpy(tgt_all)[:, None]
    torch.manual_seed(cfg.seed)                     # the initial weights are part of the run
    system = build_system(method, model_config, cfg.train_steps, cfg.l1_weight,
                          cfg.loss_weighting).to(device)
    ema = copy.deepcopy(system.model).requires_grad_(False)
    opts = system.optimizers(cfg.lr, cfg.weight_decay)
    start = 0
    if ckpt_path.is_file() and not _same_run(load_checkpoint(ckpt_path), method, cfg, model_config):
        ckpt_path.unlink()                           # made with another configuration: start over
        log_path.unlink(missing_ok=True)
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, device)
        system.load_state_dict(ckpt["system"])
        ema.load_state_dict(ckpt["ema"])
        for opt, state in zip(opts, ckpt["optimizers"]):
            opt.load_state_dict(state)
        torch.set_rng_state(ckpt["rng"].cpu())
        start = ckpt["step"]
    if start >= cfg.iterations:
        return ckpt_path
    log_rows = _read_log(log_path, start)
    global_batch = cfg.batch_size * world
    lo, hi = rank * cfg.batch_size, (rank + 1) * cfg.batch_size
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               desc=f"train {method}", disable=not progress or rank != 0)
    wait, tic = 0.0, time.perf_counter()
    for step in bar:
        t_data = time.perf_counter()
        gen = _step_generator(cfg.seed, step)
        idx = batch_indices(len(inp_all), global_batch, step, cfg.seed)[lo:hi]
        flips = torch.rand((global_batch, 2), generator=gen)[lo:hi] < 0.5
        rand = {k: v[lo:hi] for k, v in system.randomness(gen, global_batch, tuple(inp_all.shape[1:])).items()}
        inp, tgt = inp_all[idx], tgt_all[idx]
        if cfg.flips:
            inp, tgt = _flip(inp, flips), _flip(tgt, flips)
        inp, tgt = inp.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
        wait += time.perf_counter() - t_data
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
        losses = system.train_step(inp, tgt, rand, opts, _sync_grads)
        # EMA with the usual warm-up, so that short runs are not dominated by the initial weights
        _ema_update(ema, system.model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.iterations:
            elapsed = time.perf_counter() - tic
            log_rows.append({"step": step + 1, **{k: f"{v:.6f}" for k, v in losses.items()},
                             "seconds": f"{elapsed:.3f}", "data_wait_fraction": f"{wait / max(elapsed, 1e-9):.4f}"})
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.iterations):
            _save_checkpoint(ckpt_path, {
                "method": method, "step": step + 1, "system": system.state_dict(),
                "ema": ema.state_dict(), "optimizers": [o.state_dict() for o in opts],
                "rng": torch.get_rng_state(), "train_config": dataclasses.asdict(cfg),
                "model_config": dict(model_config), "pairs": str(pairs)})
            _write_log(log_path, log_rows)
    return ckpt_path


_EXTENDABLE = ("iterations", "log_every", "checkpoint_every")


def _same_run(ckpt: dict[str, Any], method: str, cfg: TrainConfig, model_config: dict[str, Any]) -> bool:
    """Whether a checkpoint continues this run: same method, model and training settings (a run
    may be extended to more iterations)."""
    strip = lambda d: {k: v for k, v in d.items() if k not in _EXTENDABLE}  # noqa: E731
    same_model = json.dumps(ckpt["model_config"], sort_keys=True, default=list) == \
        json.dumps(dict(model_config), sort_keys=True, default=list)
    return (ckpt["method"] == method and same_model
            and strip(ckpt["train_config"]) == strip(dataclasses.asdict(cfg)))


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
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


# ----------------------------------------------------------------------------- torchrun entry
def main() -> None:
    """``torchrun --nproc_per_node=N -m diffcmr_core.train METHOD PAIRS OUT CONFIG.json``.

    ``CONFIG.json`` holds ``{"train": {...TrainConfig...}, "model": {...}}``.
    """
    import argparse

    parser = argparse.ArgumentParser(description="Train one method (single process or torchrun).")
    parser.add_argument("method")
    parser.add_argument("pairs")
    parser.add_argument("out_dir")
    parser.add_argument("config")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = None
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    try:
        train(args.method, args.pairs, args.out_dir, TrainConfig(**spec["train"]), spec["model"],
              device=device, progress=True)
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
