import dataclasses

import h5py
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import kspace_to_image
from diffcmr_core.data.pairs import (
    PreprocessConfig,
    build_pairs,
    load_pairs,
    pair_counts,
    pairs_path,
    split_cases,
    split_selection,
    table1,
)
from diffcmr_core.errors import CMRxReconError


def test_split_by_case():
    cases = [f"P{i:03d}" for i in range(1, 121)]
    train, val = split_cases(cases, 10 / 120)
    assert train[-1] == "P110" and val == [f"P{i}" for i in range(111, 121)]
    assert split_cases(["P001", "P002", "P003"], 10 / 120) == (["P001", "P002"], ["P003"])


def test_selection_cases_are_the_first_validation_cases():
    assert split_selection(["P118", "P111", "P112"], 2) == (["P111", "P112"], ["P118"])
    assert split_selection(["P111"], 0) == ([], ["P111"])
    with pytest.raises(CMRxReconError, match="at least one must be left to test"):
        split_selection(["P111", "P112"], 2)


def test_the_selection_subjects_never_enter_the_test_subset(tiny_root, tmp_path):
    """Two validation cases of three: P002 selects, P003 tests; together they are the
    validation split, each slice once; a split leaving no test case is refused before any
    file is written."""
    cfg = PreprocessConfig(pad_to=128, size=32, val_fraction=2 / 3, selection_cases=1)
    path = build_pairs(tiny_root, tmp_path / "a", "cine", cfg, accs=(4,), progress=False)[4]
    sel, test, val = (load_pairs(path, s)[2] for s in ("selection", "val_subset", "val"))
    assert set(sel["case"]) == {"P002"} and set(test["case"]) == {"P003"}
    both = np.concatenate([sel["index"], test["index"]])
    assert sorted(both) == sorted(val["index"]) and len(set(both)) == len(both)
    with h5py.File(path, "r") as f:
        assert f.attrs["selection_cases"] == '["P002"]'
    bad = dataclasses.replace(cfg, selection_cases=2)
    with pytest.raises(CMRxReconError, match="at least one must be left to test"):
        build_pairs(tiny_root, tmp_path / "b", "cine", bad, accs=(4,), progress=False)
    assert not list((tmp_path / "b").glob("*.h5"))


@pytest.fixture(scope="module")
def pairs(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    cfg = PreprocessConfig(pad_to=128, size=32, n_val_subset=5)
    for task in ("cine", "mapping"):
        build_pairs(tiny_root, out, task, cfg, progress=False)
    return out, cfg


def test_pairs_content_counts_and_split(pairs, tiny_root):
    out, cfg = pairs
    rows = table1(pair_counts(out))
    # per case and coil type: cine (2 sax + 1 lax slices) x 3 frames, mapping 9 + 3 weightings
    n_cine, n_map = 2 * (2 + 1) * 3, 2 * (9 + 3) * 1
    assert rows[0]["AccFactor04 Train"] == 2 * n_cine and rows[0]["AccFactor04 Valid"] == n_cine
    assert rows[1]["AccFactor10 Train"] == 2 * n_map and rows[1]["AccFactor10 Valid"] == n_map
    x, y, meta = load_pairs(pairs_path(out, "cine", 4), "val")
    assert set(meta["case"]) == {"P003"} and x.dtype == np.float32
    # one stored pair against a direct computation from the files
    i = np.flatnonzero((meta["coil"] == "MultiCoil") & (meta["file"] == "cine_sax"))[4]
    base = tiny_root / "MultiCoil/Cine/TrainingSet"
    full = io.load_kspace(base / "FullSample/P003/cine_sax.mat")[meta["frame"][i], meta["slice"][i]]
    sub = io.load_kspace(base / "AccFactor04/P003/cine_sax.mat")[meta["frame"][i], meta["slice"][i]]
    ref_in = kspace_to_image(sub, multicoil=True, pad_to=128, size=32)
    ref_gt = kspace_to_image(full, multicoil=True, pad_to=128, size=32)
    scale = ref_in.max()  # normalised by the under-sampled input only
    np.testing.assert_allclose(meta["scale"][i], scale, rtol=1e-5)
    np.testing.assert_allclose(x[i], ref_in / scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[i], ref_gt / scale, rtol=1e-5, atol=1e-6)


def test_validation_subset_is_seeded_shuffle(pairs):
    out, _ = pairs
    with h5py.File(pairs_path(out, "mapping", 8), "r") as f:
        subset, split = f["val_subset"][()], f["meta/split"][()]
    assert len(subset) == 5 and np.all(split[subset] == 1)
    assert not np.all(np.diff(subset) > 0)  # shuffled, not the first five in order
    x, _, meta = load_pairs(pairs_path(out, "mapping", 8), "val_subset", subset=3)
    np.testing.assert_array_equal(meta["index"], subset[:3])


def test_more_acceleration_is_worse(pairs):
    out, _ = pairs
    psnr = {}
    for acc in (4, 10):
        x, y, _ = load_pairs(pairs_path(out, "cine", acc), "train")
        psnr[acc] = np.mean(
            [
                peak_signal_noise_ratio(b / b.max(), a / a.max(), data_range=1.0)
                for a, b in zip(x, y)
            ]
        )
    assert psnr[10] < psnr[4] - 0.5


def test_building_is_idempotent(pairs, tiny_root):
    out, cfg = pairs
    path = pairs_path(out, "cine", 8)
    before = path.stat().st_mtime_ns
    build_pairs(tiny_root, out, "cine", cfg, progress=False)
    assert path.stat().st_mtime_ns == before
    assert not list(out.glob(".*tmp"))


def test_bad_mask_fails_and_keeps_previous_files(tiny_root, tmp_path):
    cfg = PreprocessConfig(pad_to=128, size=32)
    build_pairs(tiny_root, tmp_path, "mapping", cfg, accs=(4,), progress=False)
    before = (tmp_path / "pairs_mapping_acc04.h5").read_bytes()
    mask_path = tiny_root / "SingleCoil/Mapping/TrainingSet/AccFactor04/P002/T2map_mask.mat"
    good = io.load_mask(mask_path)
    io.save_mask(mask_path, "mask04", good[:-2])
    try:
        with pytest.raises(io.CMRxReconError, match=r"T2map_mask\.mat.*does not fit"):
            build_pairs(tiny_root, tmp_path, "mapping", cfg, accs=(4,), progress=False, force=True)
    finally:
        io.save_mask(mask_path, "mask04", good)
    assert (tmp_path / "pairs_mapping_acc04.h5").read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))


def test_public_normalisation_divides_each_image_by_its_own_maximum(tiny_root, tmp_path):
    """``normalise="each"`` (the public code): the target of every pair peaks at exactly 1 and
    equals the fully sampled image over its own maximum; the input is unchanged."""
    cfg = PreprocessConfig(pad_to=128, size=32, normalise="each")
    build_pairs(tiny_root, tmp_path, "mapping", cfg, accs=(4,), progress=False)
    x, y, meta = load_pairs(pairs_path(tmp_path, "mapping", 4), "val")
    np.testing.assert_allclose(y.reshape(len(y), -1).max(1), 1.0, rtol=1e-6)
    assert np.all(x.reshape(len(x), -1).max(1) == pytest.approx(1.0))
    i = np.flatnonzero(meta["file"] == "T1map")[2]
    full = io.load_kspace(
        tiny_root / f"{meta['coil'][i]}/Mapping/TrainingSet/FullSample/P003/T1map.mat"
    )
    ref = kspace_to_image(
        full[meta["frame"][i], meta["slice"][i]],
        multicoil=meta["coil"][i] == "MultiCoil",
        pad_to=128,
        size=32,
    )
    np.testing.assert_allclose(y[i], ref / ref.max(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normalise"):
        PreprocessConfig(normalise="target")
