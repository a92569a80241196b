import numpy as np
import pytest
import torch

from diffcmr_core.diffusion import (base_alphas_cumprod, ddim_sample, ddpm_sample,
                                    dpm_solver_pp_sample, linear_betas, q_sample,
                                    respaced_timesteps)

MU, S = 0.3, 0.5


def optimal_eps(x, t, cond):
    """Closed-form E[eps | x_t] for data x0 ~ N(MU, S^2), independent pixels."""
    a = base_alphas_cumprod()[t].float().view(-1, *[1] * (x.dim() - 1))
    return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S ** 2 + 1 - a)


def test_schedule_end_points():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(2e-2)
    np.testing.assert_allclose(np.diff(b.numpy()), (2e-2 - 1e-4) / 999, rtol=1e-9)
    for steps in (20, 100, 500):
        tau = respaced_timesteps(steps)
        assert tau[0] == 0 and tau[-1] == 999 and len(torch.unique(tau)) == steps
        abar = torch.cumprod(1 - linear_betas(steps), 0)
        # every respaced chain ends where the base chain ends: pure noise
        assert abar[-1].item() == pytest.approx(base_alphas_cumprod()[-1].item(), rel=1e-9)
        assert abar[-1].item() < 1e-4


def test_q_sample_matches_eq4():
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 500, 999])
    a = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64), 0)[t].float()
    expected = a.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a).sqrt().view(-1, 1, 1, 1) * noise
    torch.testing.assert_close(q_sample(x0, t, noise), expected)


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
        k = np.sqrt(1 - a) / (a * S ** 2 + 1 - a)             # eps = k (x - sqrt(a) MU)
        c = beta / np.sqrt(1 - a)
        m = (m - c * k * (m - np.sqrt(a) * MU)) / np.sqrt(alpha)
        v = v * ((1 - c * k) / np.sqrt(alpha)) ** 2 + (beta * (1 - ap) / (1 - a) if i else 0.0)
    return m, v


def test_exact_law_of_the_1000_step_sampler_is_the_data_law():
    m, v = _exact_output_law(1000)
    assert m == pytest.approx(MU, abs=1e-3) and v == pytest.approx(S ** 2, rel=0.02)


@pytest.mark.parametrize("steps", [1000, 100])
def test_ddpm_samples_follow_the_exact_law(steps):
    m, v = _exact_output_law(steps)
    cond = torch.zeros(1, 1, 100, 100)                       # 10 000 independent pixels
    g = torch.Generator().manual_seed(0)
    mean, std = ddpm_sample(optimal_eps, cond, steps=steps, rounds=1, generator=g)
    assert mean.mean().item() == pytest.approx(m, abs=0.02)
    assert mean.var().item() == pytest.approx(v, rel=0.05)
    assert torch.all(std == 0)
    # the ensemble mean of R rounds of independent samples has variance v / R
    mean4, std4 = ddpm_sample(optimal_eps, cond, steps=steps, rounds=4, generator=g)
    assert mean4.var().item() == pytest.approx(v / 4, rel=0.06)
    assert std4.pow(2).mean().item() == pytest.approx(v * 3 / 4, rel=0.06)


def test_rounds_batched_equal_rounds_one_by_one():
    calls = []

    def eps_fn(x, t, cond):
        calls.append(x.shape[0])
        return torch.tanh(x + cond) * 0.5 + optimal_eps(x, t, cond)

    cond = torch.randn(2, 1, 8, 8)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    mean, std = ddpm_sample(eps_fn, cond, steps=50, rounds=3, generator=gens)
    assert set(calls) == {6}                                 # one batched call per step
    singles = torch.stack([ddpm_sample(eps_fn, cond, steps=50, generator=torch.Generator()
                                       .manual_seed(s))[0] for s in (1, 2, 3)])
    torch.testing.assert_close(mean, singles.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, singles.std(0, correction=0), atol=1e-5, rtol=1e-5)


def test_seeded_sampling_is_reproducible():
    cond = torch.zeros(1, 1, 8, 8)
    a = ddpm_sample(optimal_eps, cond, steps=20, generator=torch.Generator().manual_seed(5))[0]
    b = ddpm_sample(optimal_eps, cond, steps=20, generator=torch.Generator().manual_seed(5))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fast_samplers_map_noise_to_the_data_law():
    # with the exact predictor, the deterministic probability-flow samplers transport N(0, 1)
    # to N(MU, S^2) as the step count grows; the second-order solver gets there sooner
    cond = torch.zeros(1, 1, 100, 100)

    def error(sampler, steps):
        out, _ = sampler(optimal_eps, cond, steps=steps, generator=torch.Generator().manual_seed(0))
        assert out.mean().item() == pytest.approx(MU, abs=0.02)
        return abs(out.std().item() - S)

    assert error(ddim_sample, 200) < 0.02 and error(dpm_solver_pp_sample, 50) < 0.01
    assert error(ddim_sample, 20) > error(ddim_sample, 50) > error(ddim_sample, 200)
    assert error(dpm_solver_pp_sample, 20) < error(ddim_sample, 20)


def test_v_weighting_is_noise_error_plus_clean_image_error():
    """Eq. 5 weighted by 1 / abar_t equals the MSE on v and the eps error plus the x0 error."""
    from diffcmr_core.diffusion import diffusion_loss, loss_weights

    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 250, 600, 999])
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    x_t = q_sample(x0, t, noise)
    eps_pred = noise + 0.1 * torch.randn(4, 1, 8, 8, generator=g)
    a = base_alphas_cumprod()[t].float().view(-1, 1, 1, 1)
    x0_pred = (x_t - (1 - a).sqrt() * eps_pred) / a.sqrt()
    v_true = a.sqrt() * noise - (1 - a).sqrt() * x0
    v_pred = a.sqrt() * eps_pred - (1 - a).sqrt() * x0_pred
    weighted = diffusion_loss(eps_pred, noise, loss_weights(t, "v"))
    per = lambda u, w: ((u - w) ** 2).flatten(1).mean(1)  # noqa: E731
    assert weighted.item() == pytest.approx(per(v_pred, v_true).mean().item(), rel=1e-3)
    assert weighted.item() == pytest.approx((per(eps_pred, noise) + per(x0_pred, x0)).mean().item(), rel=1e-3)
    # the unweighted loss is Eq. 5, and at t = 1000 it hardly sees the clean-image error
    assert loss_weights(t, "eps") is None
    assert diffusion_loss(eps_pred, noise).item() == pytest.approx(per(eps_pred, noise).mean().item())
    assert loss_weights(t, "v")[-1].item() > 1e4
    with pytest.raises(ValueError, match="loss weighting"):
        loss_weights(t, "snr")
