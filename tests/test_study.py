"""One end-to-end smoke run of the whole study (papermill over every notebook) in a temporary
home, then the explorer's callbacks on the models it trained."""

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from diffcmr_core.study.settings.profiles import get_profile, paths_for

EXPECTED = [
    "table1.csv",
    "table1.md",
    "table2_cine.csv",
    "table2_cine.md",
    "table3_mapping.csv",
    "table3_mapping.md",
    "table4a_steps.csv",
    "table4a_steps.md",
    "table4b_rounds.csv",
    "table4b_rounds.md",
    "fig1_diffusion.png",
    "fig2_pipeline.png",
    "fig3_qualitative.png",
    "fig3_qualitative.pdf",
    "REPORT.md",
    "table5_fast_sampling.csv",
    "timing_fast_sampling.csv",
    "fig_fast_sampling.png",
    "fig_kspace_error.png",
    "cs_choice.csv",
    "table6_maps.csv",
    "table6_maps.md",
    "table6_maps_truth.csv",
    "table6_maps_scale.csv",
    "table6_maps_uncertainty.csv",
    "fig_maps.png",
]
# notebook 10, in a profile with evidence settings (smoke, cpu)
EVIDENCE_FILES = [
    "compute_curve.csv",
    "fig_compute_curve.png",
    "convergence.csv",
    "evidence_verdicts.csv",
    "evidence_per_image.csv",
    "fig_ensemble_law.png",
]


@pytest.mark.slow
def test_study_writes_every_table_and_figure(smoke_home):
    figures = smoke_home / "figures" / "smoke"
    missing = [f for f in EXPECTED + EVIDENCE_FILES if not (figures / f).is_file()]
    assert not missing
    header = (figures / "table2_cine.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["method", "acc", "psnr", "ssim", "nmse"]
    methods = {
        ln.split(",")[0] for ln in (figures / "table3_mapping.csv").read_text().splitlines()[1:]
    }
    assert methods == {"RAW", "U-Net", "cGAN", "DiffCMR", "PI-CS"}
    report = (figures / "REPORT.md").read_text()
    assert "synthetic phantom" in report and "paper PSNR" in report and "wall time" in report
    fast = [
        ln.split(",")[0]
        for ln in (figures / "table5_fast_sampling.csv").read_text().splitlines()[1:]
    ]
    # a rerun leaves the result tables byte-identical: times only in the timing_* tables
    for name in (f for f in EXPECTED if f.endswith(".csv") and not f.startswith("timing_")):
        header = (figures / name).read_text().splitlines()[0]
        assert "second" not in header and "minute" not in header, name
    timing = (figures / "timing_fast_sampling.csv").read_text().splitlines()
    assert timing[0] == "label,nfe,seconds_per_slice" and len(timing) == len(fast) + 1
    settings = get_profile("smoke").evaluation.fast_settings
    assert fast[:4] == [
        "RAW",
        "paper protocol T=20 R=2",
        "paper protocol T=20 R=2 + DC (magnitude)",
        "paper protocol T=20 R=2 + DC (coil data)",
    ]
    assert fast[4] == "DDPM T=5 R=2" and len(fast) == 1 + 3 * len(settings)
    executed = json.loads((smoke_home / "runs/smoke/notebooks/02_preprocessing.ipynb").read_text())
    assert any("papermill" in c["metadata"] for c in executed["cells"])
    maps = [ln.split(",") for ln in (figures / "table6_maps.csv").read_text().splitlines()]
    assert maps[0][:4] == ["method", "acc", "T1 myo MAE", "T1 myo bias"]
    assert {r[0] for r in maps[1:]} == {
        "RAW",
        "U-Net",
        "cGAN",
        "DiffCMR R=1",
        "DiffCMR R=2",
        "PI-CS",
    }
    assert "Table 6 (beyond the paper)" in report


@pytest.mark.slow
def test_rerun_skips_finished_notebooks(smoke_home, capsys):
    from diffcmr_core.study.lab.runner import run_study
    from diffcmr_core.study.writeup.report import compute_seconds

    before = compute_seconds(get_profile("smoke"))
    assert all(v > 0 for v in before.values()), before
    run_study("smoke")
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == 10
    # the reused results keep their cost in the report, whatever this run's wall time
    assert compute_seconds(get_profile("smoke")) == before
    report = (smoke_home / "figures" / "smoke" / "REPORT.md").read_text()
    assert f"compute behind these results: {sum(before.values()) / 60:.1f} min" in report


@pytest.mark.slow
def test_an_ad_hoc_papermill_run_leaves_the_study_figures_alone(smoke_home, tmp_path):
    """README's papermill example with other parameters: the figures and tables of
    ``figures/smoke/`` stay byte for byte; the run's own go to a folder named after them."""
    from pathlib import Path

    import papermill as pm

    figures = smoke_home / "figures" / "smoke"
    before = {p.name: p.read_bytes() for p in figures.iterdir() if p.is_file()}
    book = Path(__file__).resolve().parents[1] / "notebooks" / "06_figures_1_2.ipynb"
    pm.execute_notebook(
        str(book),
        str(tmp_path / "out.ipynb"),
        cwd=str(book.parent),
        parameters={"profile": "smoke", "acc": 8, "progress": False},
        progress_bar=False,
        kernel_name="python3",
    )
    after = {p.name: p.read_bytes() for p in figures.iterdir() if p.is_file()}
    assert after == before
    own = smoke_home / "runs/smoke/figures/06_figures_1_2/task=cine-acc=8-slice_index=0"
    assert (own / "fig1_diffusion.png").is_file() and (own / "fig2_pipeline.png").is_file()


def test_compute_seconds_sums_resumed_training_and_skips_stale_caches(tmp_path, monkeypatch):
    from diffcmr_core.study.settings.profiles import step_stamp
    from diffcmr_core.study.store.cache import STEP_USES
    from diffcmr_core.study.store.cache import store as _store
    from diffcmr_core.study.writeup.report import compute_seconds

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    profile = get_profile("smoke")
    runs = paths_for(profile).runs
    log = runs / "models" / "cine_acc04_unet" / "loss.csv"
    log.parent.mkdir(parents=True)
    # two sessions: 10 s, then resumed (clock restarts) for 5 s more
    log.write_text("step,loss,seconds\n10,1.0,4.0\n20,0.9,10.0\n30,0.8,2.0\n40,0.7,5.0\n")

    def key(p, kind):
        return step_stamp(p, STEP_USES[kind])

    _store(runs / "eval" / "cine_acc04" / "summary.json", key(profile, "evaluation"), {}, 7.0)
    _store(
        runs / "ablation" / "cine_acc04" / "ablation.json",
        key(get_profile("quick"), "ablation"),
        {},
        99.0,
    )  # stale
    _store(runs / "challenge" / "scores.json", key(profile, "challenge"), {}, 3.0)
    _store(runs / "public" / "cine_acc04" / "choices.json", key(profile, "public"), [], 2.0)
    assert compute_seconds(profile) == {
        "training": 15.0,
        "evaluation": 10.0,
        "ablation": 2.0,
        "fast sampling": 0.0,
        "maps": 0.0,
    }


@pytest.mark.slow
def test_explorer_callbacks(smoke_home):
    from diffcmr_core.study.lab.explorer import Explorer

    explorer = Explorer(get_profile("smoke"), "cine")
    r = explorer.reconstruct(0, 4, steps=5, rounds=2)
    assert r["recon"].shape == r["target"].shape == r["std"].shape
    assert np.all(r["std"] >= 0) and r["std"].max() > 0  # two rounds differ
    assert explorer.reconstruct(0, 4, steps=5, rounds=2) is r and explorer.cached(0, 4, 5, 2)
    fig = explorer.reconstruction_figure(index=1, acc=8, steps=5, rounds=2)
    assert len(fig.axes) == 4 + 2 and "dB" in fig.axes[0].get_title()  # + colour bars of error, std
    # the acquired k-space comes from the file: its sampled lines are the mask file's
    from diffcmr_core.data import cmrxrecon as io

    meta = explorer._data(8)[2]
    k = explorer.acquired_kspace(1, 8)
    mask = io.load_mask(
        io.file_path(
            paths_for("smoke").data,
            meta["coil"][1],
            "cine",
            meta["case"][1],
            meta["file"][1],
            acc=8,
            kind="mask",
        )
    )
    np.testing.assert_array_equal((k > 0).any(axis=1), mask.any(axis=1))
    assert 0 < mask.any(axis=1).mean() < 1
    data = explorer.data_figure(index=1, acc=8)
    assert f"{mask.any(axis=1).sum()} of {mask.shape[0]} ky lines" in data.axes[2].get_title()
    fwd = explorer.forward_figure(index=0, acc=4, t=999)
    noisy = fwd.axes[1].images[0].get_array()
    assert abs(float(np.std(noisy)) - 1.0) < 0.2  # x_999 is nearly pure noise
    plt.close("all")
    assert paths_for("smoke").root == smoke_home
    panel = explorer.widget()  # the controls wrap, and say what they are without a kernel
    row = panel.children[0]
    assert row.layout.flex_flow == "row wrap" and len(row.children) == 5
    assert "open this notebook in JupyterLab" in panel._repr_mimebundle_()["text/plain"]


def test_explorer_without_a_trained_model_says_to_run_make_study(tmp_path, monkeypatch):
    """A fresh clone, a profile without shipped weights: the explorer trains nothing (it looked
    hung for minutes), it says what to run (the quick profile's shipped weights:
    ``tests/test_weights.py``)."""
    from diffcmr_core.study.lab.explorer import Explorer

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    explorer = Explorer(get_profile("gpu"), "cine")
    assert not explorer.trained(4) and explorer.source(4) is None
    message = explorer.widget()
    assert "make study" in message.value and "trains nothing" in message.value
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_gpu_profile_dry_run_runs_every_notebook(tmp_path, monkeypatch):
    """The gpu profile's code paths (the paper network, at half its image size; its phantom, its
    sampler settings) through every notebook on the CPU, at a few iterations, steps and slices,
    one factor, the multi-coil files."""
    from diffcmr_core.study.lab.runner import run_study

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    monkeypatch.delenv("CMRXRECON_ROOT", raising=False)
    dry = get_profile("gpu-dry")
    gpu = get_profile("gpu")
    size = gpu.preprocess.size // 2
    assert dry.network("diffcmr").model == dataclasses.replace(
        gpu.network("diffcmr").model, image_size=size
    )
    assert dry.network("unet").model == gpu.network("unet").model
    assert dry.network("cgan").train.iterations == 1 and gpu.settings.get("cs") == dry.settings.get(
        "cs"
    )
    assert dry.preprocess == dataclasses.replace(gpu.preprocess, size=size, coils=("MultiCoil",))
    assert dry.accs == (4,) and not dry.shared_models
    run_study("gpu-dry")
    figures = tmp_path / "figures" / "gpu-dry"
    assert all((figures / f).is_file() for f in EXPECTED)
    import h5py

    with h5py.File(tmp_path / "runs/gpu-dry/eval/cine_acc04/DiffCMR_recon.h5", "r") as f:
        assert f["recon"].shape == (1, size, size)


def test_the_study_folder_is_the_checkout_wherever_the_code_runs(monkeypatch, tmp_path):
    """Notebooks run with their own folder as the working directory: the study's data, runs and
    figures must still go to the checkout (or $DIFFCMR_HOME), not beside the notebooks."""
    from pathlib import Path

    from diffcmr_core.study.settings.profiles import repo_root

    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("DIFFCMR_HOME", raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    assert repo_root() == checkout
    assert paths_for("quick").figures == checkout / "figures" / "quick"
    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    assert paths_for("quick").runs == tmp_path / "runs" / "quick"


def test_saved_figures_are_byte_identical_when_redrawn(tmp_path):
    """A figure saved twice gives the same PNG and PDF bytes (no creation date), so re-running
    the study leaves the committed figures unchanged unless the figure changed."""
    import time

    import matplotlib.pyplot as plt
    import numpy as np

    from diffcmr_core.study.writeup import plots

    def draw(folder):
        fig, ax = plt.subplots()
        ax.imshow(np.arange(16.0).reshape(4, 4))
        return plots.save(fig, folder / "f.png", pdf=True)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = draw(tmp_path / "a")
    time.sleep(1.1)  # a creation date would now differ
    second = draw(tmp_path / "b")
    for suffix in (".png", ".pdf"):
        a, b = first.with_suffix(suffix).read_bytes(), second.with_suffix(suffix).read_bytes()
        assert a[:4] in (b"\x89PNG", b"%PDF") and a == b, suffix


def test_notebooks_run_on_a_kernel_over_unix_sockets(tmp_path, capfd):
    """The runner's kernels talk over Unix sockets in a folder of their own (no TCP port, and no
    ipykernel warning about unencrypted TCP before every notebook of `make study`)."""
    import nbformat
    import papermill as pm

    from diffcmr_core.study.lab.runner import _local_kernel

    code = "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path / "a.ipynb"
    )
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    pm.execute_notebook(
        str(tmp_path / "a.ipynb"),
        str(tmp_path / "b.ipynb"),
        progress_bar=False,
        kernel_name="python3",
        cwd=str(tmp_path),
        kernel_manager_class=_local_kernel(sockets),
    )
    out = nbformat.read(tmp_path / "b.ipynb", 4).cells[0].outputs
    assert out[0]["text"].strip() == "ipc"
    assert "without encryption" not in capfd.readouterr().err
