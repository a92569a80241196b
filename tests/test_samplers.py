import numpy as np
import pytest
import torch

from diffcmr_core.method.samplers import (
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_sample,
    ensemble,
    round_noise,
    sample_rounds,
)
from diffcmr_core.method.schedule import base_alphas_cumprod, respaced_timesteps

MU, S = 0.3, 0.5


def run(eps_fn, cond, *, steps, rounds=1, generator=None, sampler="ddpm"):
    """Mean and std over rounds of R chains of ``sampler`` (what DiffCMR's ensembling does)."""
    return ensemble(
        sample_rounds(
            eps_fn,
            cond,
            shape=tuple(cond.shape),
            steps=steps,
            rounds=rounds,
            sampler=sampler,
            generator=generator,
        )
    )


def optimal_eps(x, t, cond):
    """Closed-form E[eps | x_t] for data x0 ~ N(MU, S^2), independent pixels."""
    a = base_alphas_cumprod()[t].float().view(-1, *[1] * (x.dim() - 1))
    return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)


def _exact_output_law(steps):
    """Mean and variance of Alg. 2's output with the optimal predictor: every step is affine in
    x_t plus Gaussian noise, so the law is propagated exactly (float64)."""
    tau = respaced_timesteps(steps)
    abar = base_alphas_cumprod()[tau]
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    m, v = 0.0, 1.0
    for i in range(steps - 1, -1, -1):
        a, ap = abar[i].item(), abar_prev[i].item()
        alpha, beta = a / ap, 1 - a / ap
        k = np.sqrt(1 - a) / (a * S**2 + 1 - a)  # eps = k (x - sqrt(a) MU)
        c = beta / np.sqrt(1 - a)
        m = (m - c * k * (m - np.sqrt(a) * MU)) / np.sqrt(alpha)
        v = v * ((1 - c * k) / np.sqrt(alpha)) ** 2 + (beta * (1 - ap) / (1 - a) if i else 0.0)
    return m, v


def test_exact_law_of_the_1000_step_sampler_is_the_data_law():
    m, v = _exact_output_law(1000)
    assert m == pytest.approx(MU, abs=1e-3) and v == pytest.approx(S**2, rel=0.02)


@pytest.mark.parametrize("steps", [1000, 100])
def test_ddpm_samples_follow_the_exact_law(steps):
    m, v = _exact_output_law(steps)
    cond = torch.zeros(1, 1, 100, 100)  # 10 000 independent pixels
    g = torch.Generator().manual_seed(0)
    mean, std = run(optimal_eps, cond, steps=steps, rounds=1, generator=g)
    assert mean.mean().item() == pytest.approx(m, abs=0.02)
    assert mean.var().item() == pytest.approx(v, rel=0.05)
    assert torch.all(std == 0)
    # the ensemble mean of R rounds of independent samples has variance v / R
    mean4, std4 = run(optimal_eps, cond, steps=steps, rounds=4, generator=g)
    assert mean4.var().item() == pytest.approx(v / 4, rel=0.06)
    assert std4.pow(2).mean().item() == pytest.approx(v * 3 / 4, rel=0.06)


def test_rounds_batched_equal_rounds_one_by_one():
    calls = []

    def eps_fn(x, t, cond):
        calls.append(x.shape[0])
        return torch.tanh(x + cond) * 0.5 + optimal_eps(x, t, cond)

    cond = torch.randn(2, 1, 8, 8)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    mean, std = run(eps_fn, cond, steps=50, rounds=3, generator=gens)
    assert set(calls) == {6}  # one batched call per step
    singles = torch.stack(
        [
            run(eps_fn, cond, steps=50, generator=torch.Generator().manual_seed(s))[0]
            for s in (1, 2, 3)
        ]
    )
    torch.testing.assert_close(mean, singles.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, singles.std(0, correction=0), atol=1e-5, rtol=1e-5)


def test_seeded_sampling_is_reproducible():
    cond = torch.zeros(1, 1, 8, 8)
    a = run(optimal_eps, cond, steps=20, generator=torch.Generator().manual_seed(5))[0]
    b = run(optimal_eps, cond, steps=20, generator=torch.Generator().manual_seed(5))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_one_chain_reads_its_noise_from_randn_and_starts_at_x_T():
    """A sampler is one chain: x_T in, x_0 out, every fresh draw from ``randn`` (T - 1 of them
    for Alg. 2, none for the deterministic samplers)."""
    g = torch.Generator().manual_seed(3)
    x_T, cond = torch.randn(2, 1, 4, 4, generator=g), None
    draws = []

    def randn():
        draws.append(1)
        return torch.zeros(2, 1, 4, 4)

    ddpm_sample(optimal_eps, x_T, cond, steps=30, randn=randn)
    assert len(draws) == 29
    for sampler in (ddim_sample, dpm_solver_pp_sample):
        draws.clear()
        a = sampler(optimal_eps, x_T, cond, steps=10, randn=randn)
        assert not draws and torch.equal(a, sampler(optimal_eps, x_T.clone(), cond, steps=10))
    noise = round_noise(
        (2, 1, 4, 4), 3, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], None
    )()
    torch.testing.assert_close(
        noise[2:4], torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    )


def test_fast_samplers_map_noise_to_the_data_law():
    # with the exact predictor, the deterministic probability-flow samplers transport N(0, 1)
    # to N(MU, S^2) as the step count grows; the second-order solver gets there sooner
    cond = torch.zeros(1, 1, 100, 100)

    def error(sampler, steps):
        out, _ = run(
            optimal_eps,
            cond,
            steps=steps,
            sampler=sampler,
            generator=torch.Generator().manual_seed(0),
        )
        assert out.mean().item() == pytest.approx(MU, abs=0.02)
        return abs(out.std().item() - S)

    assert error("ddim", 200) < 0.02 and error("dpm++", 50) < 0.01
    assert error("ddim", 20) > error("ddim", 50) > error("ddim", 200)
    assert error("dpm++", 20) < error("ddim", 20)
