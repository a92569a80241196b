"""The evidence study (issue 24): training in chunks equals one run, the learning-rate warm-up,
the convergence rule, the crossings of compute curves, the paired comparison over seeds, and a
dry run of the ``cpu`` profile through its notebooks."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import stats

from diffcmr_core.data.pairs import PreprocessConfig, build_pairs, pairs_path
from diffcmr_core.method.checkpoints import load_checkpoint, snapshots
from diffcmr_core.method.networks import UNetConfig
from diffcmr_core.method.settings import TrainConfig
from diffcmr_core.method.train import learning_rate, train
from diffcmr_core.study.experiments import evidence
from diffcmr_core.study.experiments.seeds import seed_profile
from diffcmr_core.study.methods import convergence
from diffcmr_core.study.settings.profiles import get_profile, paths_for
from diffcmr_core.tables import read_csv

CFG = TrainConfig(
    iterations=6,
    batch_size=2,
    lr=1e-3,
    ema_decay=0.9,
    warmup=3,
    log_every=1,
    checkpoint_every=2,
    snapshot_every=2,
)
NET = UNetConfig(channels=4, depth=2)


@pytest.fixture(scope="module")
def pairs(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("evidence_pairs")
    build_pairs(
        tiny_root, out, "cine", PreprocessConfig(pad_to=128, size=32), accs=(4,), progress=False
    )
    return pairs_path(out, "cine", 4)


def test_a_run_extended_chunk_by_chunk_equals_one_run_and_keeps_its_snapshots(pairs, tmp_path):
    """With a constant learning rate (after warm-up) a run trained 2 + 2 + 2 steps, as the
    convergence loop does, is bit-identical to one run of 6; the snapshots are the EMA weights
    at steps 2, 4, 6, the last equal to the final checkpoint's, with the CPU time growing."""
    full = train("unet", pairs, tmp_path / "full", CFG, NET, device="cpu", progress=False)
    for n in (2, 4, 6):
        chunked = train(
            "unet",
            pairs,
            tmp_path / "chunked",
            dataclasses.replace(CFG, iterations=n),
            NET,
            device="cpu",
            progress=False,
        )
    a, b = load_checkpoint(full), load_checkpoint(chunked)
    for k in a["system"]:
        torch.testing.assert_close(a["system"][k], b["system"][k], rtol=0, atol=0)
    snaps = snapshots(tmp_path / "chunked")
    assert sorted(snaps) == [2, 4, 6]
    last = load_checkpoint(snaps[6])
    assert "optimizers" not in last and last["step"] == 6
    for k in b["ema"]:
        torch.testing.assert_close(last["ema"][k], b["ema"][k], rtol=0, atol=0)
    cpu = [load_checkpoint(snaps[s])["cpu_seconds"] for s in (2, 4, 6)]
    assert 0 < cpu[0] < cpu[1] < cpu[2]


def test_warmup_is_linear_then_constant():
    cfg = TrainConfig(lr=1e-3, warmup=4)
    assert [learning_rate(cfg, s) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert learning_rate(TrainConfig(lr=1e-3), 0) == 1e-3  # no warm-up: unchanged


def test_an_older_checkpoint_without_the_new_settings_still_resumes():
    """A checkpoint written before ``warmup`` and ``snapshot_every`` existed reads them as
    their defaults (which keep the old arithmetic), so it continues the same run."""
    from diffcmr_core.method.train import _same_run

    cfg = TrainConfig(iterations=6)
    old = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("warmup", "snapshot_every")
    }
    ckpt = {"method": "unet", "model_config": {"a": 1}, "train_config": old}
    assert _same_run(ckpt, "unet", cfg, {"a": 1})
    assert not _same_run(ckpt, "unet", dataclasses.replace(cfg, warmup=10), {"a": 1})


def test_a_decay_is_linear_to_zero_after_the_stable_rate():
    """Warm-up 2, stable, then the last 4 of 10 steps fall linearly: lr (10 - step) / 4."""
    cfg = TrainConfig(lr=1e-3, warmup=2, iterations=10, decay_steps=4)
    expected = [5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4]
    assert [learning_rate(cfg, s) for s in range(10)] == pytest.approx(expected)


def test_a_constant_run_extended_by_a_decay_equals_one_planned_so(pairs, tmp_path):
    """Stable chunks then the decay, as the evidence study trains, are bit-identical to one
    run planned with the decay; a checkpoint already decayed is not resumed under another
    plan (its steps had other rates): it is set aside and the run starts again."""
    plan = dataclasses.replace(CFG, iterations=6, decay_steps=2)
    full = train("unet", pairs, tmp_path / "full", plan, NET, device="cpu", progress=False)
    for cfg in (dataclasses.replace(CFG, iterations=4), plan):
        chunked = train("unet", pairs, tmp_path / "chunked", cfg, NET, device="cpu", progress=False)
    a, b = load_checkpoint(full), load_checkpoint(chunked)
    for k in a["system"]:
        torch.testing.assert_close(a["system"][k], b["system"][k], rtol=0, atol=0)
    other = dataclasses.replace(CFG, iterations=8, decay_steps=2)  # decays from 6, not 4
    train("unet", pairs, tmp_path / "chunked", other, NET, device="cpu", progress=False)
    assert list((tmp_path / "chunked").glob("stale-*/last.pt"))


def test_budget_plan_scores_each_stable_chunk_and_the_decayed_end():
    evc = get_profile("cpu").evidence
    assert evc.decay_fraction == 0.2
    cfg = TrainConfig(iterations=3000, snapshot_every=300)
    assert convergence.budget_plan(cfg, evc) == (
        [300, 600, 900, 1200, 1500, 1800, 2100, 2400, 3000],
        2400,
    )
    # 20 % of 1000 is 200 steps: a whole chunk of 300
    cfg = TrainConfig(iterations=1000, snapshot_every=300)
    assert convergence.budget_plan(cfg, evc) == ([300, 600, 700, 1000], 700)
    no_decay = dataclasses.replace(evc, decay_fraction=0.0)
    assert convergence.budget_plan(cfg, no_decay) == ([300, 600, 900, 1000], 1000)


def _rows(psnrs, every=100):
    return [{"step": every * (i + 1), "psnr": p} for i, p in enumerate(psnrs)]


def test_the_budget_test_is_a_slope_interval_not_a_best_so_far_rule():
    """Against numpy's least squares and the t interval written out: a curve rising 0.1 dB per
    snapshot under 0.05 dB noise is still rising; a flat curve whose noise makes the old rule's
    "best of the last quarter" jump by more than 0.1 dB is not; a falling one is not."""
    rng = np.random.default_rng(0)
    steps = np.arange(1, 13) * 250
    for slope_per_snapshot, rising in ((0.1, True), (0.0, False), (-0.1, False)):
        psnr = 30 + slope_per_snapshot * np.arange(12) + rng.normal(0, 0.05, 12)
        got = convergence.trend(_rows(psnr, 250), 0.5)
        x, y = steps[5:] / 1000, psnr[5:]  # the last half: steps >= 1500
        b, a = np.polyfit(x, y, 1)
        resid = y - (a + b * x)
        se = np.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
        half = stats.t.ppf(0.975, len(x) - 2) * se
        assert got["slope_db_per_1k"] == pytest.approx(b, rel=1e-9)
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((b - half, b + half), rel=1e-9)
        assert got["still_rising"] is rising
    flat = _rows([30.0, 30.2, 29.9, 30.0, 29.95, 30.05, 30.25, 29.9])
    assert not convergence.trend(flat, 0.5)["still_rising"]
    assert np.isnan(convergence.trend(_rows([30.0, 31.0]), 0.5)["slope_db_per_1k"])


def test_crossings_of_two_curves_and_of_a_level():
    """Two lines in log10 FLOPs, y = x and y = 12 - x (x = log10 FLOPs), cross at x = 6, y = 6;
    the rising one passes the level 8 at x = 8."""
    rows = []
    for x in np.arange(3.0, 10.0, 1.0):
        rows.append({"method": "A", "train_flops": 10**x, "psnr": x})
        rows.append({"method": "B", "train_flops": 10**x, "psnr": 12 - x})
    rows.append({"method": "RAW", "train_flops": 0.0, "psnr": 8.0})
    out = evidence.crossings(rows)
    ab = [c for c in out if {c["curve"], c["crosses"]} == {"A", "B"}]
    assert len(ab) == 1 and np.log10(ab[0]["train_flops"]) == pytest.approx(6.0, abs=0.05)
    assert ab[0]["psnr"] == pytest.approx(6.0, abs=0.05) and ab[0]["direction"] == "rises above"
    a_raw = [c for c in out if c["curve"] == "A" and c["crosses"] == "RAW"]
    assert len(a_raw) == 1 and np.log10(a_raw[0]["train_flops"]) == pytest.approx(8.0, abs=1e-9)


@pytest.mark.slow
def test_cpu_profile_dry_run_runs_its_notebooks(tmp_path, monkeypatch):
    """The cpu profile's code paths (the learning-rate sweep, training on a budget in chunks,
    DiffCMR's best sampling, its seeds, the curve's sampler, the compute curve, the per-image
    table, the verdicts, the ensemble law, the report's evidence section) through its
    notebooks, at two steps per network and one slice."""
    from diffcmr_core.study.lab.runner import run_study

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    monkeypatch.delenv("CMRXRECON_ROOT", raising=False)
    dry = get_profile("cpu-dry")
    assert dry.evidence is not None and dry.network("diffcmr").train.snapshot_every == 1
    run_study("cpu-dry")
    fig = tmp_path / "figures" / "cpu-dry"
    for name in (
        "compute_curve.csv",
        "fig_compute_curve.png",
        "convergence.csv",
        "evidence_verdicts.csv",
        "evidence_per_image.csv",
        "evidence_ensemble_law.csv",
        "evidence_dc.csv",
        "fig_ensemble_law.png",
        "training_lr_sweep.csv",
        "seeds.csv",
        "seeds_table4a.csv",
        "seeds_table4b.csv",
        "curve_sampler.csv",
        "inference_cost.csv",
        "REPORT.md",
    ):
        assert (fig / name).is_file(), name
    assert not (fig / "table5_fast_sampling.csv").exists()  # 08 is not a cpu notebook
    curve = (fig / "compute_curve.csv").read_text().splitlines()
    methods = {line.split(",")[0] for line in curve[1:]}
    assert {"RAW", "PI-CS", "U-Net", "cGAN"} <= methods and sum(
        m.startswith("DiffCMR") for m in methods
    ) == 2
    seeds = {line.split(",")[1] for line in curve[1:]}
    assert seeds == {str(s) for s in dry.evidence.seeds}
    # every network stopped at a recorded step, and its checkpoint is that step
    chosen = convergence.tuned(dry, train_missing=False)  # the rates its sweep chose
    assert chosen.evidence.lr_chosen
    for seed in dry.evidence.seeds:
        sp = seed_profile(chosen, seed)
        for m in ("unet", "cgan", "diffcmr"):
            out = paths_for(sp).model_dir("cine", 4, m)
            record = json.loads((out / "validation.json").read_text())
            assert load_checkpoint(out / "last.pt")["step"] == record["stopped"]["step"]
    report = (fig / "REPORT.md").read_text()
    assert "Evidence on held-out subjects" in report and "hierarchical bootstrap" in report
    split = (fig / "evidence_split.csv").read_text().splitlines()
    assert split[1:] == ["P001,training", "P002,selection", "P003,test"]
    ev = chosen.evaluation  # the inference cost names the sampler the tables use
    cost = (fig / "inference_cost.csv").read_text()
    assert f"DiffCMR,{ev.sampler} T={ev.steps} R={ev.rounds} (tables)," in cost
    assert f"- protocol: DiffCMR {ev.sampler} T = {ev.steps}, R = {ev.rounds}, " in report
    scored = (  # the tables score the test subjects: all of them, or the profile's first n
        f"{ev.n_val} test slices" if ev.n_val else "the whole test subset"
    )
    assert scored in report and "validation slices" not in report
    # data consistency: the networks again on the whole field of view, at the chosen rates
    from diffcmr_core.study.experiments import consistency

    dp = consistency.dc_profile(chosen)
    assert dp.preprocess.crop and paths_for(dp).pairs != paths_for(chosen).pairs
    for m in ("unet", "cgan", "diffcmr"):
        assert dp.network(m).train.lr == chosen.network(m).train.lr
        out = paths_for(dp).model_dir("cine", 4, m)
        assert load_checkpoint(out / "last.pt")["train_config"]["lr"] == chosen.network(m).train.lr
    dc = {r["method"] for r in read_csv(fig / "evidence_dc.csv")}
    assert dc == {
        "RAW",
        "U-Net",
        "cGAN",
        "DiffCMR",
        "U-Net + DC",
        "cGAN + DC",
        "DiffCMR + DC",
        "reference + DC",
    }
    assert "The operator's ceiling" in report
    claims = {r["claim"]: r for r in read_csv(fig / "evidence_verdicts.csv")}
    ours = claims["DC raises DiffCMR (whole field of view)"]
    assert ours["source"] == "beyond the paper" and ours["verdict"] in (
        "confirmed",
        "contradicted",
        "not established",
    )
    assert claims["DiffCMR above U-Net"]["source"] == "the paper"
    assert "Beyond the paper: data consistency" in report


@pytest.mark.parametrize(
    "peak, tried, chosen, edge",
    [
        (1e-3, [5e-4, 1e-3, 2e-3], 1e-3, False),  # the middle rate: no extension
        (4e-3, [5e-4, 1e-3, 2e-3, 4e-3, 8e-3], 4e-3, False),  # up twice, then interior
        (1.0, [5e-4, 1e-3, 2e-3, 4e-3, 8e-3], 8e-3, True),  # the extensions run out: an edge
        (1e-5, [1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3], 1.25e-4, True),  # down likewise
    ],
)
def test_the_sweep_goes_on_past_an_edge_while_the_best_is_there(
    tmp_path, monkeypatch, peak, tried, chosen, edge
):
    """A selection PSNR peaked at ``peak`` (log-quadratic in the rate): the sweep of 0.5, 1 and 2
    times 1e-3 extends by factors of 2 beyond the edge where the best lies, at most twice."""
    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    profile = get_profile("cpu")
    calls = []

    def fake(_profile, method, lr, _train):
        calls.append(lr)
        return {"method": method, "lr": lr, "psnr": 30 - np.log2(lr / peak) ** 2}

    monkeypatch.setattr(convergence, "_swept", fake)
    result = convergence.sweep_lr(convergence.with_lr(profile, "cgan", 1e-3), "cgan")
    assert sorted(calls) == pytest.approx(sorted(tried))
    assert result["chosen"] == pytest.approx(chosen) and result["edge"] is edge


def test_the_sweep_passes_over_a_diverged_rate_and_refuses_when_every_rate_diverged(
    tmp_path, monkeypatch
):
    """A diverged run's row has null scores: the sweep chooses among the others (the highest
    finite rate here, not an edge: the rate above it diverged), and says so when none is left."""
    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    profile = convergence.with_lr(get_profile("cpu"), "diffcmr", 1e-3)
    limit = [1.5e-3]

    def fake(_profile, method, lr, _train):
        gone = lr > limit[0]
        psnr = None if gone else 30 + np.log2(lr / 1e-3)
        return {"method": method, "lr": lr, "psnr": psnr, "diverged": gone}

    monkeypatch.setattr(convergence, "_swept", fake)
    result = convergence.sweep_lr(profile, "diffcmr")
    assert result["chosen"] == pytest.approx(1e-3) and result["edge"] is False
    assert [r["diverged"] for r in result["rows"]] == [False, False, True]
    rows = convergence.sweep_rows(profile)
    assert [np.isnan(r["psnr"]) for r in rows if r["method"] == "DiffCMR"] == [False, False, True]
    limit[0] = 0.0
    with pytest.raises(RuntimeError, match="diverged at every learning rate swept"):
        convergence.sweep_lr(profile, "diffcmr")


def test_a_longer_budget_goes_on_from_the_sweep_run_and_equals_a_run_from_scratch(
    pairs, tmp_path, monkeypatch
):
    """With ``sweep_iterations`` the sweep compares rates at its budget (6 steps: constant to 4,
    then the decay) and keeps its constant checkpoint; the table run at a longer budget (10:
    constant to 8) starts from it, copies the sweep's rows up to step 4 instead of scoring them
    again, and ends bit for bit where a run trained from scratch to that budget ends."""
    base = get_profile("cpu")
    evc = dataclasses.replace(base.evidence, sweep_iterations=6, n_val=2)
    unet = dataclasses.replace(base.network("unet"), model=NET, train=CFG)
    profile = dataclasses.replace(base, evidence=evc, settings={**base.settings, "unet": unet})
    scored = []

    def fake_score(_profile, path, _method, _inp, _tgt, _setting=None, **_):
        ema = load_checkpoint(path)["ema"]
        scored.append(int(load_checkpoint(path)["step"]))
        return {
            "psnr": float(sum(v.double().abs().sum() for v in ema.values())),
            "ssim": 0.5,
            "nmse": 0.1,
        }

    monkeypatch.setattr(convergence, "score_model", fake_score)
    monkeypatch.setattr(convergence, "training_pairs", lambda *_: pairs)
    monkeypatch.setattr(
        convergence, "selection_pairs", lambda *_: (None, None, {"index": np.arange(2)})
    )
    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path / "study"))
    sweep = convergence.sweep_variant(profile, "unet", 1e-3)
    assert sweep.network("unet").train.iterations == 6
    sweep_dir = convergence.train_to_budget(sweep, "cine", 4, "unet", progress=False).parent
    assert sweep_dir.name.endswith("_lr0.001_6steps")
    assert load_checkpoint(sweep_dir / convergence.CONSTANT)["step"] == 4
    longer = profile.with_training("unet", iterations=10)
    scored.clear()
    out = convergence.train_to_budget(longer, "cine", 4, "unet", progress=False)
    assert out.parent.name.endswith("_lr0.001_10steps")
    assert scored == [6, 8, 10]  # steps 2 and 4 are the sweep run's, copied
    record = json.loads((out.parent / convergence.RECORD).read_text())
    assert [r["step"] for r in record["rows"]] == [2, 4, 6, 8, 10]

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path / "scratch"))  # no sweep run to go on from
    alone = convergence.train_to_budget(longer, "cine", 4, "unet", progress=False)
    alone_rows = json.loads((alone.parent / convergence.RECORD).read_text())["rows"]
    assert [r["psnr"] for r in alone_rows] == [r["psnr"] for r in record["rows"]]
    a, b = load_checkpoint(out), load_checkpoint(alone)
    assert a["step"] == b["step"] == 10
    for k in a["system"]:
        torch.testing.assert_close(a["system"][k], b["system"][k], rtol=0, atol=0)


def test_the_report_says_whether_each_budget_sufficed_from_the_comparison_of_budgets(tmp_path):
    """``budget_check`` reads benchmarks/bench_budget.py's table: a budget within 0.1 dB of the
    best, short of it (fewer steps than the best), past it (more), or not measured (another
    budget or rate); no table, no words."""
    from diffcmr_core.study.writeup.report import budget_check
    from diffcmr_core.tables import write_table

    path = tmp_path / "training_budget.csv"
    assert budget_check([{"method": "A", "lr": "0.01", "steps": "1000"}], path) == ""
    finals = {1000: 30.0, 2000: 30.5, 4000: 30.45, 8000: 30.2}
    write_table(
        [{"method": "A", "lr": 0.01, "budget": b, "final_psnr": p} for b, p in finals.items()]
        + [{"method": "B", "lr": 0.02, "budget": 1000, "final_psnr": 29.0}],
        path,
    )

    def said(method, lr, steps):
        return budget_check([{"method": method, "lr": lr, "steps": steps}], path).split(": ")[1]

    assert said("A", "0.01", "1000") == "A 1000 0.50 dB short of its best (2000)"
    assert said("A", "0.01", "4000") == "A 4000 steps within 0.1 dB of its best"
    assert said("A", "0.01", "8000") == "A 8000 0.30 dB past its best (2000)"
    assert said("A", "0.01", "3000") == "A 3000 steps not measured"
    assert said("B", "0.01", "1000") == "B 1000 steps not measured"  # another rate
