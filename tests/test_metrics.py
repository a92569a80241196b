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


def test_region_metrics_score_the_crop_as_the_challenge_scores_its_crop():
    """Inside a box: both images cropped, each over its own maximum, then scikit-image's PSNR and
    SSIM (data_range = the crop's gt maximum) and NMSE, computed here directly; a box narrower
    than SSIM's 7-pixel window is widened to 7 about its centre."""
    from diffcmr_core.method.metrics import region_metrics

    rng = np.random.default_rng(3)
    gt = rng.random((32, 32)) + 0.1
    pred = gt + 0.05 * rng.standard_normal((32, 32))
    pred[0, 0] = 50.0  # outside the box: no effect on its scores
    got = region_metrics(gt, pred, (8, 20, 5, 25))
    g, p = gt[8:20, 5:25], pred[8:20, 5:25]
    g, p = g / g.max(), p / p.max()
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=g.max()))
    assert got["ssim"] == pytest.approx(structural_similarity(g, p, data_range=g.max()))
    assert got["nmse"] == pytest.approx(np.sum((g - p) ** 2) / np.sum(g**2))
    narrow = region_metrics(gt, pred, (30, 32, 10, 14))  # 2 x 4 -> rows 25-32, columns 8-15
    g, p = gt[25:32, 8:15], pred[25:32, 8:15]
    g, p = g / g.max(), p / p.max()
    assert narrow["ssim"] == pytest.approx(structural_similarity(g, p, data_range=g.max()))
    with pytest.raises(ValueError, match="does not fit"):
        region_metrics(gt, pred, (10, 40, 0, 5))


def test_evaluate_adds_the_heart_region_where_it_is_known(tmp_path):
    from diffcmr_core.method.evaluate import evaluate
    from diffcmr_core.method.metrics import region_metrics
    from diffcmr_core.tables import read_csv

    rng = np.random.default_rng(4)
    tgt = rng.random((3, 16, 16)).astype(np.float32) + 0.1
    rec = tgt + 0.05 * rng.standard_normal(tgt.shape).astype(np.float32)
    meta = {"index": np.arange(3), "case": np.array(["P001"] * 3)}
    boxes = np.array([[2, 12, 3, 14], [-1, -1, -1, -1], [0, 16, 0, 16]])
    summary = evaluate("m", rec, tgt, meta, tmp_path, boxes=boxes)
    rows = read_csv(tmp_path / "m_slices.csv")
    assert rows[1]["heart_psnr"] == "nan"
    first = region_metrics(tgt[0], rec[0], boxes[0])["psnr"]
    assert float(rows[0]["heart_psnr"]) == pytest.approx(first)
    whole = float(rows[2]["psnr"])
    assert float(rows[2]["heart_psnr"]) == pytest.approx(whole)  # the whole image as region
    assert summary["heart_psnr"] == pytest.approx((first + whole) / 2)
    assert "heart_psnr" not in evaluate("n", rec, tgt, meta, tmp_path, write=False)
