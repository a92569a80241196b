"""The FLOP model behind the profiles' time estimates (``diffcmr_core.cost``)."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffcmr_core.method.networks import DiffCMRNet, UNetConfig
from diffcmr_core.method.settings import NetworkSettings, TrainConfig
from diffcmr_core.study import methods
from diffcmr_core.study.experiments.cost import study_cost, unit_costs
from diffcmr_core.study.settings.profiles import get_profile
from tests.test_networks import TINY


def test_meta_device_counts_equal_counts_on_real_tensors():
    cfg = dataclasses.replace(TINY, image_size=32)  # the PatchGAN needs 32 x 32
    smoke = get_profile("smoke")
    unet = UNetConfig(channels=4, depth=2)
    profile = dataclasses.replace(
        smoke,
        settings={
            "diffcmr": NetworkSettings(cfg, TrainConfig()),
            "unet": NetworkSettings(unet, TrainConfig()),
        },
    )
    units = unit_costs(profile)
    costs = units["diffcmr"]
    torch.manual_seed(0)
    net = DiffCMRNet(cfg)
    x, t = torch.randn(1, 1, 32, 32), torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.denoise(x, t, net.encode_condition(x))
    assert counter.get_total_flops() == costs["condition"] + costs["denoise_step"] > 0
    # a training sample costs a forward and about two forwards more for the backward
    forward = costs["condition"] + costs["denoise_step"]
    assert 2.5 * forward < costs["train"] < 3.5 * forward
    # the U-Net's forward pass, counted on real tensors
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        methods.get("unet").system(unet).model(x)
    assert counter.get_total_flops() == units["unet"]["forward"] > 0
    assert set(units) == {"diffcmr", "unet"}  # the networks the profile gives settings for


def test_study_cost_follows_the_profile_workload():
    profile = get_profile("smoke")
    base = study_cost(profile)
    u = unit_costs(profile)
    d, unet = u["diffcmr"], u["unet"]
    ev = profile.evaluation
    factors = len(profile.tasks) * len(profile.accs)
    wider = dataclasses.replace(profile, evaluation=dataclasses.replace(ev, n_val=ev.n_val + 1))
    extra = study_cost(wider)["04_evaluation"] - base["04_evaluation"]  # one more slice
    # PI-CS: per FISTA iteration a forward and an adjoint FFT per coil (5 N log2 N each), the coil
    # products (8 N each way) and a db4 wavelet transform and its inverse (64 N); N = ky kx, ky
    # about half the padded lines, kx the region's share of the read-out and a margin
    pre, cs = profile.preprocess, methods.settings(profile, "cs")
    n = (pre.pad_to // 2) * int(pre.pad_to * min(1.0, pre.roi[1] + 0.1))
    pics = max(cs.iteration_grid) * (
        profile.phantom.n_coils * (10 * n * np.log2(n) + 16 * n) + 64 * n
    )
    assert extra == pytest.approx(
        factors
        * (
            d["condition"]
            + ev.steps * ev.rounds * d["denoise_step"]
            + u["unet"]["forward"]
            + u["cgan"]["forward"]
            + pics
        ),
        rel=1e-12,
    )
    more = profile.with_training("unet", iterations=16)
    batch = profile.network("unet").train.batch_size
    added = study_cost(more)["03_training"] - base["03_training"]
    models = len(profile.tasks) * (1 if profile.shared_models else len(profile.accs))
    assert profile.shared_models and models == 2  # one model per task for all factors
    assert added == models * unet["train"] * 8 * batch
    per_factor = dataclasses.replace(more, shared_models=False)
    assert (
        study_cost(per_factor)["03_training"]
        - study_cost(dataclasses.replace(profile, shared_models=False))["03_training"]
        == factors * unet["train"] * 8 * batch
    )


def test_expected_line_turns_flops_into_minutes_at_the_measured_rate(monkeypatch):
    from diffcmr_core.study.experiments import cost

    profile = get_profile("quick")
    flops = cost.study_cost(profile)["04_evaluation"]
    monkeypatch.setattr(cost, "measured_rate", lambda *a, **k: 1e11)  # 0.1 TFLOP/s
    line = cost.expected_line(profile, "04_evaluation")
    assert f"{flops / 1e15:.3g} PFLOP" in line
    assert f"about {flops / 1e11 / 60:.1f} min at the 0.1 TFLOP/s" in line
    assert cost.expected_line(profile, "07_explorer") == "07_explorer: not in the cost model"
    assert "09_mapping" in cost.study_cost(profile)
    assert "09_mapping" not in cost.study_cost(get_profile("paper"))  # not run on real data


def test_submission_line_counts_each_image_once_at_the_tables_settings(monkeypatch):
    """``submit``'s announcement: images x (G once + T x R steps of E) for DiffCMR, one forward
    for the U-Net, turned into time at the measured rate and split over ranks."""
    from diffcmr_core.study.experiments import cost

    profile = get_profile("smoke")
    ev, u = profile.evaluation, unit_costs(profile)
    monkeypatch.setattr(cost, "measured_rate", lambda *a, **k: 1e10)
    flops = 30 * (u["diffcmr"]["condition"] + ev.steps * ev.rounds * u["diffcmr"]["denoise_step"])
    line = cost.submission_line(profile, "diffcmr", 30)
    assert (
        f"30 images by diffcmr, {flops / 1e12:.3g} TFLOP, about {cost.duration(flops / 1e10)}"
        in line
    )
    assert f"about {cost.duration(flops / 1e10 / 4)} per rank (4 ranks)" in (
        cost.submission_line(profile, "diffcmr", 30, ranks=4)
    )
    assert f"{30 * u['unet']['forward'] / 1e12:.3g} TFLOP" in cost.submission_line(
        profile, "unet", 30
    )


def test_protocol_and_map_workloads_are_counted():
    """04 pays the challenge protocol, 05 the public choices, 09 the maps: each term moves with
    the profile's sampling steps as one DiffCMR run per image predicts."""
    from diffcmr_core.study.experiments import cost

    profile = get_profile("smoke")
    ev = profile.evaluation
    u = unit_costs(profile)["diffcmr"]
    images = cost.validation_images(profile)
    longer = dataclasses.replace(profile, evaluation=dataclasses.replace(ev, steps=ev.steps + 1))
    extra = {k: study_cost(longer)[k] - study_cost(profile)[k] for k in study_cost(profile)}
    step = ev.rounds * u["denoise_step"]  # one more step, R rounds
    factors = len(profile.tasks) * len(profile.accs)
    challenge = len(profile.accs) * sum(images["challenge"].values())
    assert extra["04_evaluation"] == (factors * ev.n_val + challenge) * step
    assert extra["05_ablation"] == 4 * ev.ablation_n_val * step
    assert extra["09_mapping"] == len(profile.accs) * images["maps"]["mapping"] * step


@pytest.mark.slow
def test_validation_image_counts_match_the_smoke_studys_files(smoke_home):
    """The counts behind 04's challenge protocol and 09's maps equal what the smoke study
    actually wrote: the submission files' kept slices x frames, and the maps' weighted images
    (the pairs files' multi-coil mapping validation slices)."""
    import scipy.io

    from diffcmr_core.data.pairs import load_pairs, pairs_path
    from diffcmr_core.study.experiments import cost
    from diffcmr_core.study.settings.profiles import paths_for
    from diffcmr_core.study.steps.maps import MAP_COIL

    profile = get_profile("smoke")
    images = cost.validation_images(profile)
    submission = smoke_home / "runs" / "smoke" / "challenge" / "diffcmr"
    for task, folder in (("cine", "Cine"), ("mapping", "Mapping")):
        for acc in profile.accs:
            files = sorted(submission.glob(f"*/{folder}/TrainingSet/AccFactor{acc:02d}/*/*.mat"))
            assert files, (task, acc)
            written = sum(int(np.prod(scipy.io.loadmat(f)["img4ranking"].shape[2:])) for f in files)
            assert written == images["challenge"][task], (task, acc)
    paths = paths_for(profile)
    for acc in profile.accs:
        _, _, meta = load_pairs(pairs_path(paths.pairs, "mapping", acc), "val")
        assert int((meta["coil"] == MAP_COIL).sum()) == images["maps"]["mapping"]


def test_measured_rate_is_a_plausible_cpu_rate():
    from diffcmr_core.study.experiments import cost

    rate = cost.measured_rate(get_profile("smoke"), "cpu", repeats=1)
    assert 1e8 < rate < 1e14  # between 0.1 GFLOP/s and 100 TFLOP/s
