"""Noise schedule, training loss and samplers of DiffCMR (paper §2.3-2.4, Alg. 1 and 2).

Time-steps. The *base* chain is Alg. 1's schedule with T = 1000: beta linear from 1e-4 to 2e-2.
Every shorter chain (training: 100 steps; ablation: 20, 100, 500) is a *respacing* of it: keep
``steps`` evenly spaced base time-steps tau_1 < ... < tau_S (tau_S = 999) and recompute
beta_i = 1 - abar[tau_i] / abar[tau_{i-1}]. Each chain therefore ends at the same abar (pure
noise, abar ~ 4e-5) and the network is always called with base time-steps in [0, 1000).

This differs from reading Alg. 1's formula with a small T literally (beta linear from 1e-4 to
2e-2 over T steps): with T = 20 that chain ends at abar_T ~ 0.82, far from pure noise, so
sampling from N(0, I) starts off the chain's own marginal; this is a plausible cause of the
paper's poor T = 20 and T = 100 results in Table 4(a). Base index k is the paper's t = k + 1.

Paper typos we do not copy: Alg. 1 writes sqrt(alpha_t) I^f where Eq. 4 (correctly) has
sqrt(abar_t); Alg. 2 writes alpha_t^{1/2} in front of the bracket where DDPM's mean has
alpha_t^{-1/2}; Eq. 2 writes the mean as eps_theta (it is a function of eps_theta).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

BASE_STEPS = 1000
BETA_START, BETA_END = 1e-4, 2e-2

EpsFn = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None


# ----------------------------------------------------------------------------- schedule
def base_betas() -> torch.Tensor:
    """Alg. 1 with T = 1000: beta_t = (1e-4 (T - t) + 2e-2 (t - 1)) / (T - 1), t = 1..T."""
    t = torch.arange(1, BASE_STEPS + 1, dtype=torch.float64)
    return (BETA_START * (BASE_STEPS - t) + BETA_END * (t - 1)) / (BASE_STEPS - 1)


def base_alphas_cumprod() -> torch.Tensor:
    """abar of the base chain, float64 ``(1000,)``."""
    return torch.cumprod(1.0 - base_betas(), 0)


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
    abar = base_alphas_cumprod()[respaced_timesteps(steps)]
    prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    return 1.0 - abar / prev


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 4: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, for base time-steps ``t`` ``(B,)``."""
    abar = base_alphas_cumprod().to(x0.device)[t].to(x0.dtype).view(-1, *[1] * (x0.dim() - 1))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def diffusion_loss(eps_pred: torch.Tensor, noise: torch.Tensor,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5 as the mean squared error over pixels and batch (the public code's choice; the
    paper writes a norm, whose minimiser is the same conditional mean). ``weights`` ``(B,)``
    optionally weight each sample's error (see :func:`loss_weights`)."""
    err = (eps_pred.float() - noise.float()) ** 2
    if weights is None:
        return err.mean()
    return (weights.float().view(-1, *[1] * (err.dim() - 1)) * err).mean()


LOSS_WEIGHTINGS = ("eps", "v")


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
        return 1.0 / base_alphas_cumprod().to(t.device)[t]
    raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")


# ----------------------------------------------------------------------------- sampling helpers
def _expand_rounds(cond: object, rounds: int) -> object:
    """Repeat a tensor condition ``rounds`` times along the batch (round-major)."""
    if isinstance(cond, torch.Tensor):
        return cond.repeat(rounds, *[1] * (cond.dim() - 1))
    return cond


def _randn(shape: tuple[int, ...], rounds: int, generator: Generators, device, dtype) -> torch.Tensor:
    """Noise for all rounds: one draw of ``(R*B, ...)`` from one generator, or one draw of
    ``(B, ...)`` per round from a list of R generators (round r then equals a single-round run
    seeded with generator r)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn((rounds * shape[0],) + shape[1:], generator=generator, device=device,
                           dtype=dtype)
    if len(generator) != rounds:
        raise ValueError(f"need one generator per round ({rounds}), got {len(generator)}")
    return torch.cat([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generator])


def _ensemble(x: torch.Tensor, rounds: int, return_rounds: bool):
    """Mean (the reconstruction) and per-pixel std (population, 0 for R = 1) over rounds, or,
    with ``return_rounds``, every round's sample ``(R, B, ...)``."""
    x = x.reshape(rounds, -1, *x.shape[1:])
    return x if return_rounds else (x.mean(0), x.std(0, correction=0))


def _chain(steps: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Base time-steps (int64) and their abar (float64) of a ``steps`` chain."""
    tau = respaced_timesteps(steps)
    return tau.to(device), base_alphas_cumprod()[tau].to(device)


def _with_x0_hook(eps: torch.Tensor, x: torch.Tensor, abar: torch.Tensor,
                  hook: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 prediction from eps; if ``hook`` (e.g. data consistency) changes x0, eps follows."""
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    if hook is not None:
        x0 = hook(x0)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
    return eps, x0


# ----------------------------------------------------------------------------- samplers
def _start(cond: object, shape: tuple[int, ...] | None, steps: int, rounds: int, generator: Generators):
    """What every sampler needs before its loop: the sample shape, the device, the chain's base
    time-steps and abar (float64), the condition repeated for the rounds, and x_T ~ N(0, I)."""
    shape = tuple(shape if shape is not None else cond.shape)
    device = cond.device if isinstance(cond, torch.Tensor) else None
    tau, abar = _chain(steps, device)
    x = _randn(shape, rounds, generator, device, torch.float32)
    return shape, device, tau, abar, _expand_rounds(cond, rounds), x


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, cond: object, *, steps: int = BASE_STEPS, rounds: int = 1,
                generator: Generators = None, progress: bool = False,
                shape: tuple[int, ...] | None = None,
                x0_hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
                return_rounds: bool = False):
    """Alg. 2: ancestral sampling with posterior variance beta-tilde and R-round ensembling.

    Args:
        eps_fn: ``eps_fn(x_t, t, cond)`` -> predicted noise; ``t`` ``(R*B,)`` base time-steps.
        cond: the condition for one round (a tensor is repeated R times along the batch, once,
            before the loop), e.g. cached features G(I^u).
        steps: chain length T (a respacing of the 1000-step base chain).
        rounds: R ensembling rounds, run together in the batch dimension.
        generator: one generator, or one per round (see :func:`_randn`).
        shape: ``(B, C, H, W)`` of one round's sample; default ``cond.shape``.
        x0_hook: optional map applied to each step's x0 prediction (data consistency).
        return_rounds: return every round's sample ``(R, B, C, H, W)`` instead.

    Returns:
        ``(mean, std)`` over rounds, each ``(B, C, H, W)``: the reconstruction and an
        uncertainty map (``return_rounds``: the samples themselves).
    """
    shape, device, tau, abar, cond_r, x = _start(cond, shape, steps, rounds, generator)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    alpha = abar / abar_prev
    beta = 1 - alpha
    # per-step coefficients of Alg. 2, computed once (float64, then float32)
    eps_coef = (beta / (1 - abar).sqrt()).float()
    inv_sqrt_alpha = alpha.rsqrt().float()
    sigma = ((1 - abar_prev) / (1 - abar) * beta).sqrt().float()   # beta-tilde^{1/2}
    abar32 = abar.float()
    for i in tqdm(range(steps - 1, -1, -1), desc="DDPM", disable=not progress, leave=False):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond_r).float()
        if x0_hook is not None:
            eps, _ = _with_x0_hook(eps, x, abar32[i], x0_hook)
        # x_{t-1} = alpha_t^{-1/2} (x_t - beta_t / sqrt(1 - abar_t) eps) + 1[t>1] beta~_t^{1/2} z
        x = (x - eps_coef[i] * eps) * inv_sqrt_alpha[i]
        if i > 0:
            x = x + sigma[i] * _randn(shape, rounds, generator, device, x.dtype)
    return _ensemble(x, rounds, return_rounds)


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, cond: object, *, steps: int = 50, rounds: int = 1,
                generator: Generators = None, progress: bool = False,
                shape: tuple[int, ...] | None = None,
                x0_hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
                return_rounds: bool = False):
    """Deterministic DDIM (eta = 0) [14] on the same trained network; same interface as
    :func:`ddpm_sample`. Only x_T is random, so rounds differ by their starting noise."""
    shape, device, tau, abar, cond_r, x = _start(cond, shape, steps, rounds, generator)
    abar32 = abar.float()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])             # the last step lands on x_0
    c_x0, c_eps = abar_prev.sqrt().float(), (1 - abar_prev).sqrt().float()
    for i in tqdm(range(steps - 1, -1, -1), desc="DDIM", disable=not progress, leave=False):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond_r).float()
        eps, x0 = _with_x0_hook(eps, x, abar32[i], x0_hook)
        x = c_x0[i] * x0 + c_eps[i] * eps
    return _ensemble(x, rounds, return_rounds)


@torch.no_grad()
def dpm_solver_pp_sample(eps_fn: EpsFn, cond: object, *, steps: int = 20, rounds: int = 1,
                         generator: Generators = None, progress: bool = False,
                         shape: tuple[int, ...] | None = None,
                         x0_hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         return_rounds: bool = False):
    """DPM-Solver++(2M) (Lu et al. 2022), multistep second order in the data prediction, on the
    respaced chain's time-steps; ``steps`` network evaluations. The first step and the step into
    the last time-step are first order (the "lower order final" of the reference solver: that
    step is long in log-SNR and a second-order extrapolation over it overshoots); the output is
    the data prediction at the last time-step. Same interface as :func:`ddpm_sample`."""
    shape, device, tau, abar, cond_r, x = _start(cond, shape, steps, rounds, generator)
    alpha_s, sigma_s = abar.sqrt(), (1 - abar).sqrt()
    lam = torch.log(alpha_s / sigma_s)
    # step i -> i-1: h = lambda_{i-1} - lambda_i, x <- (sigma_{i-1}/sigma_i) x - alpha_{i-1}(e^{-h} - 1) D
    h = torch.cat([lam.new_zeros(1), lam[:-1] - lam[1:]])
    ratio = torch.cat([lam.new_zeros(1), sigma_s[:-1] / sigma_s[1:]]).float()
    coef = torch.cat([lam.new_zeros(1), alpha_s[:-1] * torch.expm1(-h[1:])]).float()
    r = torch.ones_like(h)                          # r_i = h_prev / h: h_prev is h[i + 1]
    r[1:-1] = h[2:] / h[1:-1]
    w_now, w_prev = (1 + 1 / (2 * r)).float(), (1 / (2 * r)).float()
    abar32 = abar.float()
    x0_prev = None
    for i in tqdm(range(steps - 1, -1, -1), desc="DPM-Solver++", disable=not progress, leave=False):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond_r).float()
        _, x0 = _with_x0_hook(eps, x, abar32[i], x0_hook)
        if i == 0:                                     # last step: to the clean image
            x = x0
            break
        d = x0
        if x0_prev is not None and i > 1:              # second order, but not into tau_1 = 0
            d = w_now[i] * x0 - w_prev[i] * x0_prev
        x = ratio[i] * x - coef[i] * d
        x0_prev = x0
    return _ensemble(x, rounds, return_rounds)


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpm++": dpm_solver_pp_sample}
