import dataclasses

import numpy as np
import pytest

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import crop_roi, effective_acceleration, equispaced_mask, ifft2c
from diffcmr_core.data.phantom import (
    PhantomConfig,
    anatomy,
    body_extent,
    draw_case,
    load_truth,
    make_phantom,
    matrix,
    simulate,
    simulate_file,
    truth_path,
)
from diffcmr_core.data.phantom.anatomy import volume_curve
from diffcmr_core.data.phantom.coils import cardiac_array, loop_field, noise_covariance
from diffcmr_core.data.phantom.simulation import _slice_maps, _views, subject_noise
from diffcmr_core.study.experiments import calibration
from tests.conftest import TINY


def test_deterministic_and_cases_differ():
    a, _ = simulate_file(TINY, 0, "cine_sax", "MultiCoil")
    b, _ = simulate_file(TINY, 0, "cine_sax", "MultiCoil")
    c, _ = simulate_file(TINY, 1, "cine_sax", "MultiCoil")
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.allclose(a, c)
    # a case does not depend on how many cases are generated
    d, _ = simulate_file(
        PhantomConfig(**{**TINY.__dict__, "n_cases": 7}), 0, "cine_sax", "MultiCoil"
    )
    np.testing.assert_array_equal(a, d)


def test_masks_keep_24_central_lines_and_spacing():
    for ny in (64, 100, 204, 246):
        for acc in (4, 8, 10):
            m = equispaced_mask(ny, 32, acc)
            lines = m[:, 0]
            assert lines[ny // 2 - 12 : ny // 2 + 12].all()
            assert (m == lines[:, None]).all()
            outer = np.flatnonzero(lines[: ny // 2 - 12])
            assert np.all(np.diff(outer) == acc)


def test_tree_layout_and_undersampling_is_exact(tiny_root):
    case = tiny_root / "MultiCoil" / "Mapping" / "TrainingSet"
    full = io.load_kspace(case / "FullSample/P001/T1map.mat", "kspace_full")
    sub = io.load_kspace(case / "AccFactor08/P001/T1map.mat", "kspace_sub08")
    mask = io.load_mask(case / "AccFactor08/P001/T1map_mask.mat", "mask08")
    np.testing.assert_array_equal(sub, full * mask)
    t, kz, kc, ky, kx = full.shape
    assert (t, kz, kc) == (9, TINY.mapping_slices, TINY.n_coils) and kx == 2 * round(
        384 / TINY.pixel_mm
    )
    times = io.load_times(case / "AccFactor08/P001/T1map.csv")
    assert len(times) == 9 and np.all(np.diff(times) > 0)
    single = io.load_kspace(
        tiny_root / "SingleCoil/Cine/TrainingSet/FullSample/P003/cine_sax.mat", "kspace_single_full"
    )
    assert single.ndim == 4 and 1e-5 < np.abs(single).max() < 1e-1


def test_loop_field_matches_numerical_biot_savart():
    """The closed form (elliptic integrals) against summing dl x r / |r|^3 over the wire."""
    centre, normal, radius = np.array([10.0, -5.0, 3.0]), np.array([0.3, -1.0, 0.2]), 40.0
    normal = normal / np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0, 0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    phi = np.linspace(0, 2 * np.pi, 20001)[:-1]
    wire = centre + radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)
    dl = radius * (-np.sin(phi)[:, None] * u + np.cos(phi)[:, None] * v) * (2 * np.pi / len(phi))
    points = np.array(
        [[10.0, -5.0, 3.0], [60.0, 30.0, -20.0], [0.0, 80.0, 10.0], [25.0, -40.0, 30.0]]
    )
    for p in points:
        r = p - wire
        numeric = np.cross(dl, r) / np.linalg.norm(r, axis=1)[:, None] ** 3
        numeric = numeric.sum(0) / 4.0  # mu0 I / (4 pi) in units of mu0 I / pi
        closed = loop_field(p[None], centre, normal, radius)[0]
        np.testing.assert_allclose(closed, numeric, rtol=1e-5, atol=1e-9)


def test_loop_field_is_bounded_at_the_conductor():
    """Closer to the wire than the conductor's half-width the field is the one at that distance
    (a line current's would diverge there); farther away it is the line current's."""
    centre, normal, radius = np.zeros(3), np.array([0.0, 0.0, 1.0]), 75.0
    near = np.array([[radius + d, 0.0, 0.0] for d in (0.5, 2.0, 5.0)])
    b = np.linalg.norm(loop_field(near, centre, normal, radius, conductor=5.0), axis=1)
    np.testing.assert_allclose(b[:2], b[2], rtol=0.05)
    line = np.linalg.norm(loop_field(near, centre, normal, radius, conductor=1e-6), axis=1)
    assert line[0] > 5 * b[0]  # the line current's field near the wire: ~1 / distance
    far = np.array([[0.0, 0.0, 50.0], [radius + 20.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        loop_field(far, centre, normal, radius, conductor=5.0),
        loop_field(far, centre, normal, radius, conductor=1e-6),
    )


def _bloch_bssfp(theta: float, t1: float = 1950.0, t2: float = 220.0) -> complex:
    """Balanced SSFP by a Bloch simulation: alternating +-45 degree pulses about x every 3 ms,
    free precession by ``theta`` per TR with relaxation, the signal at TR / 2 of the steady
    state, demodulated from the RF's alternation."""
    e1, e2 = np.exp(-1.5 / t1), np.exp(-1.5 / t2)
    a = np.deg2rad(45.0)
    m = np.array([0.0, 0.0, 1.0])
    for k in range(4000):
        c, s = np.cos(a * (-1) ** k), np.sin(a * (-1) ** k)
        m = np.array([m[0], c * m[1] - s * m[2], s * m[1] + c * m[2]])
        for _ in range(2):  # two halves of the TR; the echo between them
            c, s = np.cos(theta / 2), np.sin(theta / 2)
            m = np.array(
                [(c * m[0] - s * m[1]) * e2, (s * m[0] + c * m[1]) * e2, m[2] * e1 + 1 - e1]
            )
            if _ == 0:
                echo = (m[0] + 1j * m[1]) * (-1) ** k
    return echo


def test_bssfp_response_follows_a_bloch_simulation():
    """The off-resonance response's phase at TE = TR / 2 against a Bloch simulation: constant
    within a pass band, flipped by pi in the next one, and its magnitude falling at the dark
    band (theta = pi)."""
    from diffcmr_core.data.phantom.simulation import BSSFP, bssfp_response

    on = _bloch_bssfp(0.0)
    for theta in (0.3, -0.6, 0.5 * np.pi, 1.4 * np.pi, -1.6 * np.pi, 2.3 * np.pi):
        df = theta / (2 * np.pi) / (BSSFP["tr"] / 1000.0)
        model = bssfp_response(np.array([df]))[0]
        sim = _bloch_bssfp(theta) / on
        assert np.angle(sim * np.conj(model)) == pytest.approx(0.0, abs=0.05), theta
    dark = abs(_bloch_bssfp(np.pi) / on)
    assert dark < 0.05 and abs(bssfp_response(np.array([1 / 6e-3]))[0]) < 0.2


def test_fat_response_sums_the_six_peaks():
    """Fat's cine response: the six peaks' amplitudes, each with its band's sign (+1 in water's
    pass band, -1 in the next) and the dark-band dip, computed here by hand; on resonance fat
    is opposite to water with about 0.8 of a single peak's magnitude."""
    from diffcmr_core.data.phantom.simulation import (
        BSSFP,
        FAT_PEAK_AMPLITUDES,
        FAT_PEAKS_PPM,
        fat_response,
    )

    turns = np.array(FAT_PEAKS_PPM) * 1e-6 * 42.577e6 * 3.0 * BSSFP["tr"] / 1000.0
    sign = np.where(np.abs(turns) < 0.5, 1.0, -1.0)  # all six within one band of water
    to_dark = np.pi - 2 * np.pi * np.abs(np.abs(turns) - (np.abs(turns) >= 0.5))
    dip = 1.0 - 0.85 * np.exp(-((to_dark / 0.35) ** 2))
    by_hand = (np.array(FAT_PEAK_AMPLITUDES) * dip * sign).sum()
    got = fat_response(np.array([0.0]))[0]
    assert got == pytest.approx(by_hand, rel=1e-9, abs=1e-12)
    assert -0.9 < got.real < -0.7 and got.imag == 0


def test_noise_covariance_is_the_configured_one():
    """Noise-only acquisition: the measured coil covariance equals the model's."""
    cfg = PhantomConfig(pixel_mm=6.0, n_coils=10, cine_frames=4, sax_slices=4)
    body = draw_case(cfg, 0)
    rng = np.random.default_rng([cfg.seed, 0, 0, 3])  # the T2map's draws, in order
    views = _views(body, "T2map", cfg.mapping_slices, rng)
    matrix(cfg, "T2map", max(body_extent(body, v)[0] for v in views), rng)
    array = cardiac_array(body.torso, gap=cfg.coil_gap_mm, radius=cfg.coil_radius_mm)
    expected = noise_covariance(array, rng)
    k, _ = simulate_file(cfg, 0, "T2map", "MultiCoil")
    clean, _ = simulate_file(dataclasses.replace(cfg, noise=0.0), 0, "T2map", "MultiCoil")
    img, img0 = ifft2c(k), ifft2c(clean)  # (w, kz, kc, y, x)
    air = (np.abs(img0) < 1e-6 * np.abs(img0).max()).all(2)  # no signal in any coil
    noise = img.transpose(2, 0, 1, 3, 4)[:, air]  # (kc, n)
    assert noise.shape[1] > 5000
    measured = noise @ noise.conj().T / noise.shape[1]
    noise = subject_noise(cfg, body, array, 0)
    sigma2 = (noise * (1.5 / cfg.pixel_mm) ** 2 * cfg.scale) ** 2
    np.testing.assert_allclose(measured.real / sigma2, expected, atol=0.06)


def test_myocardial_snr_is_the_drawn_one():
    """The SNR a reader measures: on the multi-coil RSS image of a mid short-axis slice, the
    mean interior myocardium over the standard deviation of the noise there (noisy minus
    noise-free image), against the value drawn for the subject in the septum (the whole
    myocardium's coil sensitivity differs from the septum's: measured 0.87-1.34 x on cases
    0-5). The noise before it (a fixed 0.03) gave 6-10, a third of the measured cine SNR."""
    cfg = PhantomConfig(cine_frames=2, sax_slices=3, lax_slices=1, mapping_slices=1)
    for index in (0, 1):
        noisy = simulate(cfg, index, "cine_sax")
        clean = simulate(dataclasses.replace(cfg, noise=0.0), index, "cine_sax")
        rss = [np.sqrt((np.abs(ifft2c(x.kspace["MultiCoil"][:, 1:2])) ** 2).sum(2))
               for x in (noisy, clean)]  # fmt: skip
        myo = calibration.interior(noisy.truth["label"][:, 1:2], "myocardium")
        snr = rss[1][myo].mean() / (rss[0] - rss[1])[myo].std()
        drawn = np.random.default_rng([cfg.seed, 0, index, 100]).uniform(*cfg.myocardial_snr)
        assert 0.75 * drawn < snr < 1.5 * drawn


def test_truth_and_validation_set(tmp_path):
    cfg = PhantomConfig(
        n_cases=1,
        n_val_cases=1,
        pixel_mm=3.0,
        acs_lines=6,
        n_coils=4,
        cine_frames=2,
        sax_slices=2,
        lax_slices=1,
        mapping_slices=2,
    )
    root = make_phantom(tmp_path, cfg, progress=False)
    val = root / "MultiCoil" / "Cine" / "ValidationSet"
    assert sorted(p.name for p in val.iterdir()) == ["AccFactor04", "AccFactor08", "AccFactor10"]
    truth = load_truth(truth_path(root, "TrainingSet", "P001", "T1map"))
    k = io.load_kspace(
        root / "MultiCoil/Mapping/TrainingSet/FullSample/P001/T1map.mat", "kspace_full"
    )
    assert truth["t1"].shape == (2,) + k.shape[-2:]
    names = list(truth["label_names"])
    myo = truth["label"] == names.index("myocardium")
    assert myo.sum() > 10
    tissues = draw_case(cfg, 0).tissues
    # labels and T1 agree (edges of a 3-pixel wall mix with blood and fat, hence 8 %)
    for name in ("myocardium", "blood", "liver"):
        where = truth["label"] == names.index(name)
        if where.sum() > 10:
            assert np.median(truth["t1"][where]) == pytest.approx(tissues[name][1], rel=0.08), name
    assert (root / "Truth/ValidationSet/P001/T2map.npz").is_file()
    # cine: every frame's labels on the acquired grid, and the contrast a reader sees
    sax = io.load_kspace(
        root / "MultiCoil/Cine/TrainingSet/FullSample/P001/cine_sax.mat", "kspace_full"
    )
    cine = load_truth(truth_path(root, "TrainingSet", "P001", "cine_sax"))
    assert cine["label"].shape == sax.shape[:2] + sax.shape[3:] and "times" not in cine
    assert list(cine["label_names"]) == names
    got = calibration.cine_contrast(sax, cine["label"])
    # independently: numpy's FFT with its own centring, RSS, the labels' means (blood and
    # myocardium: pixels whose 3 x 3 neighbourhood is the tissue, by shifted comparisons)
    rss = np.sqrt(
        (np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(sax, (-2, -1))), (-2, -1))) ** 2).sum(
            2
        )
    ) * np.sqrt(sax.shape[-1] * sax.shape[-2])

    def inner(name):
        where = np.pad(cine["label"] == names.index(name), [(0, 0), (0, 0), (1, 1), (1, 1)])
        ny, nx = where.shape[-2:]
        out = np.ones(where.shape[:2] + (ny - 2, nx - 2), bool)
        for dy in range(3):
            for dx in range(3):
                out &= where[..., dy : dy + ny - 2, dx : dx + nx - 2]
        return out

    blood = rss[inner("blood")].mean()
    myo = rss[inner("myocardium")].mean()
    fat = np.percentile(rss[cine["label"] == names.index("fat")], 99)
    assert got["blood_over_myocardium"] == pytest.approx(blood / myo, rel=1e-4)
    assert got["max_over_blood"] == pytest.approx(rss.max() / blood, rel=1e-4)
    assert got["fat_p99_over_blood"] == pytest.approx(fat / blood, rel=1e-4)
    assert got["blood_over_myocardium"] > 1.0  # bright blood: bSSFP with inflow
    with pytest.raises(ValueError, match="do not fit"):
        calibration.cine_contrast(sax, cine["label"][:, :1])


def test_lv_contracts_with_the_ejection_fraction():
    """The LV cavity (truth labels in a mid short-axis slice) shrinks into systole by about the
    ejection fraction's share of area, and the volume curve peaks at end-systole."""
    cfg = PhantomConfig(pixel_mm=1.5)
    body = draw_case(cfg, 0)
    view = _views(body, "cine_sax", 5, np.random.default_rng(0))[2]
    c = volume_curve(np.linspace(0, 1, 12, endpoint=False), body.systole)
    es = int(np.argmax(c))
    assert 2 <= es <= 6 and c[0] == pytest.approx(0.0, abs=1e-9)
    maps, _ = _slice_maps(body, view, (200, 512), 1.5, np.array([0.0, 1.0]))
    blood = [(m[4] > 0.5) & (m[3] == anatomy.LABEL["blood"]) for m in maps]
    lv = [b[60:140, 196:316].sum() for b in blood]  # around the LV at the image centre
    assert lv[1] < lv[0] * (1 - 0.5 * body.ef)


def test_quick_profile_heart_is_visible_and_masks_match_the_real_sampling():
    """Quick profile: the LV blood pool at end-diastole is at least 8 pixels across in the
    network's images (32 x 32), and the effective accelerations are close to the real data's
    3.0 / 4.4 / 4.9."""
    from skimage.transform import resize

    from diffcmr_core.study.settings.profiles import get_profile

    prof = get_profile("quick")
    cfg, pre = prof.phantom, prof.preprocess
    body = draw_case(cfg, 0)
    rng = np.random.default_rng([cfg.seed, 0, 0, 0])
    views = _views(body, "cine_sax", cfg.sax_slices, rng)
    ny, nx = matrix(cfg, "cine_sax", max(body_extent(body, v)[0] for v in views), rng)
    maps, _ = _slice_maps(body, views[1], (ny, nx), cfg.pixel_mm, np.array([0.0]))
    blood = ((maps[0][3] == anatomy.LABEL["blood"]) & (maps[0][4] > 0.5)).astype(np.float32)
    # the same geometry as the images: pad (ky) to pad_to, crop the roi, resize (scikit-image)
    rows = (
        np.interp(np.linspace(0, ny - 1, pre.pad_to), np.arange(ny), np.arange(ny))
        .round()
        .astype(int)
    )
    grid = blood[rows][:, : pre.pad_to] if nx >= pre.pad_to else blood[rows]
    roi = crop_roi(grid, pre.roi)
    small = resize(roi, (pre.size, pre.size), order=1, anti_aliasing=True)
    q = pre.size // 4
    centre = small[q:-q, q:-q] > 0.5
    widest = max(centre.sum(0).max(), centre.sum(1).max())
    assert widest >= 8
    eff = [
        effective_acceleration(n, acc, cfg.acs_lines) for n in (86, 100, 114) for acc in (4, 8, 10)
    ]
    eff = np.array(eff).reshape(3, 3).mean(0)
    np.testing.assert_allclose(eff, [3.0, 4.4, 4.9], rtol=0.08)


def _rss(k):
    img = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    return np.sqrt((np.abs(img) ** 2).sum(-3))


def test_t1_contrast():
    cfg = PhantomConfig(pixel_mm=6.0, n_coils=4, mapping_slices=2)
    t1, times = simulate_file(cfg, 0, "T1map", "MultiCoil")
    img = _rss(t1)[:, 0]
    # tissue with T1 ~1200 ms nulls near TI = T1* ln(1.9) ~ 850 ms: early images darker than late
    assert img[0].mean() < img[-1].mean()
    assert len(times) == 9


def test_cli_writes_a_real_size_tree_with_validation_set_and_truth(tmp_path):
    """``python -m diffcmr_core phantom OUT --profile paper --cases 1 --frames 1 --slices 1``:
    the challenge's matrix sizes (512 / 448 read-out samples), both coil types and sets."""
    import subprocess
    import sys

    out = tmp_path / "tree"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcmr_core",
            "phantom",
            str(out),
            "--profile",
            "paper",
            "--cases",
            "1",
            "--val-cases",
            "1",
            "--frames",
            "1",
            "--slices",
            "1",
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    sax = io.load_kspace(
        out / "MultiCoil/Cine/TrainingSet/FullSample/P001/cine_sax.mat", "kspace_full"
    )
    lax = io.kspace_shape(
        out / "SingleCoil/Cine/TrainingSet/FullSample/P001/cine_lax.mat", "kspace_single_full"
    )
    assert sax.shape[:3] == (1, 1, 10) and sax.shape[-1] == 512 and 162 <= sax.shape[-2] <= 246
    assert lax[-1] == 448 and 168 <= lax[-2] <= 204 and len(lax) == 4
    t1 = io.kspace_shape(
        out / "MultiCoil/Mapping/ValidationSet/AccFactor10/P001/T1map.mat", "kspace_sub10"
    )
    assert t1[0] == 9
    assert not (out / "MultiCoil/Mapping/ValidationSet/FullSample").exists()
    assert (out / "Truth/TrainingSet/P001/T1map.npz").is_file()
    # the real data's scale: values of order 1e-3, never a fixed one
    assert 1e-5 < np.abs(sax).max() < 1e-1


def test_calibration_is_per_subject_on_the_evaluated_subjects():
    """The calibration table: a row per subject, task and factor, then ``all`` over every slice
    (its NMSE the slice-weighted mean of the subjects'), the ratio to the paper's, the findings'
    counts; each profile's evaluated subjects are its validation cases (the last ones)."""
    from diffcmr_core.study.settings.paper import TABLE2_3
    from diffcmr_core.study.settings.profiles import get_profile
    from tests.conftest import TINY

    cfg = dataclasses.replace(TINY, cine_frames=1, sax_slices=1, lax_slices=1, mapping_slices=1)
    rows = calibration.raw_table(cfg, [0, 2], pad_to=128, size=32, progress=False)
    per = [r for r in rows if r["subject"] != "all"]
    assert {r["subject"] for r in per} == {"P001", "P003"} and len(per) == 2 * 2 * 3
    for task in ("cine", "mapping"):
        for acc in (4, 8, 10):
            cell = [r for r in per if (r["task"], r["acc"]) == (task, acc)]
            (both,) = [r for r in rows if (r["subject"], r["task"], r["acc"]) == ("all", task, acc)]
            n = sum(r["slices"] for r in cell)
            assert both["slices"] == n
            mean = sum(r["nmse"] * r["slices"] for r in cell) / n
            assert both["nmse"] == pytest.approx(mean, rel=1e-9)
            paper = TABLE2_3[task]["RAW"][acc][2]
            assert both["nmse_ratio"] == pytest.approx(both["nmse"] / paper, rel=1e-9)
            assert both["nmse_ok"] == (1 / 1.5 <= both["nmse"] / paper <= 1.5)
    text = calibration.findings(rows)
    assert "P001, P003" in text and f"{sum(bool(r['nmse_ok']) for r in per)} of 12" in text
    assert calibration.evaluated_cases(get_profile("quick")) == [5]  # P006 of P001-P006
    assert calibration.evaluated_cases(get_profile("paper")) == list(range(110, 120))


def test_cine_snr_recovers_a_known_snr():
    """``calibration.cine_snr`` on a made-up file with a known answer: one coil, myocardium 1
    and blood 3 with complex noise of 0.01 per component (SNR 100, CNR 200 in closed form)."""
    from diffcmr_core.data.kspace import fft2c

    rng = np.random.default_rng(0)
    label = np.zeros((2, 1, 64, 64), np.uint8)
    label[..., 8:56, 4:30] = anatomy.LABEL["myocardium"]
    label[..., 8:56, 34:60] = anatomy.LABEL["blood"]
    image = np.where(label == anatomy.LABEL["blood"], 3.0, 0.0) + (
        label == anatomy.LABEL["myocardium"]
    )
    noise = 0.01 * (rng.standard_normal(image.shape) + 1j * rng.standard_normal(image.shape))
    clean, noisy = (fft2c(x[:, :, None]) for x in (image + 0j, image + noise))
    got = calibration.cine_snr(noisy, clean, label)
    assert got["myocardial_snr"] == pytest.approx(100, rel=0.05)
    assert got["blood_myocardium_cnr"] == pytest.approx(200, rel=0.05)


def test_coil_compression_keeps_the_leading_subspace():
    """coils.compression against numpy's SVD of the stacked coil images: the same n-dim
    subspace (equal projectors), orthonormal columns; compressing data of rank n loses
    nothing of its root sum of squares."""
    from diffcmr_core.data.phantom.coils import compression

    rng = np.random.default_rng(3)
    mixing = rng.standard_normal((12, 4)) + 1j * rng.standard_normal((12, 4))
    sources = rng.standard_normal((3, 4, 9, 11)) + 1j * rng.standard_normal((3, 4, 9, 11))
    images = np.einsum("cs,zsyx->zcyx", mixing, sources)  # 3 slices of 12 coils, rank 4
    images += 0.01 * rng.standard_normal(images.shape)
    a = compression(iter(images), 4)
    u = np.linalg.svd(np.moveaxis(images, 1, 0).reshape(12, -1), full_matrices=False)[0][:, :4]
    np.testing.assert_allclose(a @ a.conj().T, u @ u.conj().T, atol=1e-10)
    np.testing.assert_allclose(a.conj().T @ a, np.eye(4), atol=1e-12)
    virtual = np.einsum("cv,zcyx->zvyx", a.conj(), images)
    rss = lambda x: np.sqrt((np.abs(x) ** 2).sum(1))  # noqa: E731
    np.testing.assert_allclose(rss(virtual), rss(images), rtol=2e-3)


def test_compressed_noise_has_the_mixed_covariance():
    """A noise-only acquisition through a coil compression: the virtual channels' measured
    covariance equals mix^H C mix, with C the physical array's (drawn from the same rng)."""
    from diffcmr_core.data.phantom.coils import dense_array
    from diffcmr_core.data.phantom.simulation import _acquire

    cfg = PhantomConfig(pixel_mm=1.5, coils=("MultiCoil",))
    array = dense_array((0.0, 0.0, 160.0, 110.0))
    assert len(array) == 30
    rng = np.random.default_rng(5)
    mix = np.linalg.qr(rng.standard_normal((30, 10)) + 1j * rng.standard_normal((30, 10)))[0]
    shape = (64, 64)
    obj = np.zeros((1, 2) + shape, np.complex64)
    sens = np.zeros((2, 10) + shape, np.complex64)
    out = _acquire(
        cfg, obj, sens, np.ones((2,) + shape, np.complex64), array, np.array([0.0]),
        np.random.default_rng(7), 1.0, mix,
    )  # fmt: skip
    expected = mix.conj().T @ noise_covariance(array, np.random.default_rng(7)) @ mix
    noise = ifft2c(out["MultiCoil"][0]).transpose(1, 0, 2, 3).reshape(10, -1)
    measured = noise @ noise.conj().T / noise.shape[1]
    sigma2 = (1.0 * cfg.scale) ** 2
    np.testing.assert_allclose(measured / sigma2, expected, atol=0.03)


def test_dense_array_compressed_to_ten_channels():
    """The dense-30 array compressed to 10 channels: the files keep 10 channels, and the
    virtual coils' root sum of squares is at most the 30 physical coils' and keeps most of it
    over the heart (blood and myocardium; measured 95.6 % here: the compression follows the
    energy, most of it in the tissue near the coils, not the deep heart)."""
    cfg = PhantomConfig(
        pixel_mm=3.0, cine_frames=1, sax_slices=2, coils=("MultiCoil",), noise=0.0,
        coil_array="dense-30",
    )  # fmt: skip
    ten = simulate(cfg, 0, "cine_sax")
    thirty = simulate(dataclasses.replace(cfg, n_coils=30), 0, "cine_sax")
    assert ten.kspace["MultiCoil"].shape[2] == 10 and thirty.kspace["MultiCoil"].shape[2] == 30
    rss = [np.sqrt((np.abs(ifft2c(s.kspace["MultiCoil"])) ** 2).sum(2)) for s in (ten, thirty)]
    assert (rss[0] <= rss[1] * (1 + 1e-4) + 1e-9).all()
    label = ten.truth["label"]
    heart = np.isin(label, [anatomy_label("blood"), anatomy_label("myocardium")])
    assert 0.93 < rss[0][heart].sum() / rss[1][heart].sum() < 1.0
    with pytest.raises(ValueError, match="coil_array"):
        PhantomConfig(coil_array="dense-31")


def anatomy_label(name: str) -> int:
    from diffcmr_core.data.phantom.anatomy import LABEL

    return LABEL[name]
