"""Inference split over processes: chunks saved and reused, and, with ``torchrun`` and the gloo
backend on the CPU, two ranks giving the same submission files and the same scores as one
process, and a rank killed mid-run finished by a rerun that redoes only the missing files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffcmr_core.study.store import shard

WORKER = Path(__file__).with_name("shard_worker.py")


def test_chunks_are_fixed_by_the_chunk_size_saved_and_reused(tmp_path):
    calls = []

    def work(lo, hi):
        calls.append((lo, hi))
        return {
            "mean": np.arange(lo, hi, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2)),
            "rounds": np.stack([np.full((hi - lo, 2, 2), r + lo, np.float32) for r in range(3)]),
        }

    got = shard.map_chunks(5, 2, work, tmp_path / "p")
    assert calls == [(0, 2), (2, 4), (4, 5)]
    np.testing.assert_array_equal(got["mean"][:, 0, 0], np.arange(5))
    assert got["rounds"].shape == (3, 5, 2, 2)
    np.testing.assert_array_equal(got["rounds"][:, 3, 0, 0], [2, 3, 4])  # chunk 2:4, r + lo
    shard.chunk_path(tmp_path / "p", 2, 4).write_bytes(b"not a zip")  # a half-written chunk
    calls.clear()
    again = shard.map_chunks(5, 2, work, tmp_path / "p")
    assert calls == [(2, 4)]  # only that one redone
    for k in got:
        np.testing.assert_array_equal(again[k], got[k])


def test_a_rank_owns_every_worldth_piece():
    owned = [[k for k in range(7) if shard.Ranks(r, 3).owns(k)] for r in range(3)]
    assert owned == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard.current() == shard.Ranks(0, 1) and shard.Ranks().gather("x") == ["x"]


def _torchrun(
    nproc: int, home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIFFCMR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("CMRXRECON_ROOT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(WORKER),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    """Every submission file's ``img4ranking`` as bytes (the MATLAB header holds a time)."""
    from diffcmr_core.method.challenge import load_ranking

    return {
        str(p.relative_to(folder)): load_ranking(p).tobytes() for p in sorted(folder.rglob("*.mat"))
    }


@pytest.fixture(scope="module")
def home(smoke_home, tmp_path_factory):
    """A copy of the smoke study's home (data and trained models), which these tests rewrite;
    its pairs rebuilt for the new place once, before any rank reads them."""
    from diffcmr_core.study.settings.profiles import get_profile
    from diffcmr_core.study.steps import ensure_data

    copy = tmp_path_factory.mktemp("shard") / "home"
    shutil.copytree(smoke_home, copy, ignore=shutil.ignore_patterns("figures", "notebooks"))
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFCMR_HOME", str(copy))
    ensure_data(get_profile("smoke"), progress=False)
    yield copy
    mp.undo()


@pytest.mark.slow
def test_two_ranks_submit_the_same_files_and_a_killed_rank_is_finished_by_a_rerun(home, tmp_path):
    from diffcmr_core.data.phantom import validation_truth_root
    from diffcmr_core.method.challenge import score_submission
    from diffcmr_core.study.settings.profiles import get_profile, paths_for

    _torchrun(1, home, "submit", str(tmp_path / "one"), str(tmp_path / "one.json"))
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["world"] == 1 and one["written"] and not one["skipped"]
    _torchrun(2, home, "submit", str(tmp_path / "two"), str(tmp_path / "two.json"))
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world"] == 2 and len(two["written"]) == len(one["written"])
    reference = _files(tmp_path / "one")
    assert _files(tmp_path / "two") == reference  # bit-identical files
    truth = validation_truth_root(paths_for(get_profile("smoke")).data)
    assert truth.is_dir() and str(truth).startswith(str(home))
    assert (
        score_submission(tmp_path / "two", truth).ranking
        == score_submission(tmp_path / "one", truth).ranking
    )

    died = _torchrun(
        2,
        home,
        "submit",
        str(tmp_path / "cut"),
        str(tmp_path / "cut.json"),
        "--die-after",
        "1",
        check=False,
    )
    assert died.returncode != 0 and not (tmp_path / "cut.json").exists()
    from diffcmr_core.study.steps.submit import _read_records

    recorded = {str(tmp_path / "cut" / rel) for rel in _read_records(tmp_path / "cut")}
    assert recorded and len(recorded) < len(reference)  # the run did stop part-way
    _torchrun(2, home, "submit", str(tmp_path / "cut"), str(tmp_path / "cut.json"))
    rerun = json.loads((tmp_path / "cut.json").read_text())
    assert set(rerun["kept"]) == recorded  # what was finished is kept
    assert set(rerun["written"]) == {str(tmp_path / "cut" / r) for r in reference} - recorded
    assert _files(tmp_path / "cut") == reference


def _recon_files(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*_recon.h5")):
        with h5py.File(path, "r") as f:
            out.update({f"{path.name}/{k}": f[k][()] for k in f})
    return out


@pytest.mark.slow
def test_two_ranks_evaluate_and_ablate_as_one_process(home, tmp_path):
    def run(nproc: int, tag: str):
        _torchrun(nproc, home, "evaluate", str(tmp_path / f"{tag}.json"))
        runs = home / "runs" / "smoke"
        return (
            json.loads((tmp_path / f"{tag}.json").read_text()),
            _recon_files(runs / "eval" / "cine_acc04"),
            _recon_files(runs / "ablation" / "cine_acc04"),
        )

    one, one_eval, one_abl = run(1, "one")
    two, two_eval, two_abl = run(2, "two")
    assert (one["world"], two["world"]) == (1, 2)
    assert one["evaluation"] == two["evaluation"] and one["ablation"] == two["ablation"]
    assert one_eval.keys() == two_eval.keys() and any("DiffCMR" in k for k in one_eval)
    for k in one_eval:
        np.testing.assert_array_equal(two_eval[k], one_eval[k], err_msg=k)
    for k in one_abl:
        np.testing.assert_array_equal(two_abl[k], one_abl[k], err_msg=k)
    assert not (home / "runs" / "smoke" / "eval" / "cine_acc04" / "parts").exists()


def test_evaluate_without_fitted_models_names_the_command_that_fits_them(
    tmp_path, monkeypatch, capsys
):
    """The ranks split inference, not training: ``evaluate`` on a profile with no fitted models
    stops before any work, with the command that fits them."""
    from diffcmr_core.cli import main

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--profile", "smoke", "--quiet"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "models of profile smoke are missing" in err and "--only 03_training" in err
    assert not (tmp_path / "runs" / "smoke" / "eval").exists()
