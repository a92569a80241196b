"""T1 / T2 fits against the closed-form signal models, scipy's curve_fit, and the phantom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from diffcmr_core import fit_t1, fit_t2

TI = np.array([100.0, 180.0, 260.0, 1100.0, 1180.0, 1260.0, 2100.0, 2180.0, 3100.0])
TE = np.array([0.0, 35.0, 55.0])


def molli_magnitude(t1, b_over_a, a, ti):
    """|A - B exp(-TI / T1*)| with T1* = T1 / (B/A - 1) (the Look-Locker relation)."""
    t1_star = t1 / (b_over_a - 1.0)
    return np.abs(a * (1.0 - b_over_a * np.exp(-ti[:, None] / t1_star)))


@pytest.fixture(scope="module")
def t1_truth():
    rng = np.random.default_rng(1)
    n = 600
    return rng.uniform(250, 2000, n), rng.uniform(1.5, 2.0, n), rng.uniform(0.5, 2.0, n)


def test_t1_ideal_signals(t1_truth):
    t1, ba, a = t1_truth
    fit = fit_t1(molli_magnitude(t1, ba, a, TI), TI, full=True)
    np.testing.assert_allclose(fit["t1"], t1, rtol=1e-4)
    np.testing.assert_allclose(fit["a"], a, rtol=1e-4)
    np.testing.assert_allclose(fit["b"] / fit["a"], ba, rtol=1e-4)
    np.testing.assert_allclose(fit["t1_star"], t1 / (ba - 1), rtol=1e-4)


def test_t1_with_the_null_between_two_inversions():
    # T1* such that the signal crosses zero exactly at an inversion time: both polarities of
    # that point fit; the value is 0 either way
    t1_star = TI[3] / np.log(1.9)
    s = molli_magnitude(np.array([t1_star * 0.9]), 1.9, 1.0, TI)
    assert s[3, 0] < 1e-12
    assert fit_t1(s, TI)[0] == pytest.approx(t1_star * 0.9, rel=1e-4)


def test_t2_ideal_signals():
    rng = np.random.default_rng(2)
    t2, s0 = rng.uniform(25, 300, 500), rng.uniform(0.5, 5, 500)
    fit = fit_t2(s0 * np.exp(-TE[:, None] / t2), TE, full=True)
    np.testing.assert_allclose(fit["t2"], t2, rtol=1e-4)
    np.testing.assert_allclose(fit["s0"], s0, rtol=1e-4)


def _curve_fit_t1(signal):
    """Per pixel: scipy's curve_fit of the 3-parameter model for each polarity restoration
    (the first k points negated, every k), the best residual kept."""
    best = None
    for k in range(len(TI) + 1):
        y = np.where(np.arange(len(TI)) < k, -signal, signal)
        try:
            with np.errstate(over="ignore"):
                p, _ = curve_fit(
                    lambda t, a, b, ts: a - b * np.exp(-t / ts),
                    TI,
                    y,
                    p0=(y[-1], 2 * y[-1], 1000.0),
                    maxfev=4000,
                )
        except RuntimeError:
            continue
        res = ((y - (p[0] - p[1] * np.exp(-TI / p[2]))) ** 2).sum()
        if best is None or res < best[0]:
            best = (res, p[2] * (p[1] / p[0] - 1))
    return best


def test_t1_noisy_is_the_least_squares_fit(t1_truth):
    t1, ba, a = (v[:40] for v in t1_truth)
    rng = np.random.default_rng(3)
    clean = molli_magnitude(t1, ba, a, TI)
    noisy = np.abs(clean + 0.02 * a * rng.standard_normal(clean.shape))
    fit = fit_t1(noisy, TI, full=True)
    for i in range(len(t1)):
        res, t1_ref = _curve_fit_t1(noisy[:, i])
        # ours reaches curve_fit's optimum (or a better one: it searches T1* globally)
        assert fit["residual"][i] <= res * (1 + 1e-4) + 1e-12
        if fit["residual"][i] > res * (1 - 1e-4):
            assert fit["t1"][i] == pytest.approx(t1_ref, rel=1e-3)
    # and the noise (SNR 50) costs a few per cent
    assert np.median(np.abs(fit["t1"] / t1 - 1)) < 0.03


def test_t2_noisy_matches_curve_fit():
    rng = np.random.default_rng(4)
    t2 = rng.uniform(25, 300, 40)
    clean = np.exp(-TE[:, None] / t2)
    noisy = np.abs(clean + 0.01 * rng.standard_normal(clean.shape))
    ours = fit_t2(noisy, TE)
    for i in range(len(t2)):
        p, _ = curve_fit(lambda t, s0, t2_: s0 * np.exp(-t / t2_), TE, noisy[:, i], p0=(1.0, 100.0))
        assert ours[i] == pytest.approx(p[1], rel=1e-3)
    assert np.median(np.abs(ours / t2 - 1)) < 0.05


def test_trailing_shapes_and_background_is_nan():
    t1 = np.full((2, 3, 4), 1200.0)
    s = molli_magnitude(t1.ravel(), 1.9, 1.0, TI).reshape(len(TI), 2, 3, 4)
    s[:, 0, 0, :] = 0.0  # background: no signal
    s[:, 1, 2, 3] = 1e-4  # below 5 % of the peak
    m = fit_t1(s, TI)
    assert m.shape == (2, 3, 4) and m.dtype == np.float32
    assert np.isnan(m[0, 0]).all() and np.isnan(m[1, 2, 3])
    assert np.isfinite(m).sum() == 24 - 5
    np.testing.assert_allclose(m[np.isfinite(m)], 1200.0, rtol=1e-4)
    one = fit_t2(np.exp(-TE / 50.0), TE)
    assert one.shape == () and float(one) == pytest.approx(50.0, rel=1e-4)
    assert np.isnan(fit_t2(np.zeros((3, 5)), TE)).all()


def test_the_phantom_signal_models():
    from diffcmr_core.data.phantom import T1_INVERSION_TIMES, T2_ECHO_TIMES, molli, t2prep

    t1 = np.array([380.0, 1200.0, 1950.0])
    ti = np.array(T1_INVERSION_TIMES)
    s = np.abs(np.stack([molli(np.full(3, 0.8), t1, x) for x in ti]))
    np.testing.assert_allclose(fit_t1(s, ti), t1, rtol=1e-4)
    t2 = np.array([35.0, 45.0, 220.0])
    te = np.array(T2_ECHO_TIMES)
    np.testing.assert_allclose(
        fit_t2(np.stack([t2prep(np.full(3, 0.8), t2, x) for x in te]), te), t2, rtol=1e-4
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fit_t1(np.ones((2, 4)), TI[:2]), "fewer than the model's 3"),
        (lambda: fit_t2(np.ones((1, 4)), TE[:1]), "fewer than the model's 2"),
        (lambda: fit_t1(np.ones((9, 4)), TI[:8]), "8 times but images of shape"),
        (lambda: fit_t1(np.ones((9, 4)), TI[::-1]), "strictly increasing"),
        (lambda: fit_t2(np.ones((3, 4)), [0.0, 35.0, 35.0]), "strictly increasing"),
        (lambda: fit_t2(np.ones((3, 4)), [0.0, np.nan, 55.0]), "finite"),
        (lambda: fit_t2(-np.ones((3, 4)), TE), "cannot be negative"),
        (lambda: fit_t2(np.full((3, 4), np.nan), TE), "NaN or infinite"),
        (lambda: fit_t2(np.ones((3, 4)) * 1j, TE), "complex"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_truth_on_grid_keeps_ms_and_the_fits_recover_the_phantom(tiny_root):
    """The truth brought to an image grid by the preprocessing's geometry stays in ms, and the
    T1 / T2 fitted to the phantom's fully sampled multi-coil images (coils, noise, fat) agree
    with that truth in the blood pool and the myocardium."""
    from diffcmr_core.data import cmrxrecon as io
    from diffcmr_core.data.kspace import kspace_to_image
    from diffcmr_core.data.pairs import PreprocessConfig
    from diffcmr_core.data.phantom import load_truth, truth_path
    from diffcmr_core.study.steps.maps import truth_on_grid

    for name, fit in (("T1map", fit_t1), ("T2map", fit_t2)):
        path = io.file_path(tiny_root, "MultiCoil", "mapping", "P001", name)
        kspace = io.load_kspace(path, io.kspace_key("MultiCoil", None))
        times = io.load_times(
            io.file_path(tiny_root, "MultiCoil", "mapping", "P001", name, kind="times")
        )
        truth = load_truth(truth_path(tiny_root, "TrainingSet", "P001", name))
        pad = max(kspace.shape[-2:])
        pre = PreprocessConfig(pad_to=pad, size=None)
        constant = dict(truth, t1=np.full_like(truth["t1"], 1234.0))
        np.testing.assert_allclose(truth_on_grid(constant, 0, pre)["t1"], 1234.0, rtol=1e-4)
        grid = truth_on_grid(truth, 0, pre)
        images = kspace_to_image(kspace[:, 0], multicoil=True, pad_to=pad, size=None)
        fitted = fit(images, times)
        key = "t1" if name == "T1map" else "t2"
        for region in ("blood", "myo"):
            inside = grid[region] & np.isfinite(fitted)
            assert inside.sum() >= 20, (name, region)
            rel = np.median(np.abs(fitted[inside] / grid[key][inside] - 1))
            assert rel < 0.08, (name, region, rel)


def test_the_fitted_signal_is_the_model_the_fit_matched():
    """A noiseless MOLLI and T2-prep signal, fitted: the fitted curve passes through the
    samples and, between them, follows the closed forms |A - B exp(-t / T1*)| and S0 exp(-t/T2)."""
    from diffcmr_core.method.mapping import fitted_signal

    ti = np.array([120, 200, 280, 1120, 1200, 1280, 2120, 2200, 3120.0])
    t1_star = 1200.0 / 0.9
    img = np.abs(1 - 1.9 * np.exp(-ti / t1_star))[:, None, None] * np.ones((1, 3, 3))
    fine = np.linspace(0, 3500, 50)
    got = fitted_signal(fit_t1(img, ti, full=True), "t1", (1, 1), fine)
    np.testing.assert_allclose(got, np.abs(1 - 1.9 * np.exp(-fine / t1_star)), atol=1e-5)
    te = np.array([0, 35, 55.0])
    img = 2.0 * np.exp(-te / 45.0)[:, None, None] * np.ones((1, 3, 3))
    got = fitted_signal(fit_t2(img, te, full=True), "t2", (0, 2), fine)
    np.testing.assert_allclose(got, 2.0 * np.exp(-fine / 45.0), rtol=1e-5)


def test_clinical_frame_states_errors_in_healthy_between_subject_sds():
    from diffcmr_core.study.steps.maps import HEALTHY_3T, clinical_frame

    text = clinical_frame({(4, "T1"): 190.0, (4, "T2"): 6.0})
    assert f"T1 4x 190 ms = {190 / HEALTHY_3T['T1'][1]:.1f} SD" in text  # 5.0 SD
    assert "T2 4x 6 ms = 2.0 SD" in text
    assert clinical_frame({}) == ""
