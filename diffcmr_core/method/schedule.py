"""The noise schedule of DiffCMR (paper §2.3, Alg. 1), the forward process (Eq. 4), the
training loss (Eq. 5) and the reading of a network's output as noise.

Time-steps. The *base* chain is Alg. 1's schedule with T = 1000: beta linear from 1e-4 to 2e-2.
Every shorter chain (training: 100 steps; ablation: 20, 100, 500) is a *respacing* of it: keep
``steps`` evenly spaced base time-steps tau_1 < ... < tau_S (tau_S = 999) and recompute
beta_i = 1 - abar[tau_i] / abar[tau_{i-1}]. Each chain therefore ends at the same abar (pure
noise, abar ~ 4e-5) and the network is always called with base time-steps in [0, 1000).

This differs from reading Alg. 1's formula with a small T literally (beta linear from 1e-4 to
2e-2 over T steps): with T = 20 that chain ends at abar_T ~ 0.82, far from pure noise, so
sampling from N(0, I) starts off the chain's own marginal. Base index k is the paper's t = k + 1.

Paper typo not copied: Alg. 1 writes sqrt(alpha_t) I^f where Eq. 4 (correctly) has sqrt(abar_t).

This module is the one owner of abar: the samplers, the training loss and the conversion of a
network's raw output (eps, x0 or v) to noise (:func:`eps_from_output`) all read it from here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

BASE_STEPS = 1000
BETA_START, BETA_END = 1e-4, 2e-2
PREDICTIONS = ("eps", "x0", "v")
LOSS_WEIGHTINGS = ("eps", "v")


def base_betas() -> torch.Tensor:
    """Alg. 1 with T = 1000: beta_t = (1e-4 (T - t) + 2e-2 (t - 1)) / (T - 1), t = 1..T; float64."""
    t = torch.arange(1, BASE_STEPS + 1, dtype=torch.float64)
    return (BETA_START * (BASE_STEPS - t) + BETA_END * (t - 1)) / (BASE_STEPS - 1)


@lru_cache(maxsize=1)
def _abar64() -> torch.Tensor:
    return torch.cumprod(1.0 - base_betas(), 0)


def base_alphas_cumprod() -> torch.Tensor:
    """abar of the base chain, float64 ``(1000,)`` (a fresh copy)."""
    return _abar64().clone()


@lru_cache(maxsize=8)
def _abar32(device: torch.device) -> torch.Tensor:
    return _abar64().float().to(device)


def respaced_timesteps(steps: int) -> torch.Tensor:
    """The ``steps`` base time-steps a chain of that length uses, increasing, int64.

    Evenly spaced over [0, 999] and always containing 999; ``steps=1000`` gives all of them.
    """
    if not 1 <= steps <= BASE_STEPS:
        raise ValueError(f"steps must be in [1, {BASE_STEPS}], got {steps}")
    if steps == 1:
        return torch.tensor([BASE_STEPS - 1])
    return torch.from_numpy(np.round(np.linspace(0, BASE_STEPS - 1, steps)).astype(np.int64))


def linear_betas(steps: int) -> torch.Tensor:
    """Betas of a ``steps``-step chain, float64: Alg. 1's 1000-step schedule, respaced."""
    abar = _abar64()[respaced_timesteps(steps)]
    prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    return 1.0 - abar / prev


def chain(steps: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Base time-steps (int64) and their abar (float64) of a ``steps`` chain, on ``device``."""
    tau = respaced_timesteps(steps)
    return tau.to(device), _abar64()[tau].to(device)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 4: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, for base time-steps ``t`` ``(B,)``."""
    abar = _abar64().to(x0.device)[t].to(x0.dtype).view(-1, *[1] * (x0.dim() - 1))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def eps_from_output(
    output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str = "eps"
) -> torch.Tensor:
    """The noise that a network's raw ``output`` stands for, at x_t and base time-steps ``t``.

    * ``"eps"``: the output is eps_theta (Eq. 3), returned as is.
    * ``"x0"``: the output is the clean image; eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar) (Eq. 4).
    * ``"v"``: the output is v = sqrt(abar) eps - sqrt(1 - abar) x0; with Eq. 4,
      eps = sqrt(abar) v + sqrt(1 - abar) x_t.
    """
    if prediction == "eps":
        return output
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    abar = _abar32(x_t.device)[t].view(-1, *[1] * (x_t.dim() - 1))
    output = output.to(x_t.dtype)
    if prediction == "x0":
        return (x_t - abar.sqrt() * output) / (1 - abar).sqrt()
    return abar.sqrt() * output + (1 - abar).sqrt() * x_t


def x0_from_eps(eps: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Eq. 4 solved for x_0 at one abar (a scalar tensor)."""
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def eps_from_x0(x0: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Eq. 4 solved for eps at one abar (a scalar tensor)."""
    return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


LOSS_REDUCTIONS = ("sum", "mean")


def diffusion_loss(
    eps_pred: torch.Tensor,
    noise: torch.Tensor,
    weights: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Eq. 5: the squared error of the noise, per sample, then the mean over the batch.

    ``reduction="sum"`` (default): each sample's error is the *sum* over its pixels, the squared
    norm Eq. 5 writes, and what the public code computes (its loss term ``sum``, then the batch
    mean). ``"mean"``: the mean over pixels instead, a constant factor 1 / (H W) smaller; the
    minimiser is the same, and with Adam(W) the steps are nearly the same too (Adam divides the
    gradient by its own running scale; only its epsilon sees the factor). ``weights`` ``(B,)``
    optionally weight each sample's error (see :func:`loss_weights`)."""
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")
    err = (eps_pred.float() - noise.float()) ** 2
    per_sample = err.flatten(1).sum(1) if reduction == "sum" else err.flatten(1).mean(1)
    if weights is not None:
        per_sample = weights.float() * per_sample
    return per_sample.mean()


def loss_weights(t: torch.Tensor, weighting: str = "eps") -> torch.Tensor | None:
    """Per-sample weights of Eq. 5's noise error at base time-steps ``t``.

    * ``"eps"``: none, Eq. 5 as written.
    * ``"v"``: 1 / abar_t. Since x0_err = eps_err / sqrt(SNR_t) with SNR_t = abar_t / (1 - abar_t),
      eps_err^2 / abar_t = eps_err^2 + x0_err^2: the noise error plus the clean-image error, which
      is the MSE on v = sqrt(abar) eps - sqrt(1 - abar) x0. Eq. 5 alone gives the clean-image
      prediction at large t almost no gradient (weight SNR_t ~ 4e-5 at t = 1000); the added term
      makes a short run learn E[x0 | I^u] there too. All weightings share the same minimiser at
      every t; they differ in how a finite network's errors are traded between time-steps.
    """
    if weighting == "eps":
        return None
    if weighting == "v":
        return 1.0 / _abar64().to(t.device)[t]
    raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")
