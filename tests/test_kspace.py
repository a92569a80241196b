import numpy as np
import pytest
import torch

from diffcmr_core.data.kspace import fft2c, ifft2c, kspace_to_image


def _numpy_reference(k, multicoil, pad_to):
    ky, kx = k.shape[-2:]
    y0, x0 = pad_to // 2 - ky // 2, pad_to // 2 - kx // 2
    pad = [(0, 0)] * (k.ndim - 2) + [(y0, pad_to - ky - y0), (x0, pad_to - kx - x0)]
    img = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(np.pad(k, pad), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    return np.sqrt((np.abs(img) ** 2).sum(-3)) if multicoil else np.abs(img)


@pytest.mark.parametrize("multicoil", [True, False])
def test_kspace_to_image_matches_numpy(multicoil):
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 30, 40) if multicoil else (2, 3, 30, 40)
    k = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    ref = _numpy_reference(k.astype(np.complex128), multicoil, 64)
    out = kspace_to_image(k, multicoil=multicoil, pad_to=64, size=None)
    assert out.dtype == np.float32 and out.shape == shape[:2] + (64, 64)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.max())
    # integer factors: exact 4 x 4 box averages of the padded image
    small = kspace_to_image(k, multicoil=multicoil, pad_to=64, size=16)
    box = ref.reshape(shape[:2] + (16, 4, 16, 4)).mean((-3, -1))
    np.testing.assert_allclose(small, box, rtol=1e-4, atol=1e-5 * ref.max())


def test_public_resize_is_bilinear_without_antialiasing():
    """``resize_method="public"`` (the public code's torchvision Resize on a tensor, torchvision
    <= 0.16): at 64 -> 16 every output pixel is the mean of the 2 x 2 padded pixels around its
    centre (rows and columns 4i + 1 and 4i + 2), the other pixels unread; the anti-aliased
    default is the 4 x 4 box mean. Independently with numpy."""
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((2, 4, 30, 40)) + 1j * rng.standard_normal((2, 4, 30, 40))).astype(
        np.complex64
    )
    ref = _numpy_reference(k.astype(np.complex128), True, 64)
    public = kspace_to_image(k, multicoil=True, pad_to=64, size=16, resize_method="public")
    rows = ref[..., 1::4, :] + ref[..., 2::4, :]
    two_by_two = (rows[..., 1::4] + rows[..., 2::4]) / 4
    np.testing.assert_allclose(public, two_by_two, rtol=1e-4, atol=1e-5 * ref.max())
    box = ref.reshape((2, 16, 4, 16, 4)).mean((-3, -1))
    assert np.abs(public - box).max() > 0.05 * ref.max()  # the two methods differ
    with pytest.raises(ValueError, match="resize must be one of"):
        kspace_to_image(k, multicoil=True, pad_to=64, size=16, resize_method="bicubic")


def test_pad_to_too_small_raises():
    with pytest.raises(ValueError, match="larger than pad_to"):
        kspace_to_image(np.zeros((1, 70, 20), np.complex64), multicoil=False, pad_to=64)


def test_centred_fft_numpy_and_torch_agree_with_a_direct_dft():
    """fft2c against the DFT sum written out (centre at n // 2), for numpy and torch inputs."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5)) + 1j * rng.standard_normal((2, 6, 5))
    ny, nx = x.shape[-2:]
    ky, kx = np.arange(ny) - ny // 2, np.arange(nx) - nx // 2
    y, xx = np.arange(ny) - ny // 2, np.arange(nx) - nx // 2
    fy, fx = np.exp(-2j * np.pi * np.outer(ky, y) / ny), np.exp(-2j * np.pi * np.outer(kx, xx) / nx)
    direct = np.einsum("ky,byx,lx->bkl", fy, x, fx) / np.sqrt(ny * nx)
    np.testing.assert_allclose(fft2c(x), direct, atol=1e-12)
    np.testing.assert_allclose(fft2c(torch.from_numpy(x)).numpy(), direct, atol=1e-12)
    np.testing.assert_allclose(ifft2c(fft2c(x)), x, atol=1e-12)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(direct)).numpy(), x, atol=1e-12)


def test_ifft1c_along_both_axes_is_ifft2c():
    from diffcmr_core.data.kspace import ifft1c, ifft2c

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((3, 6, 9)) + 1j * rng.standard_normal((3, 6, 9))).astype(np.complex64)
    np.testing.assert_allclose(ifft1c(ifft1c(k, axis=-1), axis=-2), ifft2c(k), atol=1e-5)
    want = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(k, axes=-1), axis=-1, norm="ortho"), axes=-1
    )
    np.testing.assert_allclose(ifft1c(k), want, atol=1e-5)


def test_the_docstring_examples_hold():
    """The examples in the operators' and samplers' docstrings are run, not only read."""
    import doctest

    from diffcmr_core import tables
    from diffcmr_core.data import kspace
    from diffcmr_core.method import inference, samplers

    for module in (kspace, samplers, inference, tables):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
