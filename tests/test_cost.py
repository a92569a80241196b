"""The FLOP model behind the profiles' time estimates (``diffcmr_core.cost``)."""

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffcmr_core.study.cost import study_cost, unit_costs
from diffcmr_core.method.networks import DiffCMRNet, UNetConfig
from diffcmr_core.study.profiles import get_profile
from tests.test_networks import TINY


def test_meta_device_counts_equal_counts_on_real_tensors():
    cfg = dataclasses.replace(TINY, image_size=32)     # the PatchGAN needs 32 x 32
    costs = unit_costs(cfg, UNetConfig(channels=4, depth=2), 32)
    torch.manual_seed(0)
    net = DiffCMRNet(cfg)
    x, t = torch.randn(1, 1, 32, 32), torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.denoise(x, t, net.encode_condition(x))
    assert counter.get_total_flops() == costs.condition + costs.denoise_step > 0
    # a training sample costs a forward and about two forwards more for the backward
    forward = costs.condition + costs.denoise_step
    assert 2.5 * forward < costs.diffcmr_train < 3.5 * forward


def test_study_cost_follows_the_profile_workload():
    profile = get_profile("smoke")
    base = study_cost(profile)
    u = unit_costs(profile.diffcmr, profile.unet, profile.preprocess.size)
    ev = profile.evaluation
    longer = dataclasses.replace(profile, evaluation=dataclasses.replace(ev, steps=2 * ev.steps))
    factors = len(profile.tasks) * len(profile.accs)
    extra = study_cost(longer)["04_evaluation"] - base["04_evaluation"]
    assert extra == factors * ev.n_val * ev.steps * ev.rounds * u.denoise_step
    more = dataclasses.replace(profile, train_unet=dataclasses.replace(profile.train_unet, iterations=16))
    added = study_cost(more)["03_training"] - base["03_training"]
    assert added == factors * u.unet_train * 8 * profile.train_unet.batch_size


def test_expected_line_turns_flops_into_minutes_at_the_measured_rate(monkeypatch):
    from diffcmr_core.study import cost

    profile = get_profile("quick")
    flops = cost.study_cost(profile)["04_evaluation"]
    monkeypatch.setattr(cost, "measured_rate", lambda *a, **k: 1e11)        # 0.1 TFLOP/s
    line = cost.expected_line(profile, "04_evaluation")
    assert f"{flops / 1e15:.3g} PFLOP" in line
    assert f"about {flops / 1e11 / 60:.1f} min at the 0.1 TFLOP/s" in line
    assert "not counting the challenge's protocol" in line
    assert cost.expected_line(profile, "09_mapping") == "09_mapping: not in the cost model"


def test_measured_rate_is_a_plausible_cpu_rate():
    from diffcmr_core.study import cost

    rate = cost.measured_rate(get_profile("smoke"), "cpu", repeats=1)
    assert 1e8 < rate < 1e14                     # between 0.1 GFLOP/s and 100 TFLOP/s
