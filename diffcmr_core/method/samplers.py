"""Samplers of DiffCMR (paper §2.4, Alg. 2) and the ensembling over rounds.

Each sampler runs *one* chain, from x_T to x_0, and reads like its algorithm: it takes a noise
predictor ``eps_fn(x_t, t, cond)``, the starting noise x_T, the condition, the chain length and,
for the stochastic sampler, a ``randn()`` that draws fresh noise shaped like x. The R rounds of
DiffCMR's ensembling are R chains run together along the batch axis; :func:`sample_rounds` sets
them up (x_T, the repeated condition, per-round generators) around any sampler, and
:func:`ensemble` averages them. The same trained network serves every sampler.

Paper typos not copied: Alg. 2 writes alpha_t^{1/2} in front of the bracket where DDPM's mean
has alpha_t^{-1/2}; Eq. 2 writes the mean as eps_theta (it is a function of eps_theta).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm
from tqdm.std import tqdm as tqdm_base

from diffcmr_core.method.schedule import BASE_STEPS, chain, eps_from_x0, x0_from_eps

EpsFn = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]
X0Hook = Callable[[torch.Tensor], torch.Tensor]
Randn = Callable[[], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator | Sequence[torch.Generator]] | None


def _apply_x0_hook(
    eps: torch.Tensor, x: torch.Tensor, abar: torch.Tensor, hook: X0Hook | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 predicted from eps (Eq. 4); if ``hook`` (e.g. data consistency) changes x0, eps
    follows."""
    x0 = x0_from_eps(eps, x, abar)
    if hook is not None:
        x0 = hook(x0)
        eps = eps_from_x0(x0, x, abar)
    return eps, x0


VARIANCES = ("beta_tilde", "beta")


def clip_hook(low: float = -1.0, high: float = 1.0) -> X0Hook:
    """An ``x0_hook`` clipping each step's x0 prediction to [``low``, ``high``] (model space):
    the public code's ``clip_denoised=True``. With the hook the step's mean is the posterior mean
    of the clipped x0, since the eps form of Alg. 2 and the x0 form of the posterior mean are the
    same expression once eps is recomputed from the clipped x0."""
    return lambda x0: x0.clamp(low, high)


def compose_hooks(*hooks: X0Hook | None) -> X0Hook | None:
    """Apply the given x0 hooks in order (``None`` entries skipped); ``None`` if there are none."""
    hooks = tuple(h for h in hooks if h is not None)
    if not hooks:
        return None

    def composed(x0: torch.Tensor) -> torch.Tensor:
        for h in hooks:
            x0 = h(x0)
        return x0

    return composed


Progress = "bool | tqdm"


def countdown(steps: int, progress: Progress, desc: str):
    """``steps - 1 .. 0``, shown by a bar of its own (``progress=True``, one per chain) or counted
    on a caller's bar (a ``tqdm`` instance, e.g. one bar over every batch of a data set)."""
    order = range(steps - 1, -1, -1)
    if isinstance(progress, tqdm_base):
        for i in order:
            yield i
            progress.update(1)
    else:
        yield from tqdm(order, desc=desc, disable=not progress, leave=False)


@torch.no_grad()
def ddpm_sample(
    eps_fn: EpsFn,
    x: torch.Tensor,
    cond: object,
    *,
    steps: int = BASE_STEPS,
    randn: Randn | None = None,
    x0_hook: X0Hook | None = None,
    progress: Progress = False,
    desc: str = "DDPM",
    variance: str = "beta_tilde",
) -> torch.Tensor:
    """Alg. 2: ancestral sampling, from x_T = ``x``.

    ``eps_fn(x_t, t, cond)`` predicts the noise (``t``: base time-steps ``(N,)``); ``steps`` is
    the chain length T (a respacing of the 1000-step base chain); ``randn()`` draws z ~ N(0, I)
    shaped like ``x`` (default ``torch.randn_like``); ``x0_hook`` optionally maps each step's x0
    prediction (data consistency, clipping). ``variance``: sigma_t^2 of the added noise,
    ``"beta_tilde"`` (default; Alg. 2 as printed, the posterior variance
    (1 - abar_{t-1}) / (1 - abar_t) beta_t) or ``"beta"`` (the public code's "fixed large"
    sigma_t^2 = beta_t). On the 1000-step chain the two differ by a factor 2.2 at t = 2, 1.16 at
    t = 11, 1.02 at t = 100 and under 1 % beyond t = 200; shorter (respaced) chains differ more.
    No noise is added at the last step either way. Returns x_0.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    randn = randn or (lambda: torch.randn_like(x))
    tau, abar = chain(steps, x.device)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    alpha = abar / abar_prev
    beta = 1 - alpha
    # per-step coefficients of Alg. 2, computed once (float64, then float32)
    eps_coef = (beta / (1 - abar).sqrt()).float()
    inv_sqrt_alpha = alpha.rsqrt().float()
    if variance == "beta_tilde":
        sigma = ((1 - abar_prev) / (1 - abar) * beta).sqrt().float()
    else:
        sigma = beta.sqrt().float()
    abar32 = abar.float()
    for i in countdown(steps, progress, desc):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond).float()
        if x0_hook is not None:
            eps, _ = _apply_x0_hook(eps, x, abar32[i], x0_hook)
        # x_{t-1} = alpha_t^{-1/2} (x_t - beta_t / sqrt(1 - abar_t) eps) + 1[t>1] sigma_t z
        x = (x - eps_coef[i] * eps) * inv_sqrt_alpha[i]
        if i > 0:
            x = x + sigma[i] * randn()
    return x


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    x: torch.Tensor,
    cond: object,
    *,
    steps: int = 50,
    randn: Randn | None = None,
    x0_hook: X0Hook | None = None,
    progress: Progress = False,
    desc: str = "DDIM",
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) [14] on the same trained network: only x_T is random, so
    rounds differ by their starting noise. Same arguments as :func:`ddpm_sample` (``randn`` is
    not used)."""
    tau, abar = chain(steps, x.device)
    abar32 = abar.float()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])  # the last step lands on x_0
    c_x0, c_eps = abar_prev.sqrt().float(), (1 - abar_prev).sqrt().float()
    for i in countdown(steps, progress, desc):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond).float()
        eps, x0 = _apply_x0_hook(eps, x, abar32[i], x0_hook)
        x = c_x0[i] * x0 + c_eps[i] * eps
    return x


@torch.no_grad()
def dpm_solver_pp_sample(
    eps_fn: EpsFn,
    x: torch.Tensor,
    cond: object,
    *,
    steps: int = 20,
    randn: Randn | None = None,
    x0_hook: X0Hook | None = None,
    progress: Progress = False,
    desc: str = "DPM-Solver++",
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep second order in the data prediction, on the
    respaced chain's time-steps; ``steps`` network evaluations. The first step and the step into
    the last time-step are first order (the "lower order final" of the reference solver: that
    step is long in log-SNR and a second-order extrapolation over it overshoots); the output is
    the data prediction at the last time-step. Same arguments as :func:`ddpm_sample`."""
    tau, abar = chain(steps, x.device)
    alpha_s, sigma_s = abar.sqrt(), (1 - abar).sqrt()
    lam = torch.log(alpha_s / sigma_s)
    # step i -> i-1: h = lambda_{i-1} - lambda_i, x <- (sigma_{i-1}/sigma_i) x -
    # alpha_{i-1}(e^{-h} - 1) D
    h = torch.cat([lam.new_zeros(1), lam[:-1] - lam[1:]])
    ratio = torch.cat([lam.new_zeros(1), sigma_s[:-1] / sigma_s[1:]]).float()
    coef = torch.cat([lam.new_zeros(1), alpha_s[:-1] * torch.expm1(-h[1:])]).float()
    r = torch.ones_like(h)  # r_i = h_prev / h: h_prev is h[i + 1]
    r[1:-1] = h[2:] / h[1:-1]
    w_now, w_prev = (1 + 1 / (2 * r)).float(), (1 / (2 * r)).float()
    abar32 = abar.float()
    x0_prev = None
    for i in countdown(steps, progress, desc):
        eps = eps_fn(x, tau[i].expand(x.shape[0]), cond).float()
        _, x0 = _apply_x0_hook(eps, x, abar32[i], x0_hook)
        if i == 0:  # last step: to the clean image
            return x0
        d = x0
        if x0_prev is not None and i > 1:  # second order, but not into tau_1 = 0
            d = w_now[i] * x0 - w_prev[i] * x0_prev
        x = ratio[i] * x - coef[i] * d
        x0_prev = x0
    return x


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpm++": dpm_solver_pp_sample}
SAMPLER_LABEL = {"ddpm": "DDPM", "ddim": "DDIM", "dpm++": "DPM-Solver++"}


# ----------------------------------------------------------------------------- rounds
def round_noise(
    shape: tuple[int, ...], rounds: int, generator: Generators, device, dtype=torch.float32
) -> Randn:
    """A ``randn()`` for R rounds of one-round shape ``shape`` ``(B, ...)``: each call draws
    ``(R*B, ...)`` (round-major): in one draw from one generator; or from a list of R entries,
    one per round, each a generator (one ``(B, ...)`` draw: round r then equals a one-round run
    seeded with it) or a list of B generators, one per slice (B draws of ``(1, ...)``: a slice's
    noise then does not depend on the batch it is in)."""
    if generator is None or isinstance(generator, torch.Generator):
        full = (rounds * shape[0],) + tuple(shape[1:])
        return lambda: torch.randn(full, generator=generator, device=device, dtype=dtype)
    if len(generator) != rounds:
        raise ValueError(f"need one generator per round ({rounds}), got {len(generator)}")
    one = (1,) + tuple(shape[1:])
    for g in generator:
        if not isinstance(g, torch.Generator) and len(g) != shape[0]:
            raise ValueError(f"need one generator per slice ({shape[0]}), got {len(g)}")

    def draw(g) -> torch.Tensor:
        if isinstance(g, torch.Generator):
            return torch.randn(shape, generator=g, device=device, dtype=dtype)
        return torch.cat([torch.randn(one, generator=s, device=device, dtype=dtype) for s in g])

    return lambda: torch.cat([draw(g) for g in generator])


def sample_rounds(
    eps_fn: EpsFn,
    cond: object,
    *,
    shape: tuple[int, ...],
    steps: int,
    rounds: int = 1,
    sampler: str = "ddpm",
    generator: Generators = None,
    x0_hook: X0Hook | None = None,
    progress: Progress = False,
    desc: str | None = None,
    variance: str = "beta_tilde",
) -> torch.Tensor:
    """R chains of ``sampler`` run together along the batch axis: returns ``(R, B, ...)``.

    ``cond`` is one round's condition (a tensor is repeated R times, round-major, once, before
    the chain); ``shape`` is one round's ``(B, C, H, W)``; ``generator``: one, or one per round
    (see :func:`round_noise`); ``x0_hook`` acts on ``(R*B, ...)`` predictions; ``variance``:
    DDPM's sigma_t^2 (see :func:`ddpm_sample`; the deterministic samplers have none).
    """
    device = cond.device if isinstance(cond, torch.Tensor) else None
    randn = round_noise(tuple(shape), rounds, generator, device)
    x_T = randn()
    if isinstance(cond, torch.Tensor):
        cond = cond.repeat(rounds, *[1] * (cond.dim() - 1))
    extra = {"variance": variance} if sampler == "ddpm" else {}
    x0 = SAMPLERS[sampler](
        eps_fn,
        x_T,
        cond,
        steps=steps,
        randn=randn,
        x0_hook=x0_hook,
        progress=progress,
        desc=desc or SAMPLER_LABEL[sampler],
        **extra,
    )
    return x0.reshape(rounds, -1, *x0.shape[1:])


def ensemble(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(B, ...)`` (the reconstruction) and per-pixel standard deviation ``(B, ...)``
    (population, 0 for R = 1: the uncertainty map) of samples ``(R, B, ...)`` over the rounds.

    >>> mean, std = ensemble(torch.tensor([[[1.0, 2.0]], [[3.0, 2.0]]]))  # R = 2, B = 1, 2 pixels
    >>> mean.tolist(), std.tolist()
    ([[2.0, 2.0]], [[1.0, 0.0]])
    """
    return samples.mean(0), samples.std(0, correction=0)
