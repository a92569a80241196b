"""Fast DiffCMR inference: the same protocol with less work, fewer steps, and k-space data
consistency.

* :func:`plain_reconstruct` is the paper protocol as the public code runs it: the whole network,
  G(I^u) included, at every step, the R rounds one after another, fp32. It is the reference the
  fast path is checked and timed against.
* The fast path is :meth:`DiffusionSystem.reconstruct`: G(I^u) encoded once per slice, rounds
  batched; :func:`prepare_for_speed` adds, on CUDA, channels-last memory and ``torch.compile``;
  :func:`inference_autocast` bf16 autocast.
* Fewer steps: the deterministic DDIM and DPM-Solver++(2M) samplers of ``diffcmr_core.diffusion``
  on the same trained network.
* :func:`data_consistency_hook`: replace the sampled lines of each predicted clean image's
  k-space by those of the under-sampled input. Exact line-for-line only when the images were made
  by cropping k-space to the network's size (``PreprocessConfig(mode="crop")``), so that the mask
  carries over; even then approximate, because the slices are magnitude (RSS) images, whose
  k-space is not the measured complex k-space.
"""

from __future__ import annotations

import contextlib

import torch

from diffcmr_core import diffusion
from diffcmr_core.methods import from_model_space, to_model_space
from diffcmr_core.preprocess import fft2c, ifft2c


@torch.no_grad()
def plain_reconstruct(model, inp: torch.Tensor, *, steps: int, rounds: int,
                      generator: list[torch.Generator]) -> torch.Tensor:
    """Rounds ``(R, B, 1, S, S)`` the slow way: full network per step, rounds in sequence."""
    cond = to_model_space(inp)
    samples = [diffusion.ddpm_sample(lambda x, t, c: model(x, t, c), cond, steps=steps, rounds=1,
                                     generator=[g], return_rounds=True)[0] for g in generator]
    return from_model_space(torch.stack(samples))


def prepare_for_speed(model: torch.nn.Module, compile_model: bool = True) -> torch.nn.Module:
    """On CUDA: channels-last weights and ``torch.compile`` of the per-step part (stem + E);
    elsewhere the model is returned unchanged."""
    if next(model.parameters()).device.type != "cuda":
        return model
    model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model.unet = torch.compile(model.unet)
    return model


def inference_autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def data_consistency_hook(inp: torch.Tensor, mask: torch.Tensor, rounds: int):
    """An ``x0_hook`` for the samplers: in each x0 prediction (model space, ``(R*B, 1, S, S)``),
    replace the k-space lines sampled by ``mask`` (``(S, S)`` or per slice ``(B, 1, S, S)``)
    with those of ``inp`` ``(B, 1, S, S)`` and keep the magnitude."""
    measured = fft2c(inp.to(torch.complex64)).repeat(rounds, 1, 1, 1)
    keep = mask.to(inp.device, torch.bool)
    if keep.dim() == 4:
        keep = keep.repeat(rounds, 1, 1, 1)

    def hook(x0: torch.Tensor) -> torch.Tensor:
        k = fft2c(from_model_space(x0).to(torch.complex64))
        k = torch.where(keep, measured, k)
        return to_model_space(ifft2c(k).abs().to(x0.dtype))

    return hook


# ----------------------------------------------------------------------------- the comparison
SAMPLER_LABEL = {"ddpm": "DDPM", "ddim": "DDIM", "dpm++": "DPM-Solver++"}


def sampler_comparison(profile, task: str = "cine", acc: int = 4, *, progress: bool = True,
                       force: bool = False) -> list[dict]:
    """Paper protocol against DDIM and DPM-Solver++, each with and without data consistency, on
    one model and one set of validation slices: PSNR/SSIM/NMSE, network evaluations (T x R) and
    seconds per slice.

    The first of the profile's ``fast_settings`` is the paper protocol (Alg. 2, T = 1000, R = 4)
    and its row without DC the reference; "DDPM" rows are Alg. 2 on a shorter respaced chain.

    Data consistency needs images whose k-space grid matches the mask, so this comparison uses
    pairs made with ``crop=True`` and a DiffCMR trained on them (same profile otherwise); the
    paper-protocol row without DC on that model is the reference.
    """
    import dataclasses
    import time

    from diffcmr_core.evaluate import evaluate
    from diffcmr_core.preprocess import build_pairs, load_pairs, pairs_path
    from diffcmr_core.profiles import paths_for
    from diffcmr_core.study import _cached, _store, device, diffcmr_reconstruct, ensure_data
    from diffcmr_core.train import load_for_inference, train

    paths = paths_for(profile)
    out = paths.runs / "fast" / f"{task}_acc{acc:02d}"
    cache = out / "comparison.json"
    cached = _cached(cache, profile, force)
    if cached is not None:
        return cached
    ensure_data(profile, progress=progress)
    pre = dataclasses.replace(profile.preprocess, crop=True, accs=(acc,))
    crop_pairs = paths.pairs.parent / f"{profile.name}_crop"
    build_pairs(paths.data, crop_pairs, task, pre, progress=progress)
    ckpt = train("diffcmr", pairs_path(crop_pairs, task, acc), paths.runs / "models" / f"{task}_acc{acc:02d}_diffcmr_crop",
                 profile.train_diffcmr, profile.model_config("diffcmr"), device=device(), progress=progress)
    tic = time.perf_counter()
    system, model = load_for_inference(ckpt, device())
    ev = profile.evaluation
    inp, tgt, meta = load_pairs(pairs_path(crop_pairs, task, acc), "val_subset", subset=ev.ablation_n_val)
    settings = ev.fast_settings
    rows = [{"label": "RAW", "sampler": "-", "steps": 0, "rounds": 0, "nfe": 0, "dc": False,
             "seconds_per_slice": 0.0, **evaluate("RAW", inp, tgt, meta, out)}]
    for k, (sampler, steps, rounds) in enumerate(settings):
        for dc in (False, True):
            def hook_for(x: torch.Tensor, first: int, rounds=rounds):
                lines = torch.from_numpy(meta["mask_lines"][first:first + len(x)]).to(x.device)
                return data_consistency_hook(x, lines[:, None, :, None].expand(-1, 1, -1, x.shape[-1]), rounds)

            t0 = time.perf_counter()
            rec = diffcmr_reconstruct(system, model, inp, steps=steps, rounds=rounds, batch=ev.batch,
                                      seed=ev.seed, sampler=sampler,
                                      x0_hook_for=hook_for if dc else None)["mean"]
            seconds = (time.perf_counter() - t0) / len(inp)
            name = "paper protocol" if k == 0 else SAMPLER_LABEL[sampler]
            label = f"{name} T={steps} R={rounds}{' + DC' if dc else ''}"
            rows.append({"label": label, "sampler": sampler, "steps": steps, "rounds": rounds,
                         "reference": k == 0 and not dc,
                         "nfe": steps * rounds, "dc": dc, "seconds_per_slice": seconds,
                         **evaluate(f"{sampler}{steps}r{rounds}{'dc' if dc else ''}", rec, tgt, meta, out)})
    _store(cache, profile, rows, time.perf_counter() - tic)
    return rows
