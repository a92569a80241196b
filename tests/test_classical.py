"""The PI-CS baseline (sigpy glue) and data consistency with the acquired coil data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcmr_core.data import acquired
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import CoilConsistency
from diffcmr_core.method.classical import CSConfig, acs_width, coil_maps, pics, pics_path


def _np_fft2c(x):
    return np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )


def _np_ifft2c(k):
    return np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )


def _problem(seed=0, frames=2, coils=3, ny=24, nx=32, acs=8):
    """Smooth complex images, unit-norm smooth maps, an equispaced mask with a centre."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx]
    images = np.stack(
        [
            np.exp(-((yy - ny / 2 - f) ** 2 + (xx - nx / 2) ** 2) / 40.0) * np.exp(1j * 0.05 * xx)
            for f in range(frames)
        ]
    ).astype(np.complex64)
    raw = np.stack(
        [
            np.exp(1j * (0.1 * c * yy + 0.05 * xx)) * (1.0 + 0.5 * np.cos(0.2 * yy + c))
            for c in range(coils)
        ]
    )
    maps = (raw / np.sqrt((np.abs(raw) ** 2).sum(0))).astype(np.complex64)
    lines = np.zeros(ny, bool)
    lines[::3] = True
    lines[ny // 2 - acs // 2 : ny // 2 + acs // 2] = True
    kspace = _np_fft2c(maps[None] * images[:, None]) * lines[:, None]
    kspace = (
        kspace
        + 1e-3
        * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
        * lines[:, None]
    )
    return images, maps, lines, kspace.astype(np.complex64)


def test_acs_width_counts_the_contiguous_centre():
    lines = np.zeros(20, bool)
    lines[::4] = True
    assert acs_width(lines) == (1 if lines[10] else 0)
    lines[7:13] = True
    assert acs_width(lines) == 6
    lines[6] = True
    assert acs_width(lines) == 7
    assert acs_width(np.ones(9, bool)) == 9


def test_batched_solve_equals_sigpys_l1_wavelet_recon_frame_by_frame():
    import sigpy.mri

    _, maps, lines, kspace = _problem()
    mask = np.broadcast_to(lines[:, None], kspace.shape[-2:])
    image, used = pics(kspace, mask, 0.01, 15, CSConfig())
    zero_filled = (np.conj(used) * _np_ifft2c(kspace)).sum(1)
    scale = np.abs(zero_filled).max()
    weights = mask.astype(np.float32)
    for f in range(len(kspace)):
        ref = (
            sigpy.mri.app.L1WaveletRecon(
                kspace[f] / scale,
                used,
                0.01,
                weights=weights,
                max_iter=15,
                alpha=1.0,
                show_pbar=False,
            ).run()
            * scale
        )
        np.testing.assert_allclose(image[f], ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_recorded_iterations_are_the_shorter_runs():
    _, _, lines, kspace = _problem(seed=1)
    path, _ = pics_path(kspace, lines, 0.01, (3, 8), CSConfig())
    short, _ = pics(kspace, lines, 0.01, 3, CSConfig())
    np.testing.assert_allclose(path[3], short, atol=1e-6 * np.abs(short).max())
    assert not np.allclose(path[3], path[8])


def test_readout_decoupling_over_every_column_is_the_2d_problem():
    _, _, lines, kspace = _problem(seed=2)
    whole, _ = pics(kspace, lines, 0.01, 10, CSConfig())
    split, _ = pics(kspace, lines, 0.01, 10, CSConfig(), columns=(0, kspace.shape[-1]))
    np.testing.assert_allclose(split, whole, atol=1e-4 * np.abs(whole).max())


def test_readout_decoupling_keeps_the_zero_filled_columns_outside():
    _, _, lines, kspace = _problem(seed=3)
    image, maps = pics(kspace, lines, 0.01, 10, CSConfig(), columns=(8, 24))
    zero_filled = (np.conj(maps) * _np_ifft2c(kspace * lines[:, None])).sum(1)
    np.testing.assert_allclose(image[..., :8], zero_filled[..., :8], atol=1e-5)
    assert not np.allclose(image[..., 8:24], zero_filled[..., 8:24], atol=1e-3)


def test_pics_beats_zero_filled_on_the_phantom(tiny_root):
    """PI-CS against zero-filling on the tiny phantom's fully sampled cine, under-sampled here
    at R = 2 with its central lines: the tiny phantom's four coils (an evenly spread subset of
    the array's ten large loops) unfold two-fold aliasing but not four-fold, so R = 2 is where
    a working solver must clearly beat zero-filling."""
    from diffcmr_core.data.kspace import equispaced_mask

    truths, zfs, cs = [], [], []
    for case in ("P001", "P002"):
        full = io.load_kspace(
            io.file_path(tiny_root, "MultiCoil", "cine", case, "cine_sax"),
            io.kspace_key("MultiCoil", None),
            index=(slice(None), 0),
        )
        mask = equispaced_mask(*full.shape[-2:], 2, 6)
        k = full * mask
        image, _ = pics(k, mask, 0.01, 20, CSConfig())
        truths.append(np.sqrt((np.abs(_np_ifft2c(full)) ** 2).sum(1)))
        zfs.append(np.sqrt((np.abs(_np_ifft2c(k)) ** 2).sum(1)))
        cs.append(np.abs(image))

    def nmse(a, b):
        return float(np.sum((a - b) ** 2) / np.sum(b**2))

    err_cs = np.mean([nmse(c, t) for c, t in zip(cs, truths)])
    err_zf = np.mean([nmse(z, t) for z, t in zip(zfs, truths)])
    assert err_cs < 0.7 * err_zf


def test_espirit_maps_combine_the_fully_sampled_coils(tiny_root):
    full = io.load_kspace(
        io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax"),
        io.kspace_key("MultiCoil", None),
        index=(slice(None), 0),
    )
    mask = io.load_mask(
        io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax", acc=4, kind="mask"),
        io.mask_key(4),
    )
    lines = mask.any(axis=1)
    maps = coil_maps(full * lines[:, None], lines)
    coils = _np_ifft2c(full)
    rss = np.sqrt((np.abs(coils) ** 2).sum(1))
    combined = np.abs((np.conj(maps) * coils).sum(1))
    support = np.sqrt((np.abs(maps) ** 2).sum(0)) > 0.5
    inside = rss[:, support]
    assert support.mean() > 0.2
    assert np.sum((combined[:, support] - inside) ** 2) / np.sum(inside**2) < 0.05


def test_pics_rejects_bad_shapes():
    _, _, lines, kspace = _problem()
    with pytest.raises(ValueError, match="frames, coils"):
        pics(kspace[0], lines, 0.01, 5)
    with pytest.raises(ValueError, match="lines"):
        pics(kspace, lines[:-1], 0.01, 5)
    with pytest.raises(ValueError, match="regulariser"):
        CSConfig(regulariser="l2")


# ----------------------------------------------------------------------------- consistency
def _operator(weight=1.0, seed=0, b=2, c=3, s=16):
    rng = np.random.default_rng(seed)
    measured = (rng.standard_normal((b, c, s, s)) + 1j * rng.standard_normal((b, c, s, s))).astype(
        np.complex64
    )
    lines = rng.random((b, s)) < 0.4
    measured = measured * lines[:, None, :, None]
    maps = (rng.standard_normal((b, c, s, s)) + 1j * rng.standard_normal((b, c, s, s))).astype(
        np.complex64
    )
    phase = rng.uniform(-np.pi, np.pi, (b, s, s)).astype(np.float32)
    mag = rng.random((b, s, s)).astype(np.float32)
    op = CoilConsistency(
        torch.from_numpy(measured),
        torch.from_numpy(lines),
        torch.from_numpy(maps),
        torch.from_numpy(phase),
        weight,
    )
    return op, measured, lines, maps, phase, mag


def test_consistency_writes_the_measured_lines_and_leaves_the_others():
    op, measured, lines, maps, phase, mag = _operator()
    expanded = _np_fft2c(maps * (mag * np.exp(1j * phase))[:, None])
    out = op.project(op.expand(torch.from_numpy(mag))).numpy()
    acq = np.broadcast_to(lines[:, None, :, None], out.shape)
    np.testing.assert_allclose(out[acq], measured[acq], atol=1e-5)
    np.testing.assert_allclose(out[~acq], expanded[~acq], atol=1e-4)


def test_consistency_with_weight_zero_changes_nothing_and_a_half_mixes():
    op0, measured, lines, maps, phase, mag = _operator(weight=0.0)
    expanded = _np_fft2c(maps * (mag * np.exp(1j * phase))[:, None])
    np.testing.assert_allclose(
        op0.project(op0.expand(torch.from_numpy(mag))).numpy(), expanded, atol=1e-4
    )
    op_half = _operator(weight=0.5)[0]
    acq = np.broadcast_to(lines[:, None, :, None], expanded.shape)
    half = op_half.project(op_half.expand(torch.from_numpy(mag))).numpy()
    np.testing.assert_allclose(half[acq], 0.5 * (expanded[acq] + measured[acq]), atol=1e-4)
    with pytest.raises(ValueError, match="weight"):
        _operator(weight=1.5)


def test_consistency_magnitude_equals_a_direct_numpy_computation():
    op, measured, lines, maps, phase, mag = _operator(seed=4)
    k = _np_fft2c(maps * (mag * np.exp(1j * phase))[:, None])
    k = np.where(lines[:, None, :, None], measured, k)
    want = np.sqrt((np.abs(_np_ifft2c(k)) ** 2).sum(1))
    np.testing.assert_allclose(op(torch.from_numpy(mag)).numpy(), want, rtol=1e-4, atol=1e-5)
    tiled = op.repeat(3)(torch.from_numpy(np.concatenate([mag] * 3))).numpy()
    np.testing.assert_allclose(tiled, np.concatenate([want] * 3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        op.subset(1, 1)(torch.from_numpy(mag[1:])).numpy(), want[1:], rtol=1e-4, atol=1e-5
    )


def test_acquisition_consistency_keeps_a_fully_sampled_image_and_the_measured_lines(tiny_root):
    """Built from the phantom's files: the measured lines are the file's crop divided by the
    input's scale, and the operator applied to the truth changes it little (the truth's own
    acquired lines are the measured ones up to the coil maps' and phase's errors)."""
    from diffcmr_core.data.kspace import center_crop, crop_lines, kspace_to_image
    from diffcmr_core.method.classical import acquisition_consistency

    size = 16
    path = io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax", acc=4)
    k = io.load_kspace(path, io.kspace_key("MultiCoil", 4))
    mask = io.load_mask(
        io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax", acc=4, kind="mask"),
        io.mask_key(4),
    )
    acqs = acquired.of_block(k, mask, "MultiCoil", path)
    inputs = kspace_to_image(k, multicoil=True, size=size, crop=True).reshape(-1, size, size)
    scale = inputs.reshape(len(inputs), -1).max(1)
    op = acquisition_consistency(acqs, len(inputs), size, scale)
    lines = crop_lines(mask.any(axis=1), size)
    first = acqs[0]
    want = (
        center_crop(first.kspace, size) * lines[:, None] / scale[first.index][:, None, None, None]
    )
    np.testing.assert_allclose(op.measured.numpy()[first.index], want, rtol=1e-5, atol=1e-7)
    full = io.load_kspace(
        io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax"),
        io.kspace_key("MultiCoil", None),
    )
    truth = kspace_to_image(full, multicoil=True, size=size, crop=True).reshape(-1, size, size)
    truth = truth / scale[:, None, None]
    out = op(torch.from_numpy(truth)).numpy()
    err = np.sum((out - truth) ** 2) / np.sum(truth**2)
    zero_filled = np.sum((inputs / scale[:, None, None] - truth) ** 2) / np.sum(truth**2)
    assert err < 0.25 * zero_filled


def test_pics_images_are_cached_by_their_inputs(tiny_root, tmp_path, monkeypatch):
    from diffcmr_core.data.pairs import PreprocessConfig
    from diffcmr_core.study.methods import pics as study_pics

    path = io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax", acc=4)
    k = io.load_kspace(path, io.kspace_key("MultiCoil", 4))
    mask = io.load_mask(
        io.file_path(tiny_root, "MultiCoil", "cine", "P001", "cine_sax", acc=4, kind="mask"),
        io.mask_key(4),
    )
    acq = acquired.of_block(k, mask, "MultiCoil", path)[0]
    pre = PreprocessConfig(pad_to=128, size=16)
    first = study_pics._images(acq, 0.02, (5,), CSConfig(), pre, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def solve(*args, **kwargs):
        raise AssertionError("solved again although cached")

    monkeypatch.setattr(study_pics, "pics_path", solve)
    again = study_pics._images(acq, 0.02, (5,), CSConfig(), pre, tmp_path)
    np.testing.assert_array_equal(again[5], first[5])
    with pytest.raises(AssertionError, match="solved again"):  # another weight: not cached
        study_pics._images(acq, 0.03, (5,), CSConfig(), pre, tmp_path)
    next(tmp_path.glob("*.npz")).write_bytes(b"garbage")  # unreadable: solved again
    with pytest.raises(AssertionError, match="solved again"):
        study_pics._images(acq, 0.02, (5,), CSConfig(), pre, tmp_path)


def test_total_variation_prior_reconstructs_and_refuses_readout_decoupling():
    images, _, lines, kspace = _problem(seed=5)
    tv, _ = pics(kspace, lines, 0.005, 30, CSConfig(regulariser="tv"))
    zero_filled, maps = pics(kspace, lines, 1e-9, 1, CSConfig())  # one step from zero: ~ S^H F^H y
    truth = np.abs(images)

    def nmse(x):
        a = np.abs(x)
        a = a * (a * truth).sum() / (a * a).sum()
        return float(np.sum((a - truth) ** 2) / np.sum(truth**2))

    assert np.isfinite(tv).all() and nmse(tv) < nmse(zero_filled)
    with pytest.raises(ValueError, match="wavelet prior"):
        pics(kspace, lines, 0.005, 5, CSConfig(regulariser="tv"), columns=(0, 8))


def test_a_coil_type_without_its_own_choice_takes_the_other(tiny_root):
    """gpu-dry's pairs hold multi-coil slices only, but the challenge's protocol reconstructs the
    single-coil files too: they take the multi-coil choice."""
    from diffcmr_core.data.kspace import kspace_to_image
    from diffcmr_core.data.pairs import PreprocessConfig
    from diffcmr_core.study.methods import Batch
    from diffcmr_core.study.methods.pics import pics_images

    path = io.file_path(tiny_root, "SingleCoil", "cine", "P001", "cine_sax", acc=4)
    k = io.load_kspace(path, io.kspace_key("SingleCoil", 4))
    mask = io.load_mask(
        io.file_path(tiny_root, "SingleCoil", "cine", "P001", "cine_sax", acc=4, kind="mask"),
        io.mask_key(4),
    )
    pre = PreprocessConfig(pad_to=128, size=16)
    inputs = kspace_to_image(k, multicoil=False, pad_to=128, size=16).reshape(-1, 16, 16)
    scale = inputs.reshape(len(inputs), -1).max(1)
    batch = Batch(
        inputs / scale[:, None, None],
        scale,
        pre,
        lambda: acquired.of_block(k, mask, "SingleCoil", path),
    )
    out = pics_images(batch, {"MultiCoil": {"weight": 0.02, "iterations": 5}}, CSConfig())
    assert out.shape == inputs.shape and np.isfinite(out).all() and out.max() > 0
