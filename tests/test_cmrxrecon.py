import h5py
import hdf5storage
import numpy as np
import pytest
import scipy.io

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.errors import CMRxReconError


def _kspace(shape=(2, 3, 4, 10, 12), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_roundtrip_and_partial_read(tmp_path):
    k = _kspace()
    io.save_kspace(tmp_path / "a.mat", "kspace_full", k)
    np.testing.assert_array_equal(io.load_kspace(tmp_path / "a.mat"), k)
    np.testing.assert_array_equal(
        io.load_kspace(tmp_path / "a.mat", "kspace_full", index=(slice(1, 2), 2)), k[1:2, 2]
    )
    assert io.kspace_shape(tmp_path / "a.mat") == k.shape


def test_written_file_is_matlab_v73(tmp_path):
    k = _kspace((2, 3, 10, 12))
    io.save_kspace(tmp_path / "a.mat", "kspace_single_full", k)
    head = (tmp_path / "a.mat").read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file") and head[126:128] == b"IM"
    with h5py.File(tmp_path / "a.mat", "r") as f:
        assert f.userblock_size == 512
        assert f["kspace_single_full"].attrs["MATLAB_class"] == b"single"
    # hdf5storage reads MATLAB order (kx, ky, kz, t), the reverse of h5py order
    back = hdf5storage.loadmat(str(tmp_path / "a.mat"))["kspace_single_full"]
    np.testing.assert_array_equal(back, k.transpose())
    assert not list(tmp_path.glob(".*tmp"))


def test_hdf5storage_and_scipy_files_read_identically(tmp_path):
    k = _kspace((2, 2, 3, 8, 6))
    matlab_order = k.transpose()  # what MATLAB holds: (kx, ky, kc, kz, t)
    hdf5storage.savemat(
        str(tmp_path / "v73.mat"),
        {"kspace_full": matlab_order},
        format="7.3",
        matlab_compatible=True,
    )
    scipy.io.savemat(tmp_path / "v5.mat", {"kspace_full": matlab_order})
    np.testing.assert_array_equal(io.load_kspace(tmp_path / "v73.mat"), k)
    np.testing.assert_array_equal(io.load_kspace(tmp_path / "v5.mat"), k)

    mask = np.zeros((8, 6), bool)  # (ky, kx)
    mask[::3] = True
    hdf5storage.savemat(
        str(tmp_path / "m73.mat"),
        {"mask04": mask.T.astype(float)},
        format="7.3",
        matlab_compatible=True,
    )
    scipy.io.savemat(tmp_path / "m5.mat", {"mask04": mask.T.astype(float)})
    io.save_mask(tmp_path / "ours.mat", "mask04", mask)
    for name in ("m73.mat", "m5.mat", "ours.mat"):
        np.testing.assert_array_equal(io.load_mask(tmp_path / name), mask)


def test_times(tmp_path):
    (tmp_path / "T1map.csv").write_text("TI1,TI2,TI3\n100,180.5,260\n")
    np.testing.assert_allclose(io.load_times(tmp_path / "T1map.csv"), [100, 180.5, 260])


# --------------------------------------------------------------------------- bad input
def test_missing_variable(tmp_path):
    io.save_kspace(tmp_path / "a.mat", "kspace_full", _kspace())
    with pytest.raises(CMRxReconError, match=r"a\.mat.*missing variable 'kspace_sub04'"):
        io.load_kspace(tmp_path / "a.mat", "kspace_sub04")


def test_unexpected_rank(tmp_path):
    with h5py.File(tmp_path / "a.mat", "w") as f:
        f["kspace_full"] = np.zeros((3, 4), dtype=[("real", "<f4"), ("imag", "<f4")])
    with pytest.raises(CMRxReconError, match="rank 2"):
        io.load_kspace(tmp_path / "a.mat")


def test_non_complex_kspace(tmp_path):
    with h5py.File(tmp_path / "a.mat", "w") as f:
        f["kspace_full"] = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(CMRxReconError, match="not complex"):
        io.load_kspace(tmp_path / "a.mat")


def test_mask_that_does_not_fit(tmp_path):
    io.save_mask(tmp_path / "m.mat", "mask04", np.ones((10, 11), bool))
    with pytest.raises(CMRxReconError, match=r"m\.mat.*does not fit"):
        io.check_mask_fits(io.load_mask(tmp_path / "m.mat"), (2, 3, 4, 10, 12), tmp_path / "m.mat")


def test_non_binary_mask(tmp_path):
    io.save_mask(tmp_path / "m.mat", "mask04", np.full((4, 4), 0.5))
    with pytest.raises(CMRxReconError, match="not binary"):
        io.load_mask(tmp_path / "m.mat")


def test_nan_values(tmp_path):
    k = _kspace()
    k[0, 0, 0, 0, 0] = np.nan
    io.save_kspace(tmp_path / "a.mat", "kspace_full", k)
    with pytest.raises(CMRxReconError, match="NaN or Inf"):
        io.load_kspace(tmp_path / "a.mat")
    io.save_mask(tmp_path / "m.mat", "mask04", np.array([[1.0, np.inf]]))
    with pytest.raises(CMRxReconError, match="NaN or Inf"):
        io.load_mask(tmp_path / "m.mat")


def test_truncated_file(tmp_path):
    io.save_kspace(tmp_path / "a.mat", "kspace_full", _kspace((4, 4, 4, 64, 64)))
    data = (tmp_path / "a.mat").read_bytes()
    (tmp_path / "a.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(CMRxReconError, match=r"a\.mat.*(corrupt|truncated)"):
        io.load_kspace(tmp_path / "a.mat")


def test_corrupt_file(tmp_path):
    (tmp_path / "a.mat").write_bytes(b"this is not a MAT file" * 10)
    with pytest.raises(CMRxReconError, match=r"a\.mat.*corrupt"):
        io.load_kspace(tmp_path / "a.mat")


def test_empty_root(tmp_path):
    with pytest.raises(CMRxReconError, match="no CMRxRecon k-space files"):
        list(io.walk(tmp_path))


def test_failed_write_keeps_old_file(tmp_path):
    io.save_kspace(tmp_path / "a.mat", "kspace_full", _kspace())
    with pytest.raises(CMRxReconError):
        io.save_kspace(tmp_path / "a.mat", "kspace_full", np.zeros((2, 2)))
    np.testing.assert_array_equal(io.load_kspace(tmp_path / "a.mat"), _kspace())


def test_walker_skips_missing_files(tiny_root):
    entries = list(io.walk(tiny_root))
    lax = [e for e in entries if e.file == "cine_lax" and e.case == "P002" and e.acc == 8]
    assert len(lax) == 2  # both coil types
    lax[0].path.rename(lax[0].path.with_suffix(".bak"))
    try:
        again = list(io.walk(tiny_root))
        assert len(again) == len(entries) - 1
        e = again[0]
        assert (e.coil, e.task, e.split) == ("MultiCoil", "cine", "TrainingSet")
        assert e.variable == ("kspace_full" if e.acc is None else f"kspace_sub{e.acc:02d}")
    finally:
        lax[0].path.with_suffix(".bak").rename(lax[0].path)
