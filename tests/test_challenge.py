"""The challenge's protocol: run4Ranking against a literal transcription of the MATLAB code,
img4ranking files as the organisers read them, scoring against scikit-image, and a submission
from the smoke study's trained models, end to end."""

import math
import re
import shutil

import numpy as np
import pytest
import scipy.io
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.errors import CheckpointError, CMRxReconError
from diffcmr_core.method.challenge import (
    load_ranking,
    matlab_round,
    run4ranking,
    save_ranking,
    score_file,
    score_submission,
)


def _matlab_run4ranking(img, filetype):
    """run4Ranking.m and crop.m line by line, 1-based indices turned into numpy's only at the
    end; ``img`` in MATLAB order (sx, sy, sz, t)."""
    sx, sy, sz, t = img.shape
    mround = lambda v: math.floor(v + 0.5)  # noqa: E731 - MATLAB rounds halves up (v > 0)
    if sz < 3:
        recon = img if filetype.startswith("T") else img[:, :, :, 0:3]
    else:
        zs = list(range(mround(sz / 2) - 1, mround(sz / 2) + 1))  # 1-based
        recon = img[:, :, [z - 1 for z in zs]]
        recon = recon if filetype.startswith("T") else recon[:, :, :, 0:3]
    target = [mround(sx / 3), mround(sy / 2)]
    out = np.abs(recon)
    for axis, s in enumerate(target):
        m = out.shape[axis]
        idx = list(
            range(
                math.floor(m / 2) + 1 + math.ceil(-s / 2), math.floor(m / 2) + math.ceil(s / 2) + 1
            )
        )
        out = np.take(out, [i - 1 for i in idx], axis=axis)
    return out.astype(np.float32)


@pytest.mark.parametrize(
    "name,t,z,ky,kx",
    [
        ("cine_sax", 12, 10, 204, 512),
        ("cine_lax", 12, 3, 168, 448),
        ("cine_lax", 6, 2, 81, 255),
        ("T1map", 9, 5, 143, 512),
        ("T2map", 3, 6, 144, 511),
        ("cine_sax", 4, 7, 85, 256),
    ],
)
def test_run4ranking_equals_the_matlab_code(name, t, z, ky, kx):
    rng = np.random.default_rng(0)
    images = (
        rng.standard_normal((t, z, ky, kx)) + 1j * rng.standard_normal((t, z, ky, kx))
    ).astype(np.complex64)
    ours = run4ranking(images, name)
    theirs = _matlab_run4ranking(images.transpose(3, 2, 1, 0), name)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert ours.shape[:2] == (matlab_round(kx / 3), matlab_round(ky / 2))


def test_img4ranking_files_read_back_with_scipy_and_v73_is_refused(tmp_path):
    arr = np.random.default_rng(1).random((85, 41, 2, 3)).astype(np.float32)
    save_ranking(tmp_path / "a" / "cine_sax.mat", arr)
    back = scipy.io.loadmat(tmp_path / "a" / "cine_sax.mat")["img4ranking"]
    assert back.dtype == np.float32 and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    io.save_mask(tmp_path / "v73.mat", "img4ranking", arr[:, :, 0, 0])  # a MATLAB v7.3 file
    with pytest.raises(CMRxReconError, match="v7.3"):
        load_ranking(tmp_path / "v73.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"recon": arr})
    with pytest.raises(CMRxReconError, match="no variable 'img4ranking'"):
        load_ranking(tmp_path / "other.mat")
    with pytest.raises(ValueError, match="non-finite"):
        save_ranking(tmp_path / "nan.mat", np.full((2, 2, 1, 1), np.nan, np.float32))
    assert not (tmp_path / "nan.mat").exists()


def test_score_file_is_the_organisers_calmetric():
    rng = np.random.default_rng(2)
    gt = rng.random((40, 30, 2, 3)).astype(np.float32) * 5
    pred = (gt + 0.3 * rng.random(gt.shape)).astype(np.float32)
    psnrs, ssims, nmses = [], [], []
    for i in range(2):
        for j in range(3):
            g, p = gt[:, :, i, j] / gt[:, :, i, j].max(), pred[:, :, i, j] / pred[:, :, i, j].max()
            psnrs.append(peak_signal_noise_ratio(g, p, data_range=g.max()))
            ssims.append(structural_similarity(g, p, data_range=g.max()))
            nmses.append(np.linalg.norm(g - p) ** 2 / np.linalg.norm(g) ** 2)
    got = score_file(pred, gt)
    assert got["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-6)
    assert got["ssim"] == pytest.approx(np.mean(ssims), rel=1e-6)
    assert got["nmse"] == pytest.approx(np.mean(nmses), rel=1e-5)
    with pytest.raises(CMRxReconError, match="shape"):
        score_file(pred[:-1], gt)


@pytest.mark.slow
def test_submit_and_score_end_to_end_from_the_smoke_study(smoke_home, tmp_path, capsys):
    """Smoke-profile models (trained by the study), ``submit`` on the synthetic ValidationSet
    and ``score`` against its fully sampled files: every file read back with
    ``scipy.io.loadmat`` has run4Ranking's shape of its k-space file; a second run keeps what is
    there; a corrupt input is skipped and named while the rest is written; a missing model
    names the task, the factor and the command. Before it starts, ``submit`` says how many images
    it will reconstruct: the written files' kept slices x frames."""
    from diffcmr_core.data.phantom import validation_truth_root
    from diffcmr_core.study.settings.profiles import get_profile, paths_for
    from diffcmr_core.study.steps.submit import submit

    profile = get_profile("smoke")
    data = paths_for(profile).data
    report = submit(profile, split="ValidationSet", out=tmp_path / "sub", progress=True)
    assert report.written and not report.skipped
    announced = re.search(r"submit: (\d+) images by diffcmr, .* about ", capsys.readouterr().out)
    written_images = 0
    inputs = [e for e in io.walk(data) if e.split == "ValidationSet"]
    assert len(report.written) == len(inputs)
    for e in inputs:
        path = (
            tmp_path
            / "sub"
            / e.coil
            / io.TASK_FOLDER[e.task]
            / "ValidationSet"
            / f"AccFactor{e.acc:02d}"
            / e.case
            / f"{e.file}.mat"
        )
        arr = scipy.io.loadmat(path)["img4ranking"]
        t, z, *_, ky, kx = io.kspace_shape(e.path)
        frames = min(t, 3) if e.file.startswith("cine") else t
        assert arr.dtype == np.float32
        assert arr.shape == (matlab_round(kx / 3), matlab_round(ky / 2), min(z, 2), frames)
        written_images += arr.shape[2] * arr.shape[3]
    assert announced and int(announced.group(1)) == written_images

    scores = score_submission(tmp_path / "sub", validation_truth_root(data))
    assert not scores.missing and not scores.failed
    assert {(r["task"], r["acc"]) for r in scores.ranking} >= {("cine", 4), ("mapping", 10)}
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in scores.ranking)
    # the raw (zero-filled) submission scores as the zero-filled images do
    raw = submit(profile, split="ValidationSet", out=tmp_path / "raw", method="raw", progress=False)
    assert len(raw.written) == len(inputs)

    again = submit(profile, split="ValidationSet", out=tmp_path / "sub", progress=False)
    assert not again.written and len(again.kept) == len(inputs)

    broken = tmp_path / "broken"
    shutil.copytree(
        data, broken, ignore=shutil.ignore_patterns("TrainingSet", "Truth", "ValidationTruth")
    )
    victim = next(e for e in io.walk(broken) if e.split == "ValidationSet")
    victim.path.write_bytes(victim.path.read_bytes()[:1000])
    partial = submit(
        profile, split="ValidationSet", out=tmp_path / "partial", data=broken, progress=False
    )
    assert len(partial.skipped) == 1 and str(victim.path) in partial.skipped[0]
    assert len(partial.written) == len(inputs) - 1

    model = paths_for(profile).model_dir("mapping", 8, "unet") / "last.pt"
    model.rename(model.with_suffix(".bak"))
    try:
        with pytest.raises(
            CheckpointError, match=r"unet model for mapping at \d+x.*--only 03_training"
        ):
            submit(
                profile, split="ValidationSet", out=tmp_path / "none", method="unet", progress=False
            )
        assert not (tmp_path / "none").exists()
    finally:
        model.with_suffix(".bak").rename(model)
