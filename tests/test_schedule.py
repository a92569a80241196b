"""The schedule against Alg. 1 and Eq. 4 written out independently (numpy / linspace)."""

import numpy as np
import pytest
import torch

from diffcmr_core.method.schedule import (
    base_alphas_cumprod,
    diffusion_loss,
    eps_from_output,
    linear_betas,
    loss_weights,
    q_sample,
    respaced_timesteps,
)


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


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_model_outputs_are_read_back_as_the_noise(prediction):
    """Whatever the network predicts (eps, x0 or v = sqrt(abar) eps - sqrt(1 - abar) x0, each
    written from Eq. 4 with abar from linspace), the schedule turns it into the noise."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 16, 16, generator=g), torch.randn(4, 1, 16, 16, generator=g)
    t = torch.tensor([3, 250, 600, 990])
    a = (
        torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64), 0)[t]
        .float()
        .view(-1, 1, 1, 1)
    )
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    output = {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[prediction]
    torch.testing.assert_close(
        eps_from_output(output, x_t, t, prediction), eps, atol=2e-3, rtol=1e-3
    )
    with pytest.raises(ValueError, match="prediction"):
        eps_from_output(output, x_t, t, "score")


def test_v_weighting_is_noise_error_plus_clean_image_error():
    """Eq. 5 weighted by 1 / abar_t equals the MSE on v and the eps error plus the x0 error."""
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 250, 600, 999])
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    x_t = q_sample(x0, t, noise)
    eps_pred = noise + 0.1 * torch.randn(4, 1, 8, 8, generator=g)
    a = base_alphas_cumprod()[t].float().view(-1, 1, 1, 1)
    x0_pred = (x_t - (1 - a).sqrt() * eps_pred) / a.sqrt()
    v_true = a.sqrt() * noise - (1 - a).sqrt() * x0
    v_pred = a.sqrt() * eps_pred - (1 - a).sqrt() * x0_pred
    weighted = diffusion_loss(eps_pred, noise, loss_weights(t, "v"), reduction="mean")
    per = lambda u, w: ((u - w) ** 2).flatten(1).mean(1)  # noqa: E731
    assert weighted.item() == pytest.approx(per(v_pred, v_true).mean().item(), rel=1e-3)
    assert weighted.item() == pytest.approx(
        (per(eps_pred, noise) + per(x0_pred, x0)).mean().item(), rel=1e-3
    )
    # the unweighted loss is Eq. 5, and at t = 1000 it hardly sees the clean-image error
    assert loss_weights(t, "eps") is None
    assert diffusion_loss(eps_pred, noise, reduction="mean").item() == pytest.approx(
        per(eps_pred, noise).mean().item()
    )
    assert loss_weights(t, "v")[-1].item() > 1e4
    with pytest.raises(ValueError, match="loss weighting"):
        loss_weights(t, "snr")


def test_default_loss_is_the_per_sample_squared_norm_averaged_over_the_batch():
    """Eq. 5's ||eps - eps_theta||^2 per sample (the public code's ``sum`` term), then the batch
    mean; against numpy."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    expected = np.mean([np.sum((a[i].numpy() - b[i].numpy()) ** 2) for i in range(4)])
    assert diffusion_loss(a, b).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        diffusion_loss(a, b, reduction="median")
