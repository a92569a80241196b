import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from diffcmr_core.method.metrics import all_metrics, nmse, psnr, ssim


def test_metrics_follow_the_challenge_rules():
    rng = np.random.default_rng(0)
    gt = rng.random((40, 40)) * 3e-3
    pred = gt + rng.normal(0, 2e-4, gt.shape)
    g, p = gt / gt.max(), pred / pred.max()
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(1.0 / np.mean((g - p) ** 2)))
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(g, p, data_range=1.0))
    assert ssim(gt, pred) == pytest.approx(structural_similarity(g, p, data_range=1.0, win_size=7))
    assert nmse(gt, pred) == pytest.approx(np.sum((g - p) ** 2) / np.sum(g**2))


def test_metrics_are_scale_invariant_and_perfect_on_equal_images():
    rng = np.random.default_rng(1)
    gt, pred = rng.random((32, 32)), rng.random((32, 32))
    assert all_metrics(gt, pred) == pytest.approx(all_metrics(gt * 1e-3, pred * 7.0))
    assert nmse(gt, gt) == 0 and ssim(gt, gt) == pytest.approx(1.0) and psnr(gt, gt) == np.inf


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="2D images"):
        psnr(np.ones((4, 4)), np.ones((4, 5)))
