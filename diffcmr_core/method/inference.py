"""DiffCMR inference: reconstructing many slices with seeded rounds, the fast path and the plain
path it is checked against, k-space data consistency, and a recorded chain for Figure 1.

* :func:`reconstruct` runs any sampler over ``[N, S, S]`` slices in batches, with one generator
  per round and slice, seeded by (seed, round, slice id) (:func:`slice_generators`): a slice's
  noise does not depend on the batch it is in, on the slices beside it or on the process that
  runs it, so a run split over processes (:mod:`~diffcmr_core.study.store.shard`) gives the same
  reconstructions as one process, and the first R rounds of an 8-round run are exactly an
  R-round run.
* The fast path is :meth:`DiffusionSystem.reconstruct`: G(I^u) encoded once per slice, rounds
  batched; :func:`prepare_for_speed` adds, on CUDA, channels-last memory and ``torch.compile``;
  :func:`~diffcmr_core.method.systems.autocast` bf16.
* :func:`plain_reconstruct` is the reference: the whole network, G(I^u) included, at every
  step, the R rounds one after another, fp32.
* :func:`data_consistency_hook`: replace the sampled lines of each predicted clean image's
  k-space by those of the under-sampled input. Exact line-for-line only when the images were made
  by cropping k-space to the network's size (``PreprocessConfig(crop=True)``), so that the mask
  carries over; even then approximate, because the slices are magnitude (RSS) images, whose
  k-space is not the measured complex k-space.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from diffcmr_core.data.kspace import fft2c, ifft2c
from diffcmr_core.method.samplers import SAMPLER_LABEL, clip_hook, ddpm_sample, sample_rounds
from diffcmr_core.method.schedule import respaced_timesteps
from diffcmr_core.method.systems import autocast, from_model_space, to_model_space

Recon = Callable[[torch.Tensor, int], dict[str, torch.Tensor]]


def noise_seed(seed: int, round_index: int, slice_id: int) -> int:
    """The 63-bit seed of one slice's noise in one round: ``numpy``'s ``SeedSequence`` of
    (seed, round, slice id), so that nearby triples give unrelated streams."""
    words = [int(seed), int(round_index), int(slice_id) & 0xFFFFFFFF, int(slice_id) >> 32]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def slice_generators(
    seed: int, ids, rounds: int, device: str | torch.device = "cpu"
) -> list[list[torch.Generator]]:
    """``[round][slice]`` generators for the slices ``ids`` (non-negative integers, one per
    slice of a batch). Round r's generator of a slice depends on (seed, r, id) alone: not on
    the batch, not on how many rounds are run."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if any(i < 0 for i in ids):
        raise ValueError("slice ids must be non-negative")
    return [
        [torch.Generator(device).manual_seed(noise_seed(seed, r, i)) for i in ids]
        for r in range(rounds)
    ]


def reconstruct_all(
    recon: Recon,
    inputs: np.ndarray,
    batch: int,
    *,
    progress: bool = False,
    desc: str = "reconstruct",
) -> dict[str, np.ndarray]:
    """Apply ``recon(batch_input (B,1,S,S), first_index)`` -> dict of ``(..., B, 1, S, S)``
    tensors over ``inputs`` ``[N, S, S]`` in batches; returns the dict of arrays concatenated
    along their batch axis (second to last of the leading axes) with the channel dropped.
    Runs under ``torch.inference_mode`` (no autograd bookkeeping; the same kernels and results
    as ``no_grad``, ``benchmarks/bench_sampling.py`` compares both)."""
    parts: dict[str, list[np.ndarray]] = {}
    for i in tqdm(range(0, len(inputs), batch), desc=desc, disable=not progress):
        with torch.inference_mode():
            out = recon(torch.from_numpy(inputs[i : i + batch])[:, None], i)
        for k, v in out.items():
            parts.setdefault(k, []).append(v.squeeze(-3).cpu().numpy())
    return {k: np.concatenate(v, axis=v[0].ndim - 3) for k, v in parts.items()}


def regress(system, model, inputs: np.ndarray, batch: int, *, progress: bool = False) -> np.ndarray:
    """A regression baseline's (U-Net, cGAN) images of ``inputs`` ``[N, S, S]`` -> ``[N, S, S]``,
    in batches of ``batch`` on the model's device."""
    dev = next(model.parameters()).device
    rec = reconstruct_all(
        lambda x, _: {"mean": system.reconstruct(model, x.to(dev))[0]},
        inputs,
        batch,
        progress=progress,
        desc=f"{system.method}",
    )
    return rec["mean"]


def reconstruct(
    system,
    model,
    inputs: np.ndarray,
    *,
    steps: int,
    rounds: int,
    batch: int,
    seed: int,
    sampler: str = "ddpm",
    progress: bool = False,
    x0_hook_for: Callable[[torch.Tensor, int], Callable] | None = None,
    variance: str = "beta_tilde",
    clip: bool = True,
    precision: str = "bf16",
    ids: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """DiffCMR reconstructions of ``inputs`` ``[N, S, S]``: ``mean`` and ``std`` ``[N, S, S]``
    and ``rounds`` ``[R, N, S, S]``. ``ids`` ``[N]``: each slice's id, which seeds its noise
    (default ``0 .. N-1``; give the slices' own ids, e.g. their rows in the pairs file, when
    ``inputs`` is part of a larger set). ``x0_hook_for(batch_input, first_index)`` optionally
    makes each batch's x0 hook (e.g. data consistency); ``variance`` and ``clip``: see
    :meth:`~diffcmr_core.method.systems.DiffusionSystem.reconstruct`; ``precision``: the
    network's autocast on CUDA.

    Bit-identical for the same slice, id, seed and settings whatever the other slices, on one
    machine with the same threads and the same ``batch`` (the network's arithmetic may depend
    on the batch's size)."""
    dev = next(model.parameters()).device
    ids = np.arange(len(inputs)) if ids is None else np.asarray(ids).reshape(-1)
    if len(ids) != len(inputs):
        raise ValueError(f"{len(ids)} slice ids for {len(inputs)} slices")
    bar = tqdm(  # one bar over every sampling step of every batch: it moves from the first step
        total=-(-len(inputs) // batch) * steps,
        disable=not progress,
        unit="step",
        desc=f"{SAMPLER_LABEL.get(sampler, sampler)} T={steps} R={rounds}, {len(inputs)} slices",
    )

    def recon(x: torch.Tensor, first: int) -> dict[str, torch.Tensor]:
        gens = slice_generators(seed, ids[first : first + len(x)], rounds, dev)
        x = x.to(dev)
        hook = x0_hook_for(x, first) if x0_hook_for is not None else None
        with autocast(dev, precision):  # bf16 network on CUDA (the chain stays fp32)
            mean, std, all_rounds = system.reconstruct(
                model,
                x,
                steps=steps,
                rounds=rounds,
                sampler=sampler,
                generator=gens,
                x0_hook=hook,
                variance=variance,
                clip=clip,
                progress=bar if progress else False,
            )
        return {"mean": mean, "std": std, "rounds": all_rounds}

    with bar:
        return reconstruct_all(recon, inputs, batch)


@torch.no_grad()
def plain_reconstruct(
    system,
    model,
    inp: torch.Tensor,
    *,
    steps: int,
    rounds: int,
    generator: list,
    variance: str = "beta_tilde",
    clip: bool = True,
) -> torch.Tensor:
    """Rounds ``(R, B, 1, S, S)`` the slow way: full network per step, rounds in sequence
    (``generator``: one entry per round, as :func:`~diffcmr_core.method.samplers.round_noise`
    takes them)."""
    cond = system.to_model(inp)
    eps_fn = system.eps_fn(model)  # forward(x_t, t, I^u): G at every step
    hook = clip_hook() if clip else None
    samples = [
        sample_rounds(
            eps_fn,
            cond,
            shape=tuple(inp.shape),
            steps=steps,
            rounds=1,
            generator=[g],
            x0_hook=hook,
            variance=variance,
        )[0]
        for g in generator
    ]
    return system.from_model(torch.stack(samples))


def prepare_for_speed(model: torch.nn.Module, compile_model: bool = True) -> torch.nn.Module:
    """On CUDA: channels-last weights and ``torch.compile`` of the per-step part (stem + E);
    elsewhere the model is returned unchanged."""
    if next(model.parameters()).device.type != "cuda":
        return model
    model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model.unet = torch.compile(model.unet)
    return model


def data_consistency_hook(
    inp: torch.Tensor, mask: torch.Tensor, rounds: int, value_range: str = "pm1"
):
    """An ``x0_hook`` for the samplers: in each x0 prediction (model space ``value_range``,
    ``(R*B, 1, S, S)``), replace the k-space lines sampled by ``mask`` (``(S, S)`` or per slice
    ``(B, 1, S, S)``) with those of ``inp`` ``(B, 1, S, S)`` and keep the magnitude."""
    measured = fft2c(inp.to(torch.complex64)).repeat(rounds, 1, 1, 1)
    keep = mask.to(inp.device, torch.bool)
    if keep.dim() == 4:
        keep = keep.repeat(rounds, 1, 1, 1)

    def hook(x0: torch.Tensor) -> torch.Tensor:
        k = fft2c(from_model_space(x0, value_range).to(torch.complex64))
        k = torch.where(keep, measured, k)
        return to_model_space(ifft2c(k).abs().to(x0.dtype), value_range)

    return hook


def mask_lines_hook_for(mask_lines: np.ndarray, rounds: int, value_range: str = "pm1"):
    """``x0_hook_for`` of :func:`reconstruct` from per-slice ky lines ``[N, S]`` (as a crop pairs
    file stores them): data consistency with each slice's own mask."""

    def hook_for(x: torch.Tensor, first: int):
        lines = torch.from_numpy(mask_lines[first : first + len(x)]).to(x.device)
        return data_consistency_hook(
            x, lines[:, None, :, None].expand(-1, 1, -1, x.shape[-1]), rounds, value_range
        )

    return hook_for


def coil_consistency_hook_for(operator, rounds: int, value_range: str = "pm1"):
    """``x0_hook_for`` of :func:`reconstruct` from a
    :class:`~diffcmr_core.data.kspace.CoilConsistency` of all the slices: each batch's x0
    predictions (model space, ``(R*B, 1, S, S)``) made consistent with the acquired coil data
    (magnitude -> coil k-space with the maps and the low-resolution phase -> measured lines ->
    RSS)."""

    def hook_for(x: torch.Tensor, first: int):
        op = operator.subset(first, len(x)).repeat(rounds).to(x.device)

        def hook(x0: torch.Tensor) -> torch.Tensor:
            mag = op(from_model_space(x0, value_range)[:, 0])
            return to_model_space(mag[:, None].to(x0.dtype), value_range)

        return hook

    return hook_for


@torch.no_grad()
def visited_near(times: tuple[int, ...] | list[int], steps: int) -> list[int]:
    """For each base time-step of ``times``, the nearest one a ``steps``-step chain visits
    (:func:`~diffcmr_core.method.schedule.respaced_timesteps`), in order, each once: the
    time-steps a figure of that chain can show.

    >>> visited_near([0, 250, 500, 999], 20)
    [0, 263, 526, 999]
    """
    chain_t = respaced_timesteps(steps).tolist()
    near = [min(chain_t, key=lambda v: (abs(v - t), v)) for t in times]
    return list(dict.fromkeys(near))


def record_chain(
    system,
    model,
    inp: np.ndarray,
    *,
    steps: int,
    record: list[int],
    seed: int = 0,
    progress: bool = False,
    variance: str = "beta_tilde",
    clip: bool = True,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One Alg. 2 chain for one slice ``inp`` ``[S, S]``, recording x_t at the base time-steps
    ``record`` (Figure 1's backward row); returns the final sample (model space) and the record.
    Every time-step of ``record`` must be one the chain visits (:func:`visited_near`), else it
    could not be recorded: an error, not a silently missing panel."""
    missing = sorted(set(record) - set(respaced_timesteps(steps).tolist()))
    if missing:
        raise ValueError(
            f"a {steps}-step chain does not visit t = {missing}; record visited_near(...) instead"
        )
    dev = next(model.parameters()).device
    x = system.to_model(torch.from_numpy(inp)[None, None]).to(dev)
    cond = model.encode_condition(x)
    eps_fn = system.eps_fn(model.denoise)
    trace: dict[int, np.ndarray] = {}

    def recording(x_t, t, c):
        if int(t[0]) in record:
            trace[int(t[0])] = x_t[0, 0].float().cpu().numpy()
        return eps_fn(x_t, t, c)

    gen = torch.Generator(dev).manual_seed(seed)
    x_T = torch.randn(x.shape, generator=gen, device=dev)
    final = ddpm_sample(
        recording,
        x_T,
        cond,
        steps=steps,
        progress=progress,
        variance=variance,
        x0_hook=clip_hook() if clip else None,
        randn=lambda: torch.randn(x.shape, generator=gen, device=dev),
    )
    return final[0, 0].cpu().numpy(), trace
