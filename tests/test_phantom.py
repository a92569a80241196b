import numpy as np

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.phantom import PhantomConfig, equispaced_mask, simulate_file
from tests.conftest import TINY


def test_deterministic_and_cases_differ():
    a, _ = simulate_file(TINY, 0, "cine_sax", "MultiCoil")
    b, _ = simulate_file(TINY, 0, "cine_sax", "MultiCoil")
    c, _ = simulate_file(TINY, 1, "cine_sax", "MultiCoil")
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.allclose(a, c)
    # a case does not depend on how many cases are generated
    d, _ = simulate_file(PhantomConfig(**{**TINY.__dict__, "n_cases": 7}), 0, "cine_sax", "MultiCoil")
    np.testing.assert_array_equal(a, d)


def test_masks_keep_24_central_lines_and_spacing():
    for ny in (64, 100, 204, 246):
        for acc in (4, 8, 10):
            m = equispaced_mask(ny, 32, acc)
            lines = m[:, 0]
            assert lines[ny // 2 - 12: ny // 2 + 12].all()
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
    assert (t, kz, kc) == (9, TINY.mapping_slices, TINY.n_coils) and kx == 2 * TINY.nx
    times = io.load_times(case / "AccFactor08/P001/T1map.csv")
    assert len(times) == 9 and np.all(np.diff(times) > 0)
    single = io.load_kspace(tiny_root / "SingleCoil/Cine/TrainingSet/FullSample/P003/cine_sax.mat",
                            "kspace_single_full")
    assert single.ndim == 4 and 1e-5 < np.abs(single).max() < 1e-1


def _rss(k):
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(img) ** 2).sum(-3))


def test_cine_contracts_and_t1_contrast():
    cfg = PhantomConfig(n_coils=4, cine_frames=6, sax_slices=2)
    cine, _ = simulate_file(cfg, 0, "cine_sax", "MultiCoil")
    img = _rss(cine)[:, 0]                     # (t, y, x), basal slice
    bright = (img > 0.6 * img.max()).sum((-2, -1))
    assert bright[0] > bright[2] + 40          # blood pool shrinks into systole
    t1, times = simulate_file(cfg, 0, "T1map", "MultiCoil")
    img = _rss(t1)[:, 0]
    # myocardium (T1 ~1200 ms) nulls near TI = 1200 ln 2 ~ 830 ms: early images darker than late
    assert img[0].mean() < img[-1].mean()
    assert len(times) == 9
