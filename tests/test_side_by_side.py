"""Networks trained side by side (``study.methods.side_by_side``): the same runs as in-process
training at the same thread count, bit for bit; finished runs skipped; a failing run named."""

from __future__ import annotations

import shutil

import pytest
import torch

from diffcmr_core.study.methods import convergence
from diffcmr_core.study.methods.side_by_side import finished, pending, train_side_by_side
from diffcmr_core.study.settings.profiles import get_profile, paths_for
from diffcmr_core.study.steps import ensure_data


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFCMR_HOME", str(home))
    mp.delenv("CMRXRECON_ROOT", raising=False)
    profile = get_profile("cpu-dry")
    ensure_data(profile, progress=False)
    yield profile
    mp.undo()


def _jobs(profile):
    return [
        (convergence.with_lr(profile, method, lr), "cine", 4, method)
        for method in ("diffcmr", "unet")
        for lr in (1e-3, 2e-3)
    ]


def _weights(job) -> dict[str, torch.Tensor]:
    profile, task, acc, method = job
    ckpt = torch.load(
        paths_for(profile).model_dir(task, acc, method) / "last.pt", weights_only=True
    )
    return {f"{part}.{k}": v for part in ("system", "ema") for k, v in ckpt[part].items()}


def test_side_by_side_runs_equal_runs_in_process_at_one_thread(dry, tmp_path):
    jobs = _jobs(dry)
    assert len(pending(jobs + jobs)) == 4  # one per model folder
    assert pending(jobs)[0][3] == "diffcmr"  # the long runs first
    train_side_by_side(jobs, workers=2, progress=False)
    assert all(finished(j) for j in jobs) and pending(jobs) == []
    pooled = [_weights(j) for j in jobs]
    records = [
        convergence.read_record(paths_for(p).model_dir(t, a, m), p, m)["rows"]
        for p, t, a, m in jobs
    ]
    for p, t, a, m in jobs:  # again, one after another in this process, at one thread
        shutil.rmtree(paths_for(p).model_dir(t, a, m))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for job in jobs:
            convergence.train_to_budget(*job, progress=False)
    finally:
        torch.set_num_threads(threads)
    for job, weights, rows in zip(jobs, pooled, records):
        again = _weights(job)
        assert weights.keys() == again.keys()
        assert all(torch.equal(weights[k], again[k]) for k in weights), job[3]
        p, t, a, m = job
        fresh = convergence.read_record(paths_for(p).model_dir(t, a, m), p, m)["rows"]
        assert [r["psnr"] for r in fresh] == [r["psnr"] for r in rows]


def test_a_failing_run_stops_the_pool_and_is_named(dry):
    bad = convergence.with_lr(dry, "unet", 3e-3)
    folder = paths_for(bad).model_dir("cine", 4, "unet")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "last.pt").write_bytes(b"not a checkpoint")  # a run that cannot resume
    jobs = [(bad, "cine", 4, "unet"), (convergence.with_lr(dry, "unet", 5e-3), "cine", 4, "unet")]
    with pytest.raises(RuntimeError, match=r"training unet cine 4x lr 0\.003 seed 0"):
        train_side_by_side(jobs, workers=2, progress=False)
